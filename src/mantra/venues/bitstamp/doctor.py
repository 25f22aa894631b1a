"""`mantra venues doctor bitstamp`: is this key ready to trade on Bitstamp?  Read-only.

Bitstamp publishes no server time: the clock is read from the ``Date`` header of its answers (one
second resolution); a signed call it refuses with API0017 says the clock is more than 150 s off.
The credentials are tried on ``account_balances/`` (signed, read-only), the private channels'
token on ``websockets_token/``, reading orders on ``open_orders/all/``.  Whether the key may trade
cannot be seen without placing an order: the line says so.  Nothing is placed or cancelled.
"""

from __future__ import annotations

import time
import uuid
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from ...execution.doctor import _call, _skew
from ...redact import redact
from . import auth

HINTS = {"API0001": "the key (not found)", "API0002": "the key's IP whitelist (this address is not on it)",
         "API0005": "the secret", "API0006": "the account (frozen)", "API0008": "the key (no customer for it)",
         "API0011": "the key (wrong format)", "API0017": "the clock (see above)"}


def check(creds, rest_url: str) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    host = urlsplit(rest_url).netloc

    def private(path: str):
        headers, body = auth.rest_request(creds.key, creds.secret, "POST", host, path, str(uuid.uuid4()),
                                          time.time_ns() // 1_000_000)
        return _call("POST", rest_url + path, headers, body)

    st, hdrs, data, ours = private("/api/v2/account_balances/")
    code, reason = (data.get("code") or data.get("response_code") or "", data.get("reason") or "") \
        if isinstance(data, dict) else ("", "")
    date = hdrs.get("date")
    if code == "API0017":
        out.append((False, "clock: the venue refused our timestamp (API0017): ours is more than 150 s off its "
                           "clock; synchronise the clock (NTP/chrony)"))
    elif date:
        try:
            venue_ms = int(parsedate_to_datetime(date).timestamp() * 1000)
        except (TypeError, ValueError):
            out.append((False, f"clock: unreadable Date header {date!r}"))
        else:
            out.append(_skew(venue_ms, ours, 1000, "signed calls more than 150 s off are refused (API0017)"))
    else:
        out.append((False, "clock: the venue's answer has no Date header"))
    if st == 200 and isinstance(data, list):
        held = [f"{b.get('currency', '?').upper()} {b.get('total')}" for b in data
                if isinstance(b, dict) and float(b.get("total") or 0)]
        out.append((True, f"credentials: accepted (balances: {', '.join(held) or 'none'})"))
    elif code == "API0003":
        out.append((False, "permissions: the key may not read balances: enable 'Account balance' on the key"))
    else:
        hint = HINTS.get(code, "the key and secret")
        out.append((False, f"credentials: refused ({st} {code} {redact(str(reason))}): check {hint}"))
        return out
    st, _, data, _ = private("/api/v2/websockets_token/")
    if st == 200 and isinstance(data, dict) and data.get("token"):
        out.append((True, "permissions: private WebSocket token granted (order and trade channels)"))
    else:
        code = data.get("code", "") if isinstance(data, dict) else ""
        out.append((False, f"permissions: no WebSocket token ({st} {code}): enable 'WebSocket token' on the key "
                           "(order entry halts without the private channels)"))
    st, _, data, _ = private("/api/v2/open_orders/all/")
    if st == 200 and isinstance(data, list):
        out.append((True, f"permissions: open orders readable ({len(data)} open); trading itself is proved only "
                          "by an order (enable 'Buy/Sell limit order' and 'Cancel order' on the key)"))
    else:
        code = data.get("code", "") if isinstance(data, dict) else ""
        out.append((False, f"permissions: open orders not readable ({st} {code}): enable 'Open orders' on the "
                           "key (reconciliation needs it)"))
    out.append((True, "rate limits: 400 requests per second, 10,000 per 10 minutes (the documented default; "
                      "a bespoke agreement raises them: set rate_per_s / rate_per_10min)"))
    return out
