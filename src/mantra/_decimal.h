/* A venue's plain decimal text -> a fixed-point int64, exactly: shared by _fixed.c (to_fixed) and
 * _lane.c (the feed's native frame path), so both read a number the same way.
 *
 * Plain: "-"? digits ("." digits)?, ASCII, at most `scale` significant decimals (zeros beyond
 * them are fine), the value within int64.  Anything else returns 0 and is the caller's to refuse
 * or to hand to the Python reference (fixed._to_fixed_py).  0 <= scale <= 18. */

#ifndef MANTRA_DECIMAL_H
#define MANTRA_DECIMAL_H

#include <stdint.h>

static const int64_t DEC_POW10[19] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL,
                                      100000000LL, 1000000000LL, 10000000000LL, 100000000000LL,
                                      1000000000000LL, 10000000000000LL, 100000000000000LL,
                                      1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
                                      1000000000000000000LL};

/* 1: *out set; 0: not a plain decimal at this scale. */
static int decimal_fixed(const char *s, Py_ssize_t n, long scale, int64_t *out) {
    Py_ssize_t i = 0;
    int neg = 0, digits = 0, frac = -1; /* frac: decimals seen, -1 before the point */
    int64_t v = 0;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (frac >= 0 && ++frac > scale) {
                /* Beyond the scale: exact only if the rest is zeros (venues pad to 8 decimals). */
                for (; i < n; i++)
                    if (s[i] != '0') return 0;
                frac = scale;
                break;
            }
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v)) return 0;
            digits++;
        } else if (c == '.' && frac < 0) {
            frac = 0;
        } else {
            return 0;
        }
    }
    if (!digits) return 0;
    if (__builtin_mul_overflow(v, DEC_POW10[scale - (frac < 0 ? 0 : frac)], &v)) return 0;
    *out = neg ? -v : v;
    return 1;
}

#endif
