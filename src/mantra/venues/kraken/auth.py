"""Kraken spot signing, as pure functions (../shared/research/exchanges.md 2.5, 2.7).

REST private calls (``POST /0/private/<Method>``) carry ``API-Key`` and
``API-Sign = base64(HMAC-SHA512(base64decode(secret), path + SHA256(nonce + postdata)))`` over a
form-encoded body whose first field is ``nonce``, an always increasing integer.  The WebSocket v2
private requests carry no signature: a ``token`` from ``GetWebSocketsToken`` (a signed REST call).

Everything here takes the credentials, the request and the nonce as arguments and returns exactly
what goes on the wire, so the documented vector checks it byte for byte; nothing reads a clock.
``verify`` is the venue's side of the same functions (the simulator's check): it answers with the
venue's own error text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, urlencode

# The venue's own error texts (exchanges.md 2.7, docs "errors").
INVALID_KEY = "EAPI:Invalid key"
INVALID_SIGNATURE = "EAPI:Invalid signature"
INVALID_NONCE = "EAPI:Invalid nonce"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def next_nonce(last: int, now_ns: int) -> int:
    """The nonce to use: the clock in ms, or one more than the last one when the clock has not
    moved past it (several calls in one ms, or a clock that stepped back)."""
    return max(last + 1, now_ns // 1_000_000)


def api_sign(secret: str, path: str, nonce, postdata) -> str:
    """``API-Sign`` for ``path`` (``/0/private/AddOrder``), ``nonce`` (int or its text) and the exact
    ``postdata`` text or bytes (form-encoded, or a JSON body)."""
    if isinstance(postdata, str):
        postdata = postdata.encode()
    inner = hashlib.sha256(str(nonce).encode() + bytes(postdata)).digest()
    mac = hmac.new(base64.b64decode(secret), path.encode() + inner, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def form_body(nonce, params=()) -> str:
    """``nonce=<nonce>&k=v...``: ``params`` (pairs or a dict) in the order given, form-encoded."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    return urlencode([("nonce", str(nonce))] + [(k, v) for k, v in items if k != "nonce"])


def rest_request(key: str, secret: str, path: str, nonce, params=()) -> tuple[tuple, bytes]:
    """What a private REST call sends: ``(headers, body)``; headers as ``((name, value), ...)``."""
    body = form_body(nonce, params)
    headers = (("API-Key", key), ("API-Sign", api_sign(secret, path, nonce, body)),
               ("Content-Type", CONTENT_TYPE))
    return headers, body.encode()


def ws_request(method: str, token: str, params: dict, req_id: int) -> dict:
    """A WebSocket v2 private request: ``params`` plus the ``token`` (the only credential it carries)."""
    return {"method": method, "params": {**params, "token": token}, "req_id": req_id}


# -- the venue's side: the simulator checks requests with the same functions -------------------

def body_nonce(body: bytes) -> str | None:
    """The ``nonce`` of a form-encoded or JSON body, as its text; None when there is none."""
    text = bytes(body).decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            v = json.loads(text).get("nonce")
        except (ValueError, AttributeError):
            return None
        return None if v is None else str(v)
    for k, v in parse_qsl(text, keep_blank_values=True):
        if k == "nonce":
            return v
    return None


def verify(secrets: dict, path: str, headers: dict, body: bytes, last_nonce: int | None) -> tuple[str | None, int]:
    """Check a private REST call as the venue does: ``(error or None, nonce)``.

    ``secrets``: accepted ``key -> secret``; ``headers``: names in any case; ``last_nonce``: the
    highest nonce this key used (None: none yet).  A nonce not above it is ``EAPI:Invalid nonce``.
    """
    h = {str(k).lower(): v for k, v in dict(headers).items()}
    key = h.get("api-key", "")
    secret = secrets.get(key)
    if not key or secret is None:
        return INVALID_KEY, 0
    text = body_nonce(body)
    try:
        nonce = int(text or "")
    except ValueError:
        return INVALID_NONCE, 0
    try:
        good = api_sign(secret, path, text, body)
    except (ValueError, TypeError):  # a secret that is not base64: nothing verifies
        return INVALID_SIGNATURE, nonce
    if not hmac.compare_digest(good, str(h.get("api-sign", ""))):
        return INVALID_SIGNATURE, nonce
    if last_nonce is not None and nonce <= last_nonce:
        return INVALID_NONCE, nonce
    return None, nonce
