"""Binance spot signing, as pure functions (../shared/research/exchanges.md 1.4-1.7).

HMAC keys only.  Two rules, both ``hex(HMAC-SHA256(secret, payload))``:

- REST (``rest_payload``): the query string concatenated, with no separator, with the request body;
  non-ASCII characters are percent-encoded before signing; the key goes in the ``X-MBX-APIKEY`` header
  and ``signature`` is appended to the query string (or the body).
- WebSocket API (``ws_payload``): every parameter but ``signature``, sorted by name, ``k=v`` joined by
  ``&``, UTF-8 values, no percent-encoding; ``apiKey``, ``timestamp`` and ``signature`` travel in the
  request's ``params``.

Binance has no nonce: a signed request carries ``timestamp`` (ms) and ``recvWindow`` (ms, default 5000,
at most 60000); the venue refuses it (-1021) when it arrives later than ``timestamp + recvWindow`` or
more than 1 s ahead of the server's clock.  Everything here takes the credentials, the request and
the time as arguments and returns exactly what goes on the wire; nothing reads a clock.
``verify_ws`` / ``verify_rest`` are the venue's side of the same functions (the simulator's check):
they answer with the venue's own error code and text.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlencode

API_KEY_HEADER = "X-MBX-APIKEY"

# The venue's own errors (errors.md): (code, msg)
INVALID_TIMESTAMP = (-1021, "Timestamp for this request is outside of the recvWindow.")
AHEAD_TIMESTAMP = (-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
INVALID_SIGNATURE = (-1022, "Signature for this request is not valid.")
BAD_API_KEY_FMT = (-2014, "API-key format invalid.")
REJECTED_MBX_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
MANDATORY_PARAM = (-1102, "Mandatory parameter '{}' was not sent, was empty/null, or malformed.")
BAD_RECV_WINDOW = (-1131, "recvWindow must be less than 60000")

MAX_RECV_WINDOW = 60_000
AHEAD_MS = 1_000


def _text(v) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


@functools.lru_cache(maxsize=16)
def _keyed(secret: str):
    """HMAC-SHA256 with the key already absorbed: each signature copies it (a third of the cost)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign(secret: str, payload) -> str:
    """``hex(HMAC-SHA256(secret, payload))``; payload text (UTF-8) or bytes."""
    m = _keyed(secret).copy()
    m.update(payload.encode() if isinstance(payload, str) else bytes(payload))
    return m.hexdigest()


# -- REST ---------------------------------------------------------------------------------------

def encode(params) -> str:
    """A query string or form body: ``params`` (pairs or a dict) in the order given; non-ASCII
    characters percent-encoded (exchanges.md 1.7, vector bn-rest-2)."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    return urlencode([(k, _text(v)) for k, v in items], quote_via=quote, safe="")


def rest_payload(query: str = "", body: str = "") -> str:
    """What a REST signature covers: the query string and the body joined with no separator."""
    return query + body


def rest_request(key: str, secret: str, params, timestamp_ms: int, recv_window: int | None = None,
                 body_params=None) -> tuple[tuple, str, bytes]:
    """A signed REST call: ``(headers, query, body)``.

    ``params`` go in the query string, followed by ``recvWindow`` (when given) and ``timestamp``;
    ``body_params`` (optional) go in a form body.  ``signature`` closes the query string, or the body
    when there is one (the venue signs ``query + body``)."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    tail = ([("recvWindow", recv_window)] if recv_window is not None else []) + [("timestamp", timestamp_ms)]
    if body_params is None:
        query = encode(items + tail)
        query += ("&" if query else "") + "signature=" + sign(secret, query)
        body = b""
    else:
        query = encode(items)
        btext = encode(list(body_params.items() if isinstance(body_params, dict) else body_params) + tail)
        sig = sign(secret, rest_payload(query, btext))
        body = (btext + "&signature=" + sig).encode()
    headers = ((API_KEY_HEADER, key),)
    if body:
        headers += (("Content-Type", "application/x-www-form-urlencoded"),)
    return headers, query, body


# -- WebSocket API --------------------------------------------------------------------------------

def ws_payload(params: dict) -> str:
    """What a WS-API signature covers: every param but ``signature``, sorted by name, ``k=v&...``,
    UTF-8, no percent-encoding."""
    return "&".join([f"{k}={v if type(v) is str else _text(v)}" for k, v in sorted(params.items())
                     if k != "signature"])


def ws_params(key: str, secret: str, params: dict, timestamp_ms: int, recv_window: int | None = None) -> dict:
    """``params`` with ``apiKey``, ``recvWindow`` (when given), ``timestamp`` and ``signature``: the
    ``params`` object of a signed WS-API request."""
    p = dict(params)
    p["apiKey"] = key
    if recv_window is not None:
        p["recvWindow"] = recv_window
    p["timestamp"] = timestamp_ms
    p["signature"] = sign(secret, ws_payload(p))
    return p


def ws_request(method: str, key: str, secret: str, params: dict, timestamp_ms: int, req_id,
               recv_window: int | None = None) -> dict:
    """A whole signed WS-API request (encode it as JSON)."""
    return {"id": req_id, "method": method, "params": ws_params(key, secret, params, timestamp_ms, recv_window)}


# -- the venue's side: the simulator checks requests with the same functions ----------------------

def _check_time(params: dict, now_ms: int):
    ts = params.get("timestamp")
    if ts is None or ts == "":
        return (MANDATORY_PARAM[0], MANDATORY_PARAM[1].format("timestamp"))
    try:
        ts = int(ts)
        rw = int(float(params.get("recvWindow", 5000)))
    except (TypeError, ValueError):
        return (MANDATORY_PARAM[0], MANDATORY_PARAM[1].format("timestamp"))
    if rw > MAX_RECV_WINDOW or rw <= 0:
        return BAD_RECV_WINDOW
    if ts > now_ms + AHEAD_MS:
        return AHEAD_TIMESTAMP
    if now_ms - ts > rw:
        return INVALID_TIMESTAMP
    return None


def verify_ws(secrets: dict, params: dict, now_ms: int):
    """Check a signed WS-API request's ``params`` as the venue does: None, or ``(code, msg)``.
    ``secrets``: accepted ``apiKey -> secret``."""
    key = params.get("apiKey")
    if not key or not isinstance(key, str):
        return (MANDATORY_PARAM[0], MANDATORY_PARAM[1].format("apiKey"))
    secret = secrets.get(key)
    if secret is None:
        return REJECTED_MBX_KEY
    sig = params.get("signature")
    if not sig or not isinstance(sig, str):
        return (MANDATORY_PARAM[0], MANDATORY_PARAM[1].format("signature"))
    if not hmac.compare_digest(sign(secret, ws_payload(params)), sig.lower()):
        return INVALID_SIGNATURE
    return _check_time(params, now_ms)


def verify_rest(secrets: dict, headers: dict, query: str, body: bytes, now_ms: int):
    """Check a signed REST call as the venue does: ``(error or None, params)``: error ``(code, msg)``;
    ``params`` the query's and body's parameters (decoded).  ``headers``: names in any case."""
    h = {str(k).lower(): v for k, v in dict(headers).items()}
    btext = bytes(body or b"").decode("utf-8", "replace")
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(btext, keep_blank_values=True))
    key = h.get(API_KEY_HEADER.lower(), "")
    if not key:
        return BAD_API_KEY_FMT, params
    secret = secrets.get(key)
    if secret is None:
        return REJECTED_MBX_KEY, params
    # the signature is the last ``signature=`` of the query or body; the payload is what precedes it
    sig = params.get("signature")
    if not sig:
        return (MANDATORY_PARAM[0], MANDATORY_PARAM[1].format("signature")), params
    q = _strip_sig(query)
    b = _strip_sig(btext)
    if not hmac.compare_digest(sign(secret, rest_payload(q, b)), str(sig).lower()):
        return INVALID_SIGNATURE, params
    return _check_time(params, now_ms), params


def _strip_sig(text: str) -> str:
    parts = [p for p in text.split("&") if p and not p.startswith("signature=")]
    return "&".join(parts)
