"""One redaction for logs, capture files and error messages: secret values never leave the process
as text.

What is secret, per venue (headers, JSON fields of signed WebSocket messages, URL parts):

* Binance: ``X-MBX-APIKEY``; ``apiKey``/``signature`` (REST query, WS-API params); the user-data
  ``listenKey`` (``?listenKey=``, ``/ws/<listenKey>``, ``streams=<listenKey>/...``).
* Kraken: ``API-Key``/``API-Sign``; the WebSocket ``token``.
* Bitfinex: ``bfx-apikey``/``bfx-signature`` (v1: ``X-BFX-APIKEY``/``X-BFX-SIGNATURE``); ``apiKey``/``authSig``.
* Coinbase: ``Authorization: Bearer <JWT>``, ``jwt``; Exchange: ``CB-ACCESS-KEY``/``-SIGN``/``-PASSPHRASE``,
  ``key``/``signature``/``passphrase``.
* Bitstamp: ``X-Auth`` (``BITSTAMP <api key>``)/``X-Auth-Signature``; the private channel's ``auth`` token.

Nonces and timestamps (``nonce``, ``authNonce``, ``authPayload`` = "AUTH" + nonce, ``CB-ACCESS-TIMESTAMP``,
``X-Auth-Nonce``, ``bfx-nonce``) are not secret: they are public and useless without the signature,
and they help when reading a capture.  Also masked wherever they appear: a URL's password
(``scheme://user:pass@``), a JWT, a PEM private key.

:func:`redact` masks text (``str`` or ``bytes``), a headers mapping, or an exception's message;
:func:`redact_exception` masks an exception in place before it is raised on.  Importing this module
installs :class:`RedactFilter` for every logger of the ``mantra`` hierarchy, so a message, its
arguments and its traceback are masked before any handler sees them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Iterable

MASK = "***"

SECRET_FIELDS = frozenset({
    "apiKey", "api_key", "key", "secret", "secretKey", "api_secret", "signature", "sign", "passphrase",
    "password", "token", "access_token", "authSig", "auth", "jwt", "listenKey",
})
SECRET_HEADERS = frozenset({
    "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
    "X-MBX-APIKEY",  # binance
    "API-Key", "API-Sign",  # kraken
    "bfx-apikey", "bfx-signature", "X-BFX-APIKEY", "X-BFX-SIGNATURE",  # bitfinex
    "CB-ACCESS-KEY", "CB-ACCESS-SIGN", "CB-ACCESS-PASSPHRASE",  # coinbase exchange
    "X-Auth", "X-Auth-Signature",  # bitstamp
})

# A value in quotes (JSON, a Python repr, JSON escaped inside a JSON string) or bare (a number).
_VALUE = r"""(?P<v>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\\"[^"\\]*\\"|[^,}\]\s]+)"""
_NAME_END = r"(?![\w-])"  # "X-Auth" is not the start of "X-Auth-Nonce"


def _alternation(names) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


class Redactor:
    """Masks the values of secret ``fields`` and ``headers`` wherever they appear in text, and whole
    secrets (tokens in URL paths, URL passwords, JWTs, PEM keys).  With no names at all it masks
    nothing (a raw capture)."""

    def __init__(self, fields: Iterable[str] = SECRET_FIELDS, headers: Iterable[str] = SECRET_HEADERS):
        fields, headers = list(fields), list(headers)
        self.headers = {n.lower() for n in headers + fields}  # a mapping's secret keys
        # Whole secrets first (a PEM key spans lines a "secret: value" rule would cut), then values by name.
        self._always: list[tuple[re.Pattern, object]] = list(_ALWAYS) if fields or headers else []
        self._named: list[tuple[re.Pattern, object]] = []
        names = _alternation(fields + headers)
        # Most text names no secret: one case-sensitive search of its lowercase says so quickly
        # (an alternation under re.I is tried at every position).
        self._candidate = re.compile(_alternation({n.lower() for n in fields + headers})) if names else None
        if names:
            # "name": value  (JSON, a dict's repr; the key's quotes may be escaped)
            self._named.append((re.compile(r"""(?P<k>\\?(["'])(?:%s)\\?\2\s*:\s*)%s""" % (names, _VALUE), re.I),
                                _quoted))
            # name=value  (URL query, form body, keyword repr)
            self._named.append((re.compile(r"""(?<![\w-])(?P<k>(?:%s)=)(?P<v>"[^"]*"|'[^']*'|[^&#;\s"',)}\]]+)"""
                                           % names, re.I), _bare))
            # Name: value  (a header line, as in an HTTP dump or a debug log; the rest of the line)
            self._named.append((re.compile(r"""(?<![\w-])(?P<k>(?:%s)%s[ \t]*:[ \t]*)(?P<v>[^\r\n"',}\]]+)"""
                                           % (names, _NAME_END), re.I), _bare))

    def text(self, s):
        """``s`` (``str`` or bytes-like) with secret values masked, of the same type (bytes for bytes-like)."""
        if not self._always:
            return s if isinstance(s, str) else bytes(s)
        if not isinstance(s, str):
            # latin-1 maps every byte to one character and back: the patterns are ASCII
            return self.text(bytes(s).decode("latin-1")).encode("latin-1")
        for pattern, repl in self._always:
            s = pattern.sub(repl, s)
        if self._candidate is not None and self._candidate.search(s.lower()):
            for pattern, repl in self._named:
                s = pattern.sub(repl, s)
        return s

    def headers_dict(self, headers) -> dict:
        """A copy of ``headers`` with secret names' values masked (and any secret in the others)."""
        return {k: MASK if str(k).lower() in self.headers else self.text(str(v)) for k, v in dict(headers).items()}

    def header_lines(self, headers) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.headers_dict(headers).items())

    def __call__(self, x):
        """Text, a headers mapping, or anything else by its ``str`` (an exception: its message)."""
        if isinstance(x, (str, bytes, bytearray, memoryview)):
            return self.text(x)
        if isinstance(x, Mapping):
            return self.headers_dict(x)
        return self.text(str(x))


def _quoted(m: re.Match) -> str:
    v = m["v"]
    q = '\\"' if v.startswith('\\"') else "'" if v.startswith("'") else '"'
    return f"{m['k']}{q}{MASK}{q}"


def _bare(m: re.Match) -> str:
    v = m["v"]
    q = v[0] if v[0] in "'\"" and len(v) > 1 and v[-1] == v[0] else ""
    return f"{m['k']}{q}{MASK}{q}"


_ALWAYS = [
    # A URL's password: scheme://user:password@host
    (re.compile(r"(?P<k>://[^/\s:@]+:)[^/\s@]+(?=@)"), lambda m: m["k"] + MASK),
    # A token as a path segment or a combined-stream name (Binance's /ws/<listenKey>): letters and
    # digits, both, at least 32 of them, the whole segment.  (Each pattern starts with a literal,
    # which the regex engine looks for quickly.)
    (re.compile(r"(?P<k>/|streams=)(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{32,}(?![A-Za-z0-9@._~%-])"),
     lambda m: m["k"] + MASK),
    # A JWT (Coinbase), wherever it is.
    (re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+"), MASK),
    # A PEM private key (Coinbase's secret is one).
    (re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|$)", re.S),
     "-----PRIVATE KEY " + MASK + "-----"),
]

DEFAULT = Redactor()
redact = DEFAULT
"""``redact(x)``: text (``str``/``bytes``), a headers mapping or an exception, with secrets masked."""


def redact_exception(e: BaseException, _depth: int = 0) -> BaseException:
    """Mask ``e``'s message in place (its args and text attributes, and the exceptions it chains)
    and return it, to be raised on: ``raise redact_exception(e)``."""
    try:
        e.args = tuple(redact(a) if isinstance(a, (str, bytes)) else a for a in e.args)
        for k, v in list(getattr(e, "__dict__", {}).items()):
            if isinstance(v, (str, bytes)):
                setattr(e, k, redact(v))
    except (AttributeError, TypeError):  # an exception type that will not take it: its message stays
        pass
    for chained in (e.__cause__, e.__context__):
        if chained is not None and _depth < 8:
            redact_exception(chained, _depth + 1)
    return e


# -- logging -----------------------------------------------------------------------------------
class RedactFilter(logging.Filter):
    """Masks a record's message (with its args), traceback and stack text.  A message that holds a
    secret becomes its masked text (``args`` empty); any other keeps its format string and args, so
    what groups records by format string (``logs.Repeats``) still does.  Never drops a record."""

    def __init__(self, redactor: Redactor = DEFAULT):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        r = self.redactor
        try:
            formatted = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: its text is kept, not lost to an error
            formatted = None
        masked = r.text(formatted if formatted is not None else f"{record.msg} {record.args!r}")
        if masked != formatted:  # a secret, or a message that cannot be formatted
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            masked = r.text(text)
            if masked != text:
                record.exc_text = masked  # formatters use exc_text when it is set
        elif record.exc_text:
            record.exc_text = r.text(record.exc_text)
        if record.stack_info:
            record.stack_info = r.text(record.stack_info)
        record.redacted = True
        return True


FILTER = RedactFilter()
LOGGERS = ("mantra",)


def install(loggers: Iterable[str] = LOGGERS) -> None:
    """Pass every record of the ``loggers`` hierarchies through :data:`FILTER` as it is made.

    A filter on a logger sees only the records logged on that very logger, not those of its
    children, and handlers belong to the application; so the filter runs from the log record
    factory, for those loggers' records only (whatever their handlers, pytest's caplog included).
    """
    names = tuple(loggers)
    prefixes = tuple(n + "." for n in names)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", None) == names:
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if record.name in names or record.name.startswith(prefixes):
            FILTER.filter(record)
        return record

    factory.redacts = names
    logging.setLogRecordFactory(factory)


install()
