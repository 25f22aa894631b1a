"""Mantra: a low-latency crypto trading engine — actors on a shared-memory spine."""

__version__ = "0.1.0"
