"""Coinbase Advanced Trade signing, as pure functions (../shared/research/exchanges.md 4.2, 4.3).

Every private REST call carries ``Authorization: Bearer <JWT>`` and every private WebSocket
subscribe a ``jwt`` field: a JSON Web Token made afresh for each, signed with the API key's private
key.  Two key types, both accepted by the venue:

- an EC P-256 key (PEM, ``-----BEGIN EC PRIVATE KEY-----`` or PKCS#8): ``alg`` ``ES256``, the
  signature ``r || s`` (64 bytes).  ECDSA draws a random number per signature: the same input
  signs differently every time, so only the public key can check it.
- an Ed25519 key (PKCS#8 PEM, or base64 of 64 bytes ``seed || public`` or of the 32-byte seed):
  ``alg`` ``EdDSA``, deterministic.

The token, as the venue's SDK (``coinbase/jwt_generator.py``) writes it: header
``{"alg","kid": <key name>,"nonce": <random hex>,"typ":"JWT"}`` (keys sorted), claims
``{"sub": <key name>,"iss":"cdp","nbf": now,"exp": now + lifetime}`` and, for REST only,
``"uri": "<METHOD> <host><path>"`` (the path without its query string), each part compact JSON in
base64url without padding.  The venue refuses a token after ``exp``: a request that arrives later
than ``lifetime_s`` after it was signed is not carried out (the protocol's receive window).

Everything here takes the credentials, the request, the time (whole seconds) and the nonce as
arguments and returns exactly what goes on the wire; nothing reads a clock or draws a random
number.  ``verify`` is the venue's side (the simulator's check): ``(error, claims)``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

REST_HOST = "api.coinbase.com"
ISSUER = "cdp"
LIFETIME_S = 120  # the SDK's and the documentation's: "JWTs expire after 2 minutes"
CONTENT_TYPE = "application/json"

# What the venue's refusal is, for the simulator's counts (the venue answers 401 for each).
MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, EXPIRED, NOT_YET_VALID, WRONG_URI, WRONG_CLAIMS = (
    "malformed token", "unknown key", "invalid signature", "token expired", "token not yet valid",
    "uri does not match the request", "claims do not match the key")


class KeyFormatError(ValueError):
    """The secret is not a key the venue signs with (never says what the secret is)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(obj, sort: bool = False) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort).encode()


@functools.lru_cache(maxsize=16)
def load_key(secret: str):
    """``(alg, private key)`` from the API secret: a PEM (EC P-256 or Ed25519) or base64 Ed25519.
    Literal ``\\n`` in a PEM (as an environment variable may hold it) are newlines."""
    text = secret.strip()
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.replace("\\n", "\n").encode(), password=None)
        except (ValueError, TypeError, binascii.Error):
            raise KeyFormatError("the secret is a PEM that is not a readable private key") from None
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return "ES256", key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return "EdDSA", key
        raise KeyFormatError(f"the secret is a {type(key).__name__}: Coinbase keys are EC P-256 or Ed25519")
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise KeyFormatError("the secret is neither a PEM private key nor base64") from None
    if len(raw) not in (32, 64):
        raise KeyFormatError(f"a base64 Ed25519 secret is 32 or 64 bytes, not {len(raw)}")
    return "EdDSA", ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])


def public_key(secret: str):
    """The public key of the API secret (what the venue holds)."""
    return load_key(secret)[1].public_key()


def rest_uri(method: str, host: str, path: str) -> str:
    """The ``uri`` claim: ``"GET api.coinbase.com/api/v3/brokerage/accounts"`` (no query string)."""
    return f"{method.upper()} {host}{path.partition('?')[0]}"


def claims(key_name: str, now_s: int, uri: str | None = None, lifetime_s: int = LIFETIME_S) -> dict:
    c = {"sub": key_name, "iss": ISSUER, "nbf": int(now_s), "exp": int(now_s) + int(lifetime_s)}
    if uri is not None:
        c["uri"] = uri
    return c


def jwt(key_name: str, secret: str, now_s: int, nonce: str, uri: str | None = None,
        lifetime_s: int = LIFETIME_S) -> str:
    """The token for one request (``uri`` given: REST) or one WebSocket message (no ``uri``)."""
    alg, key = load_key(secret)
    head = _b64url(_json({"alg": alg, "kid": key_name, "nonce": nonce, "typ": "JWT"}, sort=True))
    body = _b64url(_json(claims(key_name, now_s, uri, lifetime_s)))
    signing_input = f"{head}.{body}".encode()
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key.sign(signing_input)
    return f"{head}.{body}.{_b64url(sig)}"


def rest_headers(key_name: str, secret: str, method: str, host: str, path: str, now_s: int, nonce: str,
                 lifetime_s: int = LIFETIME_S) -> tuple:
    """The headers of a private REST call, ``((name, value), ...)``; its body is JSON."""
    token = jwt(key_name, secret, now_s, nonce, rest_uri(method, host, path), lifetime_s)
    return (("Authorization", f"Bearer {token}"), ("Content-Type", CONTENT_TYPE))


def ws_subscribe(channel: str, key_name: str, secret: str, now_s: int, nonce: str, product_ids=None,
                 lifetime_s: int = LIFETIME_S, kind: str = "subscribe") -> dict:
    """A WebSocket (un)subscribe for one channel with its own JWT (no ``uri``)."""
    msg = {"type": kind, "channel": channel}
    if product_ids:
        msg["product_ids"] = list(product_ids)
    msg["jwt"] = jwt(key_name, secret, now_s, nonce, None, lifetime_s)
    return msg


# -- the venue's side: the simulator checks tokens with the same functions ----------------------

def decode(token: str) -> tuple[dict, dict, bytes, bytes]:
    """``(header, claims, signature, signing input)`` of a token, unchecked; ValueError if malformed."""
    parts = str(token).split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three parts")
    try:
        header, body = json.loads(_unb64url(parts[0])), json.loads(_unb64url(parts[1]))
        sig = _unb64url(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("a JWT part is not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise ValueError("a JWT part is not an object")
    return header, body, sig, f"{parts[0]}.{parts[1]}".encode()


def verify(public_keys: dict, token: str, now_s: float, uri: str | None = None) -> tuple[str | None, dict]:
    """Check a token as the venue does: ``(error or None, claims)``.

    ``public_keys``: accepted ``key name -> public key``; ``uri``: the request's own ``uri`` claim
    for REST (None: a WebSocket token, which carries none)."""
    try:
        header, c, sig, signing_input = decode(token)
    except ValueError:
        return MALFORMED, {}
    kid = header.get("kid")
    pub = public_keys.get(kid) if isinstance(kid, str) else None
    if pub is None:
        return UNKNOWN_KEY, c
    alg = header.get("alg")
    try:
        if alg == "ES256" and isinstance(pub, ec.EllipticCurvePublicKey) and len(sig) == 64:
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            pub.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA" and isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, signing_input)
        else:
            return BAD_SIGNATURE, c
    except InvalidSignature:
        return BAD_SIGNATURE, c
    if c.get("sub") != kid or c.get("iss") != ISSUER:
        return WRONG_CLAIMS, c
    nbf, exp = c.get("nbf"), c.get("exp")
    if type(nbf) is not int or type(exp) is not int:
        return MALFORMED, c
    if now_s >= exp:
        return EXPIRED, c
    if now_s < nbf - 1:  # a second of leeway: nbf is written in whole seconds
        return NOT_YET_VALID, c
    if uri is not None and c.get("uri") != uri:
        return WRONG_URI, c
    return None, c
