"""Bitstamp HTTP API v2 signing, as pure functions (../shared/research/exchanges.md 5.4).

Every private call is a ``POST /api/v2/...`` with these headers:

- ``X-Auth``: ``"BITSTAMP " + api_key``;
- ``X-Auth-Signature``: ``hex(HMAC-SHA256(secret, message))``, lower case;
- ``X-Auth-Nonce``: a lower-case UUID (36 characters) that the venue accepts once in 150 s;
- ``X-Auth-Timestamp``: our clock in ms; the venue refuses one more than 150 s off its own;
- ``X-Auth-Version``: ``v2``;
- ``Content-Type: application/x-www-form-urlencoded``, only when there is a body.

``message = "BITSTAMP " + key + METHOD + host + path + query + content_type + nonce + timestamp +
"v2" + body``, with no separators; ``content_type`` is empty (and the header left out) when the
body is empty, ``query`` is empty when there is none.  ``host`` is the venue's host name as the
request names it (``www.bitstamp.net``).  The answer to a signed call carries
``X-Server-Auth-Signature = hex(HMAC-SHA256(secret, nonce + timestamp + content type + body))``,
checked by ``response_signature``.

Bitstamp documents no fixed test vector: the tests hold vectors computed independently from the
documentation's own example, byte for byte.  Nothing here reads a clock or draws a random number:
the nonce and timestamp come in.  ``verify`` is the venue's side of the same functions (the
simulator's check): it answers with the venue's own error code and text.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import urlencode

VERSION = "v2"
CONTENT_TYPE = "application/x-www-form-urlencoded"
WINDOW_MS = 150_000  # nonce reuse and timestamp bounds (the venue's "150 second timeframe")

# The venue's authentication errors: (code, reason), as its documentation lists them.
KEY_NOT_FOUND = ("API0001", "API key not found")
NO_PERMISSION = ("API0003", "No permission found")
INVALID_NONCE = ("API0004", "Invalid nonce")
INVALID_SIGNATURE = ("API0005", "Invalid signature")
INVALID_VERSION = ("API0010", "Invalid version")
WRONG_KEY_FORMAT = ("API0011", "Wrong API key format")
MISSING = {"x-auth": ("API0012", "X-Auth header is required"),
           "x-auth-signature": ("API0013", "X-Auth-Signature header is required"),
           "x-auth-nonce": ("API0014", "X-Auth-Nonce header is required"),
           "x-auth-timestamp": ("API0015", "X-Auth-Timestamp header is required"),
           "x-auth-version": ("API0016", "X-Auth-Version header is required")}
TIMESTAMP_BOUNDS = ("API0017", "X-Auth-Timestamp header is out of boundaries")
TIMESTAMP_INVALID = ("API0018", "X-Auth-Timestamp header is invalid")
CONTENT_TYPE_REFUSED = ("API0019", "Content-Type header is not accepted")
CONTENT_TYPE_EXTRA = ("API0020", "Content-Type header should not be present")


@functools.lru_cache(maxsize=16)
def _keyed(secret: str):
    """HMAC-SHA256 with the key already absorbed: each signature copies it."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign(secret: str, message) -> str:
    """``hex(HMAC-SHA256(secret, message))``; message text (UTF-8) or bytes."""
    m = _keyed(secret).copy()
    m.update(message.encode() if isinstance(message, str) else bytes(message))
    return m.hexdigest()


def form(params=()) -> str:
    """A form body: ``params`` (pairs or a dict) in the order given, form-encoded."""
    items = params.items() if isinstance(params, dict) else params
    return urlencode([(k, v) for k, v in items])


def message(key: str, method: str, host: str, path: str, query: str, nonce: str, timestamp, body=b"") -> bytes:
    """What ``X-Auth-Signature`` covers (the content type is there only when there is a body)."""
    body = body.encode() if isinstance(body, str) else bytes(body)
    ctype = CONTENT_TYPE if body else ""
    head = f"BITSTAMP {key}{method}{host}{path}{query}{ctype}{nonce}{timestamp}{VERSION}"
    return head.encode() + body


def rest_request(key: str, secret: str, method: str, host: str, path: str, nonce: str, timestamp_ms: int,
                 params=(), query: str = "") -> tuple[tuple, bytes]:
    """A signed private call: ``(headers, body)``; headers as ``((name, value), ...)``, the body
    form-encoded from ``params`` (empty: no Content-Type).  ``query`` without its ``?``."""
    body = form(params).encode()
    ts = str(timestamp_ms)
    sig = sign(secret, message(key, method, host, path, f"?{query}" if query else "", nonce, ts, body))
    headers = (("X-Auth", f"BITSTAMP {key}"), ("X-Auth-Signature", sig), ("X-Auth-Nonce", nonce),
               ("X-Auth-Timestamp", ts), ("X-Auth-Version", VERSION))
    if body:
        headers += (("Content-Type", CONTENT_TYPE),)
    return headers, body


def response_signature(secret: str, nonce: str, timestamp, content_type: str, body: bytes) -> str:
    """``X-Server-Auth-Signature`` of the answer to the call signed with ``nonce`` and ``timestamp``."""
    return sign(secret, f"{nonce}{timestamp}{content_type}".encode() + bytes(body))


def check_response(secret: str, nonce: str, timestamp, headers: dict, body: bytes) -> bool | None:
    """True if the answer's ``X-Server-Auth-Signature`` is right, False if wrong, None when the
    answer carries none (``headers``: names lower case)."""
    got = headers.get("x-server-auth-signature")
    if got is None:
        return None
    good = response_signature(secret, nonce, timestamp, headers.get("content-type", ""), body)
    return hmac.compare_digest(good, str(got))


# -- the venue's side: the simulator checks requests with the same functions -------------------

def verify(secrets: dict, method: str, host: str, path: str, query: str, headers, body: bytes, now_ms: int,
           seen_nonces) -> tuple[tuple[str, str] | None, str]:
    """Check a private call as the venue does: ``(error or None, key)``; an error is ``(code, reason)``.

    ``secrets``: accepted ``key -> secret``; ``headers``: a mapping (names in any case);
    ``seen_nonces``: the nonces accepted in the last 150 s (a reuse is ``API0004``; the caller
    records the nonce of a call that passed).  ``query`` without its ``?``."""
    h = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    for name, err in MISSING.items():
        if not h.get(name):
            return err, ""
    auth = h["x-auth"]
    if not auth.startswith("BITSTAMP "):
        return WRONG_KEY_FORMAT, ""
    key = auth[len("BITSTAMP "):]
    secret = secrets.get(key)
    if secret is None:
        return KEY_NOT_FOUND, key
    if h["x-auth-version"] != VERSION:
        return INVALID_VERSION, key
    ts = h["x-auth-timestamp"]
    if not ts.isdigit():
        return TIMESTAMP_INVALID, key
    if abs(int(ts) - now_ms) > WINDOW_MS:
        return TIMESTAMP_BOUNDS, key
    body = bytes(body)
    ctype = h.get("content-type")
    if body and ctype != CONTENT_TYPE:
        return CONTENT_TYPE_REFUSED, key
    if not body and ctype:
        return CONTENT_TYPE_EXTRA, key
    nonce = h["x-auth-nonce"]
    good = sign(secret, message(key, method, host, path, f"?{query}" if query else "", nonce, ts, body))
    if not hmac.compare_digest(good, h["x-auth-signature"]):
        return INVALID_SIGNATURE, key
    if len(nonce) != 36 or nonce != nonce.lower() or nonce in seen_nonces:
        return INVALID_NONCE, key
    return None, key
