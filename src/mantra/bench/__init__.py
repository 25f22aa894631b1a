"""Benchmarks behind `mantra bench NAME --json`: each module has OPTIONS and run(**opts) -> dict."""
