"""`mantra venues doctor coinbase`: is this key ready to trade on Coinbase Advanced Trade?  Read-only.

One line per check (``execution/doctor.py``): the clock against the venue's (``GET
/api/v3/brokerage/time``: a JWT's ``nbf``/``exp`` are read on the venue's clock, and a token lives
only two minutes), the credentials (a signed ``GET .../accounts``; the secret must be an EC P-256 or
Ed25519 private key), the key's permissions (``GET .../key_permissions``: view and trade) and the
rate limits the handler counts.  Nothing is placed or cancelled.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from ...execution.doctor import _call, _skew
from ...redact import redact
from . import auth

API = "/api/v3/brokerage"


def check(creds, rest_url: str) -> list[tuple[bool, str]]:
    try:
        auth.load_key(creds.secret)
    except auth.KeyFormatError as e:
        return [(False, f"credentials: the secret is not a Coinbase key: {e}")]
    host = urlsplit(rest_url).netloc
    out = []
    st, _, data, ours = _call("GET", rest_url + API + "/time")
    if st == 200 and isinstance(data, dict) and "epochMillis" in data:
        out.append(_skew(int(data["epochMillis"]), ours, 0,
                         "request tokens (JWT nbf/exp, two minutes) are read on the venue's clock"))
    else:
        out.append((False, f"clock: {API}/time answered {st}: {redact(str(data))[:120]}"))

    def private(path: str):
        headers = auth.rest_headers(creds.key, creds.secret, "GET", host, API + path, int(time.time()),
                                    secrets.token_hex())
        st, _, data, _ = _call("GET", rest_url + API + path, headers)
        return st, data

    st, data = private("/accounts?limit=250")
    if st == 200 and isinstance(data, dict):
        held = [f"{a.get('currency')} {(a.get('available_balance') or {}).get('value')}"
                for a in data.get("accounts") or () if float((a.get("available_balance") or {}).get("value") or 0)]
        out.append((True, f"credentials: accepted (balances: {', '.join(held) or 'none'})"))
    else:
        hint = {401: "the key name (organizations/.../apiKeys/...), its private key and the clock",
                403: "that the key is enabled and this IP allowed"}.get(st, "the key and its private key")
        out.append((False, f"credentials: refused ({st} {redact(str(data))[:80].strip()}): check {hint}"))
        return out
    st, data = private("/key_permissions")
    if st == 200 and isinstance(data, dict):
        if not data.get("can_view"):
            out.append((False, "permissions: the key cannot view: enable 'View' on the key"))
        elif not data.get("can_trade"):
            out.append((False, "permissions: the key cannot trade: enable 'Trade' on the key"))
        else:
            out.append((True, f"permissions: view and trade (portfolio {data.get('portfolio_type', '?')})"))
    else:
        out.append((False, f"permissions: {API}/key_permissions answered {st}: {redact(str(data))[:120]}"))
    out.append((True, "rate limits: 30 private REST requests per second per user, counted by the handler "
                      "(rest_limit_per_s); WebSocket: 8 connections per second per IP"))
    return out
