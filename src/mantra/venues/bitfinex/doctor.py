"""`mantra venues doctor bitfinex`: is this key ready to trade on Bitfinex?  Read-only.

The checks, one line each (``execution/doctor.py`` prints them): the platform's status and our
clock against the venue's (its HTTP ``Date``, whole seconds: Bitfinex signs with an ever
increasing nonce, not a time window, but a client id's ``cid_date`` is the venue's UTC day), the
credentials (the signed ``auth/r/wallets``), the key's permissions (``auth/r/permissions``: orders
read and write, wallets read) and the rate limits that apply.  Nothing is placed or cancelled.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from ...execution.doctor import _call, _skew
from ...redact import redact
from . import auth


KNOWN = {auth.INVALID_KEY[1]: "unknown key", auth.INVALID_SIGNATURE[1]: "bad signature: the secret does not match",
         auth.NONCE_SMALL[1]: "nonce too small", auth.NO_PERMISSION[1]: "permission refused"}


def check(creds, rest_url: str) -> list[tuple[bool, str]]:
    out = []
    st, hdrs, data, ours = _call("GET", rest_url + "/v2/platform/status")
    if st == 200 and isinstance(data, list) and data:
        if data[0] != 1:
            out.append((False, "platform: in maintenance (status 0): orders are refused until it ends"))
    else:
        out.append((False, f"platform: /v2/platform/status answered {st}: {redact(str(data))[:120]}"))
    try:
        venue_ms = int(parsedate_to_datetime(hdrs["date"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        out.append((False, "clock: the venue sent no Date to compare with"))
    else:
        out.append(_skew(venue_ms, ours, 1000, "client ids are dated by the venue's UTC day"))
    nonce = auth.next_nonce(0, time.time_ns())

    def private(path: str):
        nonlocal nonce
        nonce += 1
        headers, body = auth.rest_request(creds.key, creds.secret, path, nonce)
        return _call("POST", rest_url + path, headers, body)[::2]  # (status, data)

    st, data = private("/v2/auth/r/wallets")
    if st == 200 and isinstance(data, list):
        held = [f"{w[1]} {w[2]}" for w in data if isinstance(w, list) and len(w) > 2 and w[0] == "exchange"
                and float(w[2] or 0)]
        out.append((True, f"credentials: accepted (exchange wallets: {', '.join(held) or 'none'})"))
    else:
        code, text = (data[1], data[2]) if isinstance(data, list) and len(data) > 2 else (st, data)
        # the venue's own texts, said plainly (a redaction would mask "apikey: ..." as a secret)
        said = KNOWN.get(str(text)) or redact(str(text))[:120]
        hint = "the nonce: another client uses this key with larger nonces (give each client a key of its own)" \
            if code == auth.NONCE_SMALL[0] else "the key and secret"
        out.append((False, f"credentials: refused ({code} {said}): check {hint}"))
        return out
    st, data = private("/v2/auth/r/permissions")
    perms = {p[0]: (bool(p[1]), bool(p[2])) for p in data if isinstance(p, list) and len(p) > 2} \
        if st == 200 and isinstance(data, list) else {}
    if not perms:
        out.append((False, f"permissions: auth/r/permissions answered {st}: {redact(str(data))[:120]}"))
    else:
        missing = [name for name, (scope, i) in (("orders: read", ("orders", 0)), ("orders: write", ("orders", 1)),
                                                 ("wallets: read", ("wallets", 0)))
                   if not perms.get(scope, (False, False))[i]]
        if missing:
            out.append((False, f"permissions: the key lacks {', '.join(missing)}: enable them on the key"))
        else:
            out.append((True, "permissions: orders read and write, wallets read"))
    out.append((True, "rate limits: new orders 1000 per 5 min per user (more with volume), REST 10-90 calls per "
                      "endpoint and minute (set orders_per_5min / rest_per_min), 5 authenticated connections "
                      "per 15 s"))
    return out
