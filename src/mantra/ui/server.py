"""The UI's HTTP server: the page, its assets and a read-only JSON/binary API, on the standard
library's threading HTTP server (no asyncio; a thread per connection, keep-alive).

API (GET only; anything else is 405): ``/api/meta``, ``/api/state``, ``/api/orders``,
``/api/book``, ``/api/series`` (binary columns: ``series.encode``; ``keys=a,b,...`` answers
several series in one body, their answers concatenated: a panel's zoom or live tail is one round
trip; ``t0``, ``t1`` and ``width`` then take one value for all or one per key).  Integers named ``*_ns`` also
travel as text (``*_ns_s``): JavaScript numbers are exact only to 2^53.

Security: loopback by default.  Any other address needs ``remote=True`` and then a random token,
given in the URL once (``?token=``) and kept by the browser as a same-site cookie; a request
without it gets 403.  Requests whose ``Host`` is not the address we serve are refused, so a web
page elsewhere cannot reach the API through a rebound DNS name.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import mimetypes
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .series import encode

log = logging.getLogger("mantra.ui")
WEB = Path(__file__).parent / "web"
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8", ".png": "image/png"}


class RemoteRefused(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def twins(obj):
    """Add ``<key>_s`` (text) beside every integer ``<key>`` ending in ``_ns``."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[k] = twins(v)
            if k.endswith("_ns") and isinstance(v, int) and not isinstance(v, bool):
                out[k + "_s"] = str(v)
        return out
    if isinstance(obj, list):
        return [twins(v) for v in obj]
    return obj


class UiServer:
    """Serves ``source`` (an object with ``meta()``, ``state()``, ``orders(...)``, ``book(...)``,
    each called under ``source.lock``, and ``series(key, t0, t1, width)``, which takes the lock
    itself only as long as it needs)."""

    def __init__(self, source, host: str = "127.0.0.1", port: int = 0, remote: bool = False):
        if not is_loopback(host) and not remote:
            raise RemoteRefused(f"the UI binds {host!r}, which is not loopback: pass --remote to serve other "
                                "machines (a random token in the URL is then required)")
        self.source = source
        self.token = secrets.token_urlsafe(18) if not is_loopback(host) else ""
        self.requests = 0
        handler = type("Handler", (_Handler,), {"ui": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> "UiServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="ui-http", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def allowed_host(self, host_header: str | None) -> bool:
        if self.token:  # served to other machines: the token is the check
            return True
        h = (host_header or "").strip()
        name = h[1:h.find("]")] if h.startswith("[") else h.rsplit(":", 1)[0]
        return bool(name) and is_loopback(name)


class _Handler(BaseHTTPRequestHandler):
    ui: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "mantra-ui"
    disable_nagle_algorithm = True  # small answers (state, book) would wait ~40 ms for the delayed ACK

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # a page closed while its connection idled
            pass

    def log_message(self, fmt, *args):  # the API is polled several times a second: not logged
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, why: str) -> None:
        self._send(status, json.dumps({"error": why}).encode(), "application/json")

    def _refuse(self, *_):
        self._error(405, "the UI is read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        ui = self.ui
        ui.requests += 1
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not ui.allowed_host(self.headers.get("Host")):
            return self._error(403, "unexpected Host header")
        extra = {}
        if ui.token:
            cookie = self.headers.get("Cookie", "")
            have = q.get("token") or next((c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("mantra_ui=")), "")
            if not hmac.compare_digest(have.encode(), ui.token.encode()):
                return self._error(403, "this UI needs the token printed with its URL")
            extra["Set-Cookie"] = f"mantra_ui={ui.token}; HttpOnly; SameSite=Strict; Path=/"
        try:
            if url.path.startswith("/api/"):
                return self._api(url.path[5:], q, extra)
            return self._static(url.path, extra)
        except (ValueError, KeyError) as e:
            return self._error(400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            return None

    def _static(self, path: str, extra: dict) -> None:
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        f = (WEB / rel).resolve()
        if WEB.resolve() not in f.parents or not f.is_file():
            return self._error(404, f"no such file: {path}")
        ctype = TYPES.get(f.suffix) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        self._send(200, f.read_bytes(), ctype, extra)

    def _api(self, what: str, q: dict, extra: dict) -> None:
        src = self.ui.source

        def num(k, default=None):
            v = q.get(k, "")
            return int(v) if v not in ("", "null", "undefined") else default

        if what == "series":  # decimated and encoded outside the lock (see Source.series)
            keys = q["keys"].split(",") if q.get("keys") else [q["key"]] if "key" in q else []
            if not keys or len(keys) > 64:
                raise ValueError("series needs key= or keys= (at most 64)")

            def each(k, default=None):  # one value for every key, or one per key (a live tail)
                v = [int(x) if x not in ("", "null", "undefined") else default for x in q.get(k, "").split(",")]
                if len(v) not in (1, len(keys)):
                    raise ValueError(f"{k}= needs one value or one per key")
                return v * len(keys) if len(v) == 1 else v

            args = zip(each("t0"), each("t1"), (min(max(w, 1), 8192) for w in each("width", 1000)))
            body = b"".join(src.series(k, *a) for k, a in zip(keys, args))
            return self._send(200, body, "application/octet-stream", extra)
        with src.lock:  # the documents are built (and copied by twins) under it, serialised after
            if what == "meta":
                doc = src.meta()
            elif what == "state":
                doc = src.state()
            elif what == "orders":
                doc = src.orders(num("inst"), num("model"), q.get("status") or None, min(num("limit", 500), 5000))
            elif what == "book":
                doc = src.book(num("inst", 0), min(num("depth", 20), 500))
            else:
                return self._error(404, f"no such API: {what}")
            doc = twins(doc)
        self._send(200, json.dumps(doc, separators=(",", ":")).encode(), "application/json", extra)


class Source:
    """What the server serves: a ``View`` under a lock, with the run's name and mode; the live
    actor adds traffic and telemetry through ``extra_state``."""

    mode = "recording"

    def __init__(self, view, system: str):
        self.view, self.system = view, system
        self.lock = threading.Lock()

    def extra_state(self) -> dict:
        return {"traffic": [], "ui": {"lost": 0, "lag": 0}, "telemetry": [], "live": False,
                "now_ns": self.view.t_max}

    def meta(self) -> dict:
        return {"mode": self.mode, "system": self.system, **self.view.meta()}

    def state(self) -> dict:
        st = self.view.state()
        extra = self.extra_state()
        extra["telemetry"] = extra["telemetry"] + st.pop("hops")
        return {**st, **extra}

    def orders(self, inst=None, model=None, status=None, limit: int = 500) -> dict:
        return self.view.order_rows(inst, model, status, limit)

    def book(self, inst: int, depth: int = 20) -> dict:
        return self.view.book(inst, depth)

    def series(self, key: str, t0, t1, width: int) -> bytes:
        """The series over [t0, t1] at ``width`` pixels, encoded; an unknown key is empty.  Only
        the snapshot is taken under the lock: the rows it covers never change, so live ingest
        and the decimation of 5 M rows do not wait for each other."""
        with self.lock:
            s = self.view.series.get(key)
            snap = s.snapshot() if s is not None else None
        if snap is None:
            return encode(key, [], [], [], [], False, 0, t0, t1)
        t, cols, dec, total = snap.query(t0, t1, width)
        return encode(key, t, cols, snap.cols, snap.scales, dec, total, t0, t1, snap.dtypes)
