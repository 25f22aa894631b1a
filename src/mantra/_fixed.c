/* Venue decimal text -> fixed-point integers, exactly: the feeds' hottest conversion.
 *
 * to_fixed(text, scale) handles a plain decimal ("-"? digits ("." digits)?, ASCII, at most
 * `scale` significant decimals (zeros beyond them are fine), the value within int64) in C.
 * Anything else (exponents, whitespace, "+", more significant decimals than the scale, huge
 * values, errors, a non-str) goes to the Python reference registered with set_fallback, so both
 * give the same answer or the same error.
 * A scale outside 0..18 is refused here, before any row, with the reference's error and message.
 * side_rows(side, rows, price_scale, size_scale) converts a venue's [[price, size], ...] list. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_decimal.h"

static PyObject *fallback; /* fixed._to_fixed_py(text, scale) */
static PyObject *error;    /* fixed.FixedPointError */

/* The scale as a C long in 0..18; -1 with an exception set otherwise (the reference's message). */
static long get_scale(PyObject *obj) {
    int ovf;
    long scale = PyLong_AsLongAndOverflow(obj, &ovf);
    if (scale == -1 && PyErr_Occurred()) return -1; /* not an integer: TypeError, as operator.index */
    if (!ovf && scale >= 0 && scale <= 18) return scale;
    PyObject *i = PyNumber_Index(obj);
    if (i) {
        PyErr_Format(error ? error : PyExc_ValueError, "scale %R is outside 0..18", i);
        Py_DECREF(i);
    }
    return -1;
}

/* 1: *out set; 0: not a plain decimal at this scale (ask the fallback).  0 <= scale <= 18. */
static int plain(PyObject *text, long scale, int64_t *out) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) return 0;
    return decimal_fixed((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), scale, out);
}

static PyObject *convert(PyObject *text, long scale, PyObject *scale_obj) {
    int64_t v;
    if (plain(text, scale, &v)) return PyLong_FromLongLong(v);
    if (!fallback) {
        PyErr_SetString(PyExc_RuntimeError, "_fixed: no fallback registered");
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(fallback, text, scale_obj, NULL);
}

static PyObject *to_fixed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "to_fixed(text, scale)");
        return NULL;
    }
    long scale = get_scale(args[1]);
    if (scale < 0) return NULL;
    return convert(args[0], scale, args[1]);
}

static PyObject *side_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "side_rows(side, rows, price_scale, size_scale)");
        return NULL;
    }
    PyObject *side = args[0];
    long ps = get_scale(args[2]);
    if (ps < 0) return NULL;
    long ss = get_scale(args[3]);
    if (ss < 0) return NULL;
    PyObject *rows = PySequence_Fast(args[1], "rows must be a sequence of [price, size]");
    if (!rows) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(rows);
    PyObject *out = PyList_New(n);
    if (!out) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PySequence_Fast_GET_ITEM(rows, i);
        PyObject *p, *q;
        if ((PyList_CheckExact(row) || PyTuple_CheckExact(row)) && PySequence_Fast_GET_SIZE(row) == 2) {
            p = PySequence_Fast_GET_ITEM(row, 0);
            q = PySequence_Fast_GET_ITEM(row, 1);
        } else {
            PyErr_Format(PyExc_ValueError, "a level must be [price, size], not %R", row);
            goto fail;
        }
        PyObject *price = convert(p, ps, args[2]);
        if (!price) goto fail;
        PyObject *size = convert(q, ss, args[3]);
        if (!size) {
            Py_DECREF(price);
            goto fail;
        }
        PyObject *t = PyTuple_New(3);
        if (!t) {
            Py_DECREF(price);
            Py_DECREF(size);
            goto fail;
        }
        Py_INCREF(side);
        PyTuple_SET_ITEM(t, 0, side);
        PyTuple_SET_ITEM(t, 1, price);
        PyTuple_SET_ITEM(t, 2, size);
        PyList_SET_ITEM(out, i, t);
    }
    Py_DECREF(rows);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(rows);
    return NULL;
}

static PyObject *set_fallback(PyObject *self, PyObject *args) {
    PyObject *fn, *err;
    if (!PyArg_ParseTuple(args, "OO:set_fallback", &fn, &err)) return NULL;
    if (!PyCallable_Check(fn) || !PyExceptionClass_Check(err)) {
        PyErr_SetString(PyExc_TypeError, "set_fallback(fn, error): a callable and an exception class");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(fallback, fn);
    Py_INCREF(err);
    Py_XSETREF(error, err);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"to_fixed", (PyCFunction)(void (*)(void))to_fixed, METH_FASTCALL, "to_fixed(text, scale) -> int, exactly"},
    {"side_rows", (PyCFunction)(void (*)(void))side_rows, METH_FASTCALL,
     "side_rows(side, rows, price_scale, size_scale) -> [(side, price, size), ...]"},
    {"set_fallback", set_fallback, METH_VARARGS,
     "set_fallback(fn, error): fn(text, scale) for what is not a plain decimal; error for a bad scale"},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fixed", "Exact decimal text -> fixed-point int", -1, methods};

PyMODINIT_FUNC PyInit__fixed(void) { return PyModule_Create(&module); }
