"""What ``mantra run --live`` checks before a live system starts, and how it arms it."""

from __future__ import annotations

from ..runtime.config import SystemSpec
from . import secrets
from .actor import VenueAccount


def arm(spec: SystemSpec) -> str:
    """'' when ``spec`` may trade live (its handlers are then allowed off loopback); otherwise the
    one-line reason it may not: not a live system, no handler, or a key missing or kept unsafely."""
    if spec.mode != "live":
        return f"--live runs only a system whose mode is \"live\" (this one's is {spec.mode!r})"
    handlers = [a for a in spec.actors.values() if issubclass(a.load_class(), VenueAccount)]
    if not handlers:
        return "mode \"live\" but no VenueAccount actor: nothing would place orders"
    for a in handlers:
        try:
            secrets.load(str(a.params.get("venue", "")).lower(), a.params.get("credentials"))
        except secrets.CredentialsError as e:
            return f"actors.{a.name}: {e}"
    for a in handlers:
        a.params["live"] = True
    return ""
