"""The shared-memory root is in a directory every local user may write: Mantra must use only what
its own user made, private to it, and never follow a symlink there.  Tests run as root, so
"another user" is played by chown-ing to nobody (uid 65534)."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from mantra.runtime import inspect, paths
from mantra.runtime.config import parse
from mantra.runtime.supervisor import create_spine
from mantra.spine import Ring, shm
from mantra.spine.messages import L2Update
from mantra.spine.shm import UnsafePath

NOBODY = 65534
DOC = {"system": {"name": "sec"}, "queues": {"l2": {"type": "L2Update", "capacity": 1024}},
       "actors": {"a": {"class": "mantra.examples.hello:Sink", "inputs": {"top": "l2"}}}}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays another user with chown: needs root")


def spec():
    return parse(json.loads(json.dumps(DOC)))


@pytest.fixture
def victim(tmp_path):
    """A file only root may write, that a planted symlink points at: it must stay untouched."""
    f = tmp_path / "precious"
    f.write_text("root's data\n")
    os.chmod(f, 0o644)
    return f


def untouched(f):
    return f.read_text() == "root's data\n" and stat.S_IMODE(f.stat().st_mode) == 0o644


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mantra.cli", *args], capture_output=True, text=True, timeout=60)


def test_what_mantra_makes_is_private_to_its_user(shm_root):
    create_spine(spec()).close()
    d = shm_root / "sec"
    assert mode(shm_root) == 0o700 and mode(d) == 0o700 and mode(d / "queues") == 0o700
    for f in ("system.json", "lock", "status", "queues/l2"):
        assert mode(d / f) == 0o600, f
        assert os.lstat(d / f).st_uid == os.geteuid()
    shm.write_text(d / "telemetry.json", "{}")
    assert mode(d / "telemetry.json") == 0o600
    shm.remove_system("sec")
    assert not d.exists()


def test_a_root_another_user_made_first_is_refused_with_what_to_do(shm_root, victim, tmp_path):
    shm_root.mkdir(mode=0o700)
    (shm_root / "sec").mkdir(mode=0o700)
    os.symlink(victim, shm_root / "sec" / "system.json")  # would be written through, as root
    os.chown(shm_root, NOBODY, NOBODY)
    with pytest.raises(UnsafePath) as e:
        create_spine(spec())
    msg = str(e.value)
    assert str(shm_root) in msg and "owned by another user" in msg and "uid 65534" in msg and "mode 0700" in msg
    assert "What to do" in msg and "MANTRA_SHM" in msg
    assert untouched(victim)
    assert sorted(p.name for p in (shm_root / "sec").iterdir()) == ["system.json"]  # nothing made there
    r = cli("run", "--duration", "1", str(_toml(tmp_path / "sec.toml")))
    assert r.returncode != 0 and "owned by another user" in r.stderr and "Traceback" not in r.stderr
    assert untouched(victim)


def _toml(path):
    path.write_text('[system]\nname = "sec"\n[queues.l2]\ntype = "L2Update"\ncapacity = 1024\n'
                    '[actors.a]\nclass = "mantra.examples.hello:Sink"\ninputs = { top = "l2" }\n')
    return path


def test_forged_rings_are_never_read_or_printed(shm_root):
    """Another user's ring in our system (or their whole root): tail and inspect refuse it."""
    create_spine(spec()).close()
    q = shm_root / "sec" / "queues" / "l2"
    w = Ring.attach(q).writer()
    w.send(L2Update(*([1] * len(L2Update._fields))))
    os.chown(q, NOBODY, NOBODY)
    got = []
    with pytest.raises(UnsafePath, match="owned by another user"):
        inspect.tail("sec", "l2", limit=1, timeout=0.5, out=got.append)
    assert got == []
    r = cli("tail", "sec", "l2", "-n", "1", "--timeout", "1")
    assert r.returncode != 0 and r.stdout == "" and "owned by another user" in r.stderr
    os.chown(q, 0, 0)
    os.chown(shm_root, NOBODY, NOBODY)  # now the whole root is theirs
    with pytest.raises(UnsafePath, match="owned by another user"):
        inspect.snapshot("sec", sample=0.01)
    r = cli("inspect", "--json")
    assert r.returncode != 0 and r.stdout == "" and str(shm_root) in r.stderr


@pytest.fixture
def unlink_root(shm_root):
    yield
    if shm_root.is_symlink():  # (the test root's own cleanup removes directories only)
        shm_root.unlink()


@pytest.mark.parametrize("where", ["root", "system", "queues", "file", "manifest", "tmp"])
def test_planted_symlinks_are_never_followed(shm_root, victim, tmp_path, where, unlink_root):
    create_spine(spec()).close()
    d = shm_root / "sec"
    if where == "root":  # the root itself is a link to a directory the attacker controls
        shm.remove_system("sec")
        os.rmdir(shm_root)
        (tmp_path / "theirs").mkdir(mode=0o700)
        os.symlink(tmp_path / "theirs", shm_root)
        link = shm_root
    elif where == "system":
        shm.remove_system("sec")
        (tmp_path / "theirs").mkdir(mode=0o700)
        os.symlink(tmp_path / "theirs", d)
        link = d
    elif where == "queues":
        shutil.move(d / "queues", tmp_path / "queues")
        os.symlink(tmp_path / "queues", d / "queues")
        link = d / "queues"
    elif where == "file":
        os.unlink(d / "queues" / "l2")
        os.symlink(victim, d / "queues" / "l2")
        link = d / "queues" / "l2"
    elif where == "manifest":
        os.unlink(d / "system.json")
        os.symlink(victim, d / "system.json")
        link = d / "system.json"
    else:  # the temporary name a file is written under before it is renamed into place
        link = d / f".system.json.{os.getpid()}.tmp"
        os.symlink(victim, link)
        shm.write_text(d / "system.json", "{}")
        assert untouched(victim) and not os.path.lexists(link) and mode(d / "system.json") == 0o600
        return
    if where in ("root", "system", "queues", "file"):
        with pytest.raises(UnsafePath, match="symbolic link") as e:
            Ring.attach(d / "queues" / "l2")
        assert str(link) in str(e.value)
    if where in ("root", "system"):
        with pytest.raises(UnsafePath, match="symbolic link"):
            create_spine(spec())
    if where == "manifest":
        with pytest.raises(UnsafePath, match="symbolic link"):
            shm.read_text(d / "system.json")
        with pytest.raises(UnsafePath, match="symbolic link"):
            inspect.snapshot("sec", sample=0.01)
        shm.write_text(d / "system.json", "{}")  # replaces the link, never writes through it
        assert not (d / "system.json").is_symlink()
    assert untouched(victim)
    assert os.listdir(tmp_path / "theirs") == [] if (tmp_path / "theirs").exists() else True


@pytest.mark.parametrize("which", ["root", "system", "queues"])
def test_a_directory_others_may_write_is_refused(shm_root, which):
    create_spine(spec()).close()
    shm.release_system("sec")
    d = {"root": shm_root, "system": shm_root / "sec", "queues": shm_root / "sec" / "queues"}[which]
    os.chmod(d, 0o777)
    with pytest.raises(UnsafePath, match="writable by group or others") as e:
        Ring.attach(shm_root / "sec" / "queues" / "l2")
    assert str(d) in str(e.value) and "0777" in str(e.value)
    if which != "queues":  # (a fresh start clears the system directory: its queues/ goes with it)
        with pytest.raises(UnsafePath, match="writable by group or others"):
            create_spine(spec())
        assert (shm_root / "sec" / "queues" / "l2").exists()  # nothing removed either


def test_our_own_directory_others_may_only_read_is_closed(shm_root):
    shm_root.mkdir(mode=0o755)  # what mkdir makes under the usual umask
    os.chmod(shm_root, 0o755)
    create_spine(spec()).close()
    assert mode(shm_root) == 0o700


def test_a_file_others_may_write_is_refused(shm_root):
    create_spine(spec()).close()
    os.chmod(shm_root / "sec" / "queues" / "l2", 0o666)
    with pytest.raises(UnsafePath, match="writable by group or others"):
        Ring.attach(shm_root / "sec" / "queues" / "l2")


def test_a_root_under_a_directory_others_may_rename_in_is_refused(shm_root, monkeypatch):
    shm_root.mkdir(mode=0o700)
    open_dir = shm_root / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)  # no sticky bit: anyone may swap what is in it
    monkeypatch.setenv("MANTRA_SHM", str(open_dir / "mantra"))
    with pytest.raises(UnsafePath, match="without the sticky bit") as e:
        create_spine(spec())
    assert str(open_dir) in str(e.value)
    assert not (open_dir / "mantra").exists()


def test_system_dir_checks_what_tools_attach_by(shm_root):
    create_spine(spec()).close()
    assert paths.system_dir("sec") == shm_root / "sec"
    os.chown(shm_root / "sec", NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="owned by another user"):
        paths.system_dir("sec")
    os.chown(shm_root / "sec", 0, 0)
