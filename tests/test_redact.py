"""One redaction for logs, captures and errors: every venue's documented secret forms are masked,
public data is left alone, and the log filter masks every record of the mantra loggers."""

import logging

import pytest
from hypothesis import assume, given, strategies as st

from mantra.redact import MASK, Redactor, RedactFilter, redact, redact_exception

# Documented credentials and tokens (the venues' own examples).
BN_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BN_SIG = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
KR_TOKEN = "1Dwc4lzSwNWOAwkMdqhssNNFhs1ed606d1WcF3XfEMw"
KR_SIGN = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
BF_SIG = "e3ab4d3e4a3d7a1e6f7c4b3e2f0f8b5d4cf1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920a1b2c3d4"
CB_PASS = "x7pq2rs9tz"
CB_JWT = ("eyJhbGciOiJFUzI1NiIsImtpZCI6Im9yZ2FuaXphdGlvbnMvMTIzIiwidHlwIjoiSldUIn0."
          "eyJzdWIiOiJvcmdhbml6YXRpb25zLzEyMyIsImlzcyI6ImNkcCJ9.c2lnbmF0dXJlLWJ5dGVz_-x")
BS_KEY, BS_SIG, BS_TOKEN = "abc123KEYxyz", "9f3e1c2b0a", "Wq8nT4kZr2"

VENUE_FORMS = {
    "binance REST query": (f"https://api.binance.com/api/v3/order?symbol=LTCBTC&timestamp=1499827319559"
                           f"&signature={BN_SIG}", [BN_SIG], ["symbol=LTCBTC", "timestamp=1499827319559"]),
    "binance api key header": ({"X-MBX-APIKEY": BN_KEY, "Accept": "application/json"}, [BN_KEY],
                               ["application/json"]),
    "binance WS-API params": (f'{{"id":"1","method":"userDataStream.subscribe.signature","params":{{"apiKey":'
                              f'"{BN_KEY}","timestamp":1645423376532,"signature":"{BN_SIG}"}}}}',
                              [BN_KEY, BN_SIG], ['"timestamp":1645423376532', "userDataStream"]),
    "binance listenKey path": (f"wss://stream.binance.com:9443/ws/{LISTEN_KEY}", [LISTEN_KEY],
                               ["wss://stream.binance.com:9443/ws/"]),
    "binance listenKey stream": (f"wss://stream.binance.com:9443/stream?streams=btcusdt@depth/{LISTEN_KEY}",
                                 [LISTEN_KEY], ["btcusdt@depth"]),
    "binance listenKey query": (f"https://api.binance.com/api/v3/userDataStream?listenKey={LISTEN_KEY}",
                                [LISTEN_KEY], ["userDataStream"]),
    "binance listenKey body": (f'{{"listenKey":"{LISTEN_KEY}"}}', [LISTEN_KEY], ['"listenKey"']),
    "kraken REST headers": ({"API-Key": BN_KEY, "API-Sign": KR_SIGN}, [BN_KEY, KR_SIGN], []),
    "kraken token response": (f'{{"error":[],"result":{{"token":"{KR_TOKEN}","expires":900}}}}', [KR_TOKEN],
                              ['"expires":900']),
    "kraken private request": (f'{{"method":"add_order","params":{{"order_type":"limit","token":"{KR_TOKEN}"}},'
                               f'"req_id":1}}', [KR_TOKEN], ['"order_type":"limit"', '"req_id":1']),
    "bitfinex WS auth": (f'{{"event":"auth","apiKey":"{BN_KEY}","authSig":"{BF_SIG}","authNonce":1616492376594,'
                         f'"authPayload":"AUTH1616492376594"}}', [BN_KEY, BF_SIG], ['"authNonce":1616492376594']),
    "bitfinex REST headers": ({"bfx-nonce": "1616492376594", "bfx-apikey": BN_KEY, "bfx-signature": BF_SIG},
                              [BN_KEY, BF_SIG], ["1616492376594"]),
    "coinbase JWT header": ({"Authorization": f"Bearer {CB_JWT}"}, [CB_JWT], []),
    "coinbase JWT subscribe": (f'{{"type":"subscribe","channel":"level2","jwt":"{CB_JWT}"}}', [CB_JWT],
                               ['"channel":"level2"']),
    "coinbase exchange headers": ({"CB-ACCESS-KEY": BN_KEY, "CB-ACCESS-SIGN": KR_SIGN, "CB-ACCESS-TIMESTAMP": "1",
                                   "CB-ACCESS-PASSPHRASE": CB_PASS}, [BN_KEY, KR_SIGN, CB_PASS], []),
    "coinbase exchange subscribe": (f'{{"type":"subscribe","signature":"{KR_SIGN}","key":"{BN_KEY}",'
                                    f'"passphrase":"{CB_PASS}","timestamp":"1"}}', [BN_KEY, KR_SIGN, CB_PASS],
                                    ['"timestamp":"1"']),
    "bitstamp REST headers": ({"X-Auth": f"BITSTAMP {BS_KEY}", "X-Auth-Signature": BS_SIG,
                               "X-Auth-Nonce": "f93c979d-b00d-43a9-9b9c-fd4cd9547fa6"}, [BS_KEY, BS_SIG],
                              ["f93c979d-b00d-43a9-9b9c-fd4cd9547fa6"]),
    "bitstamp private subscribe": (f'{{"event":"bts:subscribe","data":{{"channel":"private-my_orders_btcusd-7",'
                                   f'"auth":"{BS_TOKEN}"}}}}', [BS_TOKEN], ["private-my_orders_btcusd-7"]),
    "bitstamp token response": (f'{{"token":"{BS_TOKEN}","valid_sec":60,"user_id":7}}', [BS_TOKEN],
                                ['"valid_sec":60']),
}


@pytest.mark.parametrize("name", VENUE_FORMS)
def test_each_venues_documented_secret_forms_are_masked(name):
    form, secrets, kept = VENUE_FORMS[name]
    got = redact(form)
    text = got if isinstance(got, str) else repr(got)
    for s in secrets:
        assert s not in text
    for k in kept:
        assert k in text
    assert MASK in text
    if isinstance(form, dict):  # header names kept, values masked; so as header lines
        assert got.keys() == form.keys()
        lines = "\n".join(f"{k}: {v}" for k, v in form.items())
        assert not any(s in redact(lines) for s in secrets)
    else:
        assert redact(form.encode()) == got.encode()  # bytes alike
        assert redact(repr(form)) == repr(got) or not any(s in redact(repr(form)) for s in secrets)
        assert redact(got) == got  # idempotent


@pytest.mark.parametrize("text", [
    "wss://stream.binance.com:9443/stream?streams=nknusdt@depth@100ms/blzeth@depth@100ms",
    "https://api.binance.com/api/v3/depth?symbol=BLZETH&limit=1000",
    "https://www.bitstamp.net/api/v2/order_book/adaeur",
    '{"event":"subscribe","channel":"book","symbol":"tBFTUSD","prec":"P0","freq":"F0","len":"100"}',
    '{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10}}',
    '{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"]],"a":[]}',
    "/dev/shm/mantra/demo/queues/l2", "binance: connection dropped (silent socket: nothing for 60.0 s)",
])
def test_public_data_is_left_alone(text):
    assert redact(text) == text


def test_secrets_in_paths_urls_passwords_jwts_and_keys_wherever_they_are():
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oWJGf8Z1m2pvoAoGCCqGSM49\n" \
          "-----END EC PRIVATE KEY-----"
    for text, secret in [
        (f"> GET /ws/{LISTEN_KEY} HTTP/1.1", LISTEN_KEY),  # a request line
        (f"> X-MBX-APIKEY: {BN_KEY}", BN_KEY),  # a header line
        ("proxy http://user:hunter2@proxy:3128 refused", "hunter2"),
        (f"token is {CB_JWT}", CB_JWT),
        (f"bad secret: {pem}", "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oWJGf8Z1m2pvoAoGCCqGSM49"),
        (f'{{"payload":"{{\\"token\\":\\"{KR_TOKEN}\\",\\"x\\":1}}"}}', KR_TOKEN),  # JSON inside JSON
        (f"b'{{\"code\":-1022,\"msg\":\"bad\",\"signature\":\"{BN_SIG}'", BN_SIG),  # a cut body's repr
        (f"Request(token='{KR_TOKEN}', n=1)", KR_TOKEN),
        (f"{{'X-MBX-APIKEY': '{BN_KEY}'}}", BN_KEY),  # a headers dict's repr
    ]:
        assert secret not in redact(text), text


secret = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789+/=_-", min_size=8, max_size=64)
field = st.sampled_from(["apiKey", "signature", "token", "listenKey", "passphrase", "authSig", "secret", "jwt",
                         "X-MBX-APIKEY", "API-Sign", "CB-ACCESS-SIGN", "bfx-signature", "X-Auth-Signature"])


@given(field, secret, st.sampled_from(['{"%s":"%s","n":1}', '{"%s": "%s"}', "https://h/p?x=1&%s=%s&y=2",
                                       "%s=%s", "%s: %s", "{'%s': '%s'}", "[%s=%s]"]))
def test_any_secret_in_any_form_is_masked(name, value, form):
    assume(value not in form % (name, ""))  # a "secret" like "signatur" is in the text anyway
    text = form % (name, value)
    got = redact(text)
    assert value not in got.replace(MASK, "\0") and redact(got) == got


def test_a_redactor_with_no_names_masks_nothing():
    raw = Redactor(fields=(), headers=())
    text = f"https://h/ws/{LISTEN_KEY}?signature={BN_SIG}"
    assert raw.text(text) == text and raw.text(bytearray(b"x")) == b"x"


def test_exceptions_are_masked_for_messages_and_in_place_to_be_raised_on():
    url = f"xyz://h/ws/{LISTEN_KEY}?signature={BN_SIG}"
    try:
        try:
            raise ValueError(f"unknown url type: {url!r}")
        except ValueError as inner:
            raise ConnectionError(f"cannot open {url}") from inner
    except ConnectionError as e:
        assert LISTEN_KEY not in redact(e) and "cannot open" in redact(e)
        assert redact_exception(e) is e
        for x in (e, e.__cause__):
            assert LISTEN_KEY not in str(x) and BN_SIG not in str(x)


class _Custom(Exception):
    def __init__(self, uri, msg):
        super().__init__(uri, msg)
        self.uri, self.msg = uri, msg

    def __str__(self):
        return f"{self.uri} isn't valid: {self.msg}"


def test_an_exception_with_its_own_str_is_masked_through_its_attributes():
    e = redact_exception(_Custom(f"wss://h/ws/{LISTEN_KEY}", "bad"))
    assert LISTEN_KEY not in str(e) and "isn't valid: bad" in str(e)


def test_the_log_filter_masks_every_mantra_record_message_args_and_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    child = logging.getLogger("mantra.some.module.made.later")  # created after the filter was installed
    try:
        raise RuntimeError(f"GET https://h/api?signature={BN_SIG} failed")
    except RuntimeError:
        child.exception("fetch of %s failed with %r", f"wss://h/ws/{LISTEN_KEY}", {"X-MBX-APIKEY": BN_KEY})
    child.warning(f"pre-formatted {{'token': {KR_TOKEN!r}}} and token=%s", KR_TOKEN)
    child.info("bad format %d", "not a number", )  # a broken call still loses its secrets, not its text
    logging.getLogger("mantra").warning("root of the hierarchy: listenKey=%s", LISTEN_KEY)
    for secret_ in (BN_SIG, LISTEN_KEY, BN_KEY, KR_TOKEN):
        assert secret_ not in caplog.text
    assert "fetch of wss://h/ws/*** failed" in caplog.text and "RuntimeError" in caplog.text


def test_a_record_without_secrets_keeps_its_format_string_and_args(caplog):
    """Filters that group records by format string (the repeat folding) keep working."""
    caplog.set_level(logging.INFO)
    log = logging.getLogger("mantra.test.plain")
    log.warning("book %d stale", 3)
    log.warning("book %s: listenKey=%s", "BTCUSDT", LISTEN_KEY)
    plain, secret_ = caplog.records[-2:]
    assert (plain.msg, plain.args, plain.getMessage()) == ("book %d stale", (3,), "book 3 stale")
    assert (secret_.msg, secret_.args) == ("book BTCUSDT: listenKey=***", ())


def test_the_filter_on_a_handler_masks_other_loggers_too():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(RedactFilter())
    other = logging.getLogger("someone.else")
    other.addHandler(handler)
    try:
        other.warning("key=%s", BN_KEY)
    finally:
        other.removeHandler(handler)
    assert records[0].getMessage() == "key=***"
