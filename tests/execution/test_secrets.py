"""Credentials come from the environment or a private key file, and errors never show a secret."""

import json
import os

import pytest

from mantra.execution import secrets
from mantra.execution.secrets import CredentialsError

SECRET = "s3cr3t-THAT-MUST-NOT-LEAK"


def test_from_environment_with_default_and_named_variables():
    c = secrets.load("binance", environ={"MANTRA_BINANCE_API_KEY": "k1", "MANTRA_BINANCE_API_SECRET": SECRET})
    assert (c.key, c.secret) == ("k1", SECRET)
    c = secrets.load("kraken", {"key_env": "K", "secret_env": "S"}, environ={"K": "k2", "S": SECRET})
    assert (c.key, c.secret) == ("k2", SECRET)
    assert SECRET not in repr(c) and SECRET not in str(c) and SECRET not in f"{c}"


def test_missing_key_names_the_variables():
    with pytest.raises(CredentialsError, match="MANTRA_KRAKEN_API_KEY and MANTRA_KRAKEN_API_SECRET"):
        secrets.load("kraken", environ={})
    with pytest.raises(CredentialsError, match="MANTRA_KRAKEN_API_SECRET"):
        secrets.load("kraken", environ={"MANTRA_KRAKEN_API_KEY": "k"})
    with pytest.raises(CredentialsError, match="unknown keys"):
        secrets.load("kraken", {"secret": SECRET}, environ={})


def test_key_file_must_be_private_and_outside_a_repository(tmp_path):
    f = tmp_path / "kraken.json"
    f.write_text(json.dumps({"key": "k", "secret": SECRET}))
    os.chmod(f, 0o644)
    with pytest.raises(CredentialsError, match="readable by others") as e:
        secrets.load("kraken", {"file": str(f)})
    assert SECRET not in str(e.value)
    os.chmod(f, 0o600)
    assert secrets.load("kraken", {"file": str(f)}).secret == SECRET
    (tmp_path / ".git").mkdir()
    with pytest.raises(CredentialsError, match="git working tree"):
        secrets.load("kraken", {"file": str(f)})


def test_key_file_errors(tmp_path):
    with pytest.raises(CredentialsError, match="does not exist"):
        secrets.load("binance", {"file": str(tmp_path / "nope.json")})
    f = tmp_path / "k.json"
    f.write_text(f"key=k secret={SECRET}")
    os.chmod(f, 0o600)
    with pytest.raises(CredentialsError, match="expected JSON") as e:
        secrets.load("binance", {"file": str(f)})
    assert SECRET not in str(e.value)
    link = tmp_path / "link.json"
    link.symlink_to(f)
    with pytest.raises(CredentialsError, match="symlink"):
        secrets.load("binance", {"file": str(link)})
