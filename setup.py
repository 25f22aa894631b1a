"""Builds the C extensions: ``_spine`` (atomics, futexes, clock, the dispatcher and books) and
``_fixed`` (venue decimal text -> fixed-point ints); everything else is in pyproject.toml."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension(
            "mantra._spine",
            ["src/mantra/_spine.c"],
            extra_compile_args=FLAGS,
        ),
        Extension("mantra._fixed", ["src/mantra/_fixed.c"], extra_compile_args=FLAGS),
    ]
)
