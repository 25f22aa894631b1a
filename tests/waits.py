"""Waiting in tests: poll for the condition with a generous deadline, never sleep and hope."""

import time


def wait_for(cond, timeout: float = 15.0, step: float = 0.02) -> bool:
    """True as soon as ``cond()`` is; False if it still is not after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)
