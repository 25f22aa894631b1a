"""`mantra venues doctor VENUE`: is this key ready to trade on this venue?  Read-only.

It asks the venue (or a local simulator, ``--rest-url``) what order entry depends on and prints
one line per check, ``ok`` or ``PROBLEM`` with what to do: the clock's skew against the venue's
(signed requests carry our time: Binance refuses one outside ``recvWindow``, Kraken's ``deadline``
is read on the venue's clock, a Coinbase token lives two minutes, Bitstamp refuses a timestamp 150 s
off), the credentials (a signed, read-only call), the key's permissions
(reading, trading, the WebSocket API) and the rate limits that apply.  Nothing is placed or
cancelled.  Exit status 1 when any check found a problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from ..redact import redact
from . import secrets

SKEW_WARN_MS = 1000


def _call(method: str, url: str, headers=(), body: bytes = b"") -> tuple[int, dict, object, int]:
    """(status, headers, JSON body or text, our clock at the middle of the call, ms)."""
    t0 = time.time_ns()
    req = urllib.request.Request(url, data=body or None, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    mid = (t0 + time.time_ns()) // 2_000_000
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw.decode("utf-8", "replace")[:200]
    return status, hdrs, data, mid


def _skew(venue_ms: int, ours_ms: int, resolution_ms: int, what: str) -> tuple[bool, str]:
    d = venue_ms - ours_ms
    if abs(d) > SKEW_WARN_MS + resolution_ms:
        return False, (f"clock: ours is {-d / 1000:+.3f} s off the venue's: {what}; synchronise the clock "
                       "(NTP/chrony)")
    return True, f"clock: within {max(abs(d), resolution_ms)} ms of the venue's"


def kraken(creds, rest_url: str) -> list[tuple[bool, str]]:
    from ..venues.kraken import auth

    out = []
    st, _, data, ours = _call("GET", rest_url + "/0/public/Time")
    if st == 200 and isinstance(data, dict) and "unixtime" in data.get("result", {}):
        out.append(_skew(int(data["result"]["unixtime"]) * 1000, ours, 1000,
                         "order deadlines are read on the venue's clock"))
    else:
        out.append((False, f"clock: /0/public/Time answered {st}: {redact(str(data))[:120]}"))
    nonce = time.time_ns() // 1_000_000

    def private(method: str):
        nonlocal nonce
        nonce += 1
        path = f"/0/private/{method}"
        headers, body = auth.rest_request(creds.key, creds.secret, path, nonce)
        st, _, data, _ = _call("POST", rest_url + path, headers, body)
        errors = data.get("error", []) if isinstance(data, dict) else [str(data)]
        return st, errors, data

    st, errors, data = private("Balance")
    if st == 200 and not errors:
        held = {k: v for k, v in data.get("result", {}).items() if float(v or 0)}
        out.append((True, f"credentials: accepted (balances: {', '.join(f'{k} {v}' for k, v in held.items()) or 'none'})"))
    elif any("Permission denied" in e for e in errors):
        out.append((False, "permissions: the key may not query funds: enable 'Query Funds' on the key"))
    else:
        out.append((False, f"credentials: refused: {redact(', '.join(errors) or str(st))}: check the key and "
                           "secret (and that the nonce window is not shared with another client)"))
        return out
    st, errors, _ = private("GetWebSocketsToken")
    if st == 200 and not errors:
        out.append((True, "permissions: WebSocket API token granted (orders go over WebSocket v2)"))
    else:
        out.append((False, f"permissions: no WebSocket token ({redact(', '.join(errors) or str(st))}): enable "
                           "'WebSocket interface' and the trading permissions on the key"))
    out.append((True, "rate limits: trading counter per pair, Starter tier by default (threshold 60, -1/s); "
                      "set rate_threshold / rate_decay to your tier (Intermediate 125 / 2.34, Pro 180 / 3.75)"))
    return out


def binance(creds, rest_url: str) -> list[tuple[bool, str]]:
    from ..venues.binance import auth

    out = []
    st, _, data, ours = _call("GET", rest_url + "/api/v3/time")
    if st == 200 and isinstance(data, dict) and "serverTime" in data:
        out.append(_skew(int(data["serverTime"]), ours, 0, "signed requests outside recvWindow are refused (-1021)"))
    else:
        out.append((False, f"clock: /api/v3/time answered {st}: {redact(str(data))[:120]}"))
    headers, query, _ = auth.rest_request(creds.key, creds.secret, {"omitZeroBalances": "true"},
                                          time.time_ns() // 1_000_000, 5000)
    st, hdrs, data, _ = _call("GET", f"{rest_url}/api/v3/account?{query}", headers)
    if st == 200 and isinstance(data, dict):
        held = [f"{b['asset']} {b['free']}" for b in data.get("balances", []) if float(b.get("free") or 0)]
        out.append((True, f"credentials: accepted (balances: {', '.join(held) or 'none'})"))
        perms = data.get("permissions") or []
        if not data.get("canTrade", False):
            out.append((False, "permissions: the key cannot trade: enable 'Spot & Margin Trading' on the key"))
        elif perms and "SPOT" not in perms:
            out.append((False, f"permissions: the account has no SPOT permission ({', '.join(perms)})"))
        else:
            out.append((True, "permissions: spot trading enabled"))
    else:
        code = data.get("code") if isinstance(data, dict) else None
        msg = data.get("msg", "") if isinstance(data, dict) else str(data)
        hint = {-2015: "the key, its IP whitelist or its permissions", -1022: "the secret",
                -1021: "the clock (see above)"}.get(code, "the key and secret")
        out.append((False, f"credentials: refused ({st} {code} {redact(msg)}): check {hint}"))
        return out
    st, hdrs2, info, _ = _call("GET", rest_url + "/api/v3/exchangeInfo")
    limits = info.get("rateLimits", []) if isinstance(info, dict) else []
    if limits:
        used = hdrs.get("x-mbx-used-weight-1m") or hdrs2.get("x-mbx-used-weight-1m")
        text = ", ".join(f"{x['rateLimitType']} {x['limit']}/{x.get('intervalNum', 1)}{x['interval'][0].lower()}"
                         for x in limits)
        out.append((True, f"rate limits: {text}" + (f" (weight used this minute: {used})" if used else "")))
    else:
        out.append((False, f"rate limits: exchangeInfo gave none ({st}): the handler falls back to the documented "
                           "defaults (6000 weight/min, 50 orders/10 s)"))
    return out


def coinbase(creds, rest_url: str) -> list[tuple[bool, str]]:
    from ..venues.coinbase.doctor import check

    return check(creds, rest_url)


def bitstamp(creds, rest_url: str) -> list[tuple[bool, str]]:
    from ..venues.bitstamp.doctor import check

    return check(creds, rest_url)


def bitfinex(creds, rest_url: str) -> list[tuple[bool, str]]:
    from ..venues.bitfinex.doctor import check

    return check(creds, rest_url)


CHECKS = {"kraken": (kraken, "https://api.kraken.com"), "binance": (binance, "https://api.binance.com"),
          "coinbase": (coinbase, "https://api.coinbase.com"), "bitstamp": (bitstamp, "https://www.bitstamp.net"),
          "bitfinex": (bitfinex, "https://api.bitfinex.com")}


def check(venue: str, rest_url: str | None = None, credentials: dict | None = None) -> list[tuple[bool, str]]:
    fn, default = CHECKS[venue]
    try:
        creds = secrets.load(venue, credentials)
    except secrets.CredentialsError as e:
        return [(False, f"credentials: {e}")]
    try:
        return fn(creds, (rest_url or default).rstrip("/"))
    except (OSError, urllib.error.URLError) as e:
        return [(False, f"venue: cannot reach {rest_url or default}: {redact(str(e))}")]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="mantra venues doctor", description=__doc__.split("\n\n")[0])
    ap.add_argument("venue", choices=sorted(CHECKS))
    ap.add_argument("--rest-url", help="the venue's REST base (default: the venue's own; a testnet or a simulator)")
    ap.add_argument("--key-file", help="credentials from this key file (default: MANTRA_<VENUE>_API_KEY/_SECRET)")
    a = ap.parse_args(argv)
    results = check(a.venue, a.rest_url, {"file": a.key_file} if a.key_file else None)
    for ok, text in results:
        print(f"{'ok     ' if ok else 'PROBLEM'}  {text}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
