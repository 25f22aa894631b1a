"""API credentials: from the environment or a key file outside the repository, never from a config.

``[actors.<name>.params] credentials`` names where they are, not what they are:

    credentials = { key_env = "MANTRA_BINANCE_API_KEY", secret_env = "MANTRA_BINANCE_API_SECRET" }
    credentials = { file = "~/.config/mantra/kraken.json" }   # {"key": ..., "secret": ...}

With nothing given, ``MANTRA_<VENUE>_API_KEY`` / ``MANTRA_<VENUE>_API_SECRET`` (and
``_PASSPHRASE``) are read.  A key file must be a regular file of ours that nobody else can read
(0600 or stricter) and may not lie inside a git working tree.  Every error names the variable or
the file and what to do; none contains a secret.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..venues.account import Credentials


class CredentialsError(ValueError):
    """A key is missing, unreadable, or kept where others can read it."""


def env_names(venue: str) -> tuple[str, str, str]:
    v = venue.upper()
    return f"MANTRA_{v}_API_KEY", f"MANTRA_{v}_API_SECRET", f"MANTRA_{v}_API_PASSPHRASE"


def load(venue: str, spec: dict | None = None, environ=None) -> Credentials:
    """The credentials for ``venue`` per ``spec`` (see the module doc)."""
    env = os.environ if environ is None else environ
    spec = dict(spec or {})
    unknown = set(spec) - {"key_env", "secret_env", "passphrase_env", "file"}
    if unknown:
        raise CredentialsError(f"credentials: unknown keys {sorted(unknown)} (known: key_env, secret_env, "
                               "passphrase_env, file)")
    if "file" in spec:
        return _from_file(venue, Path(os.path.expanduser(str(spec["file"]))))
    k_env, s_env, p_env = env_names(venue)
    k_env, s_env, p_env = spec.get("key_env", k_env), spec.get("secret_env", s_env), spec.get("passphrase_env", p_env)
    key, secret = env.get(k_env, ""), env.get(s_env, "")
    missing = [n for n, v in ((k_env, key), (s_env, secret)) if not v]
    if missing:
        raise CredentialsError(f"{venue}: no API credentials: set {' and '.join(missing)} in the environment "
                               f"(or credentials = {{ file = \"...\" }} for a key file)")
    return Credentials(key.strip(), secret.strip(), env.get(p_env, "").strip())


def _from_file(venue: str, path: Path) -> Credentials:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CredentialsError(f"{venue}: key file {path} does not exist") from None
    except OSError as e:
        raise CredentialsError(f"{venue}: key file {path}: {e.strerror} (a symlink is refused)") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError(f"{venue}: key file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise CredentialsError(f"{venue}: key file {path} belongs to uid {st.st_uid}, not to us")
        if st.st_mode & 0o077:
            raise CredentialsError(f"{venue}: key file {path} is readable by others (mode "
                                   f"{stat.S_IMODE(st.st_mode):o}): chmod 600 {path}")
        raw = f.read()
    for d in path.resolve().parents:
        if (d / ".git").exists():
            raise CredentialsError(f"{venue}: key file {path} is inside the git working tree {d}: keep keys "
                                   "outside any repository")
    try:
        d = json.loads(raw)
        key, secret = str(d["key"]).strip(), str(d["secret"]).strip()
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(f"{venue}: key file {path}: expected JSON {{\"key\": ..., \"secret\": ...}}") from None
    if not key or not secret:
        raise CredentialsError(f"{venue}: key file {path}: key or secret is empty")
    return Credentials(key, secret, str(d.get("passphrase", "")).strip())


def for_simulator(venue: str) -> None:
    """Make sure the environment holds a key for ``venue``'s local simulator and its handler (both
    read ``MANTRA_<VENUE>_API_KEY`` / ``_SECRET``): a fresh random one unless one is set.  The secret
    is base64, the form every venue's signing accepts."""
    import base64

    key, secret, _ = env_names(venue)
    if not (os.environ.get(key) and os.environ.get(secret)):
        os.environ[key] = f"sim-{venue}-{os.urandom(4).hex()}"
        os.environ[secret] = base64.b64encode(os.urandom(64)).decode()
