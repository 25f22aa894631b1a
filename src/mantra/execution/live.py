"""What ``mantra run --live`` checks before a live system starts, and how it arms it."""

from __future__ import annotations

from ..runtime.config import SystemSpec
from . import secrets
from .actor import VenueAccount


def arm(spec: SystemSpec, check_venues: bool = True) -> str:
    """'' when ``spec`` may trade live (its handlers are then allowed off loopback); otherwise the
    one-line reason it may not: not a live system, no handler, a key missing or kept unsafely, or
    (``check_venues``) a venue that refuses the key, lacks a permission or whose clock is far off."""
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
    if check_venues:  # the key's permissions and the clock, as `mantra venues doctor` sees them
        from . import doctor

        for a in handlers:
            venue = str(a.params.get("venue", "")).lower()
            found = doctor.check(venue, (a.params.get("options") or {}).get("rest_url"), a.params.get("credentials"))
            bad = [text for ok, text in found if not ok]
            if bad:
                return f"actors.{a.name}: {venue}: " + "; ".join(bad)
    for a in handlers:
        a.params["live"] = True
    return ""
