"""Bitfinex signing, as pure functions (../shared/research/exchanges.md 3.4, 3.5).

One rule, ``hex(HMAC-SHA384(secret, payload))`` with the secret's text as the key, in two places:

- The authenticated WebSocket (``wss://api.bitfinex.com/ws/2``) logs on once per connection with
  ``{"event":"auth","apiKey":K,"authSig":S,"authNonce":N,"authPayload":"AUTH"+N,"dms":4}``;
  ``S`` signs ``authPayload``.  ``dms: 4`` is the dead-man switch: the venue cancels every order of
  the account when that socket closes.  Orders then go on that socket unsigned.
- REST v2 private calls (``POST /v2/auth/...``) carry ``bfx-nonce``, ``bfx-apikey`` and
  ``bfx-signature``, which signs ``"/api" + path + nonce + body`` (``path`` as in the URL,
  ``/v2/auth/r/wallets``; ``body`` the exact JSON text sent, ``{}`` when there is nothing to say).

The nonce is an ever increasing integer (the venue refuses one not above the last it saw for the
key, ``10114 nonce: small``) no larger than 2**53 - 1; we use the clock in µs (the docs' examples)
and one more than the last when the clock has not moved past it.  One counter serves both
WebSocket and REST.  Everything here takes the credentials, the request and the nonce as
arguments and returns exactly what goes on the wire; nothing reads a clock.  ``verify_ws`` /
``verify_rest`` are the venue's side of the same functions (the simulator's check): they answer
with the venue's own error code and text.

Bitfinex documents no signature with its expected value (exchanges.md 3.5): the tests check these
functions against the documented message layouts and the rule computed independently.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json

MAX_NONCE = 9_007_199_254_740_991  # JavaScript's MAX_SAFE_INTEGER: the docs' upper bound
DMS_CANCEL_ALL = 4  # the dead-man switch flag: cancel every order when the socket closes
CONTENT_TYPE = "application/json"

# The venue's own errors: (code, text) — WebSocket ``auth`` answers and REST ``["error", code, text]``.
ERR_GENERIC = (10001, "ERR_GENERIC")
INVALID_KEY = (10100, "apikey: invalid")
INVALID_SIGNATURE = (10100, "apikey: digest invalid")
BAD_PAYLOAD = (10100, "auth: payload invalid")
NO_PERMISSION = (10100, "apikey: invalid permission")
NONCE_SMALL = (10114, "nonce: small")
AUTH_CODES = (10100, 10101, 10102, 10103, 10104)  # authentication failures (generic, payload, signature, HMAC)


@functools.lru_cache(maxsize=16)
def _keyed(secret: str):
    """HMAC-SHA384 with the key already absorbed: each signature copies it."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha384)


def sign(secret: str, payload) -> str:
    """``hex(HMAC-SHA384(secret, payload))``; payload text (UTF-8) or bytes."""
    m = _keyed(secret).copy()
    m.update(payload.encode() if isinstance(payload, str) else bytes(payload))
    return m.hexdigest()


def next_nonce(last: int, now_ns: int) -> int:
    """The nonce to use: the clock in µs, or one more than the last when the clock has not moved
    past it (several calls in one µs, or a clock that stepped back)."""
    n = max(last + 1, now_ns // 1000)
    if n > MAX_NONCE:
        raise ValueError(f"nonce {n} is above the venue's limit {MAX_NONCE}")
    return n


# -- WebSocket ---------------------------------------------------------------------------------------

def ws_auth(key: str, secret: str, nonce: int, dms: bool = True) -> dict:
    """The ``auth`` event that logs a WebSocket connection on (field order as the docs write it)."""
    payload = f"AUTH{nonce}"
    msg = {"event": "auth", "apiKey": key, "authSig": sign(secret, payload), "authNonce": str(nonce),
           "authPayload": payload}
    if dms:
        msg["dms"] = DMS_CANCEL_ALL
    return msg


def ws_auth_text(key: str, secret: str, nonce: int, dms: bool = True) -> str:
    """``ws_auth`` as the text frame sent."""
    return json.dumps(ws_auth(key, secret, nonce, dms), separators=(",", ":"))


# -- REST --------------------------------------------------------------------------------------------

def rest_signature(secret: str, path: str, nonce, body) -> str:
    """``bfx-signature`` of a call to ``path`` (``/v2/auth/r/wallets``) with the exact ``body`` text."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode()
    return sign(secret, f"/api{path}{nonce}{body}")


def rest_body(params=None) -> bytes:
    """The JSON body of a call: ``params`` without the ones left out (``None``), ``{}`` when empty."""
    doc = {k: v for k, v in (params or {}).items() if v is not None}
    return json.dumps(doc, separators=(",", ":")).encode()


def rest_request(key: str, secret: str, path: str, nonce: int, params=None) -> tuple[tuple, bytes]:
    """What a private REST call sends: ``(headers, body)``; headers as ``((name, value), ...)``."""
    body = rest_body(params)
    headers = (("bfx-nonce", str(nonce)), ("bfx-apikey", key),
               ("bfx-signature", rest_signature(secret, path, nonce, body)), ("Content-Type", CONTENT_TYPE))
    return headers, body


# -- the venue's side: the simulator checks requests with the same functions --------------------------

def _nonce(text) -> int | None:
    try:
        n = int(str(text))
    except (TypeError, ValueError):
        return None
    return n if 0 < n <= MAX_NONCE else None


def verify_ws(secrets: dict, msg: dict, last_nonce: int | None) -> tuple[tuple | None, int]:
    """Check an ``auth`` event as the venue does: ``(error or None, nonce)``.

    ``secrets``: accepted ``key -> secret``; ``last_nonce``: the highest nonce this key used (None:
    none yet).  A payload other than ``"AUTH" + nonce`` is refused like a bad signature."""
    secret = secrets.get(msg.get("apiKey"))
    if not msg.get("apiKey") or secret is None:
        return INVALID_KEY, 0
    nonce = _nonce(msg.get("authNonce"))
    payload = msg.get("authPayload")
    if nonce is None or not isinstance(payload, str) or payload != f"AUTH{msg.get('authNonce')}":
        return BAD_PAYLOAD, nonce or 0
    if not hmac.compare_digest(sign(secret, payload), str(msg.get("authSig", ""))):
        return INVALID_SIGNATURE, nonce
    if last_nonce is not None and nonce <= last_nonce:
        return NONCE_SMALL, nonce
    return None, nonce


def verify_rest(secrets: dict, path: str, headers: dict, body: bytes,
                last_nonce: int | None) -> tuple[tuple | None, int]:
    """Check a private REST call as the venue does: ``(error or None, nonce)``; ``headers``: names in
    any case, ``path`` as in the URL."""
    h = {str(k).lower(): v for k, v in dict(headers).items()}
    key = h.get("bfx-apikey", "")
    secret = secrets.get(key)
    if not key or secret is None:
        return INVALID_KEY, 0
    nonce = _nonce(h.get("bfx-nonce"))
    if nonce is None:
        return NONCE_SMALL, 0
    try:
        good = rest_signature(secret, path, h.get("bfx-nonce"), body)
    except UnicodeDecodeError:
        return INVALID_SIGNATURE, nonce
    if not hmac.compare_digest(good, str(h.get("bfx-signature", ""))):
        return INVALID_SIGNATURE, nonce
    if last_nonce is not None and nonce <= last_nonce:
        return NONCE_SMALL, nonce
    return None, nonce
