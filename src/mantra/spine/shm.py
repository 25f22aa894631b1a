"""The per-system directory of shared-memory files: ``$MANTRA_SHM/<system>/{queues,arrays}/<name>``.

Files live in ``/dev/shm`` (RAM-backed) and are mapped with ``mmap`` directly: unlike
``multiprocessing.shared_memory`` on 3.11, nothing unlinks them when some process exits.

``/dev/shm`` is writable by every local user, so nothing found there is trusted: the root and each
system directory must be owned by the running user and closed to everyone else (0700), every
directory under the root is opened without following symlinks and checked, files are opened with
``O_NOFOLLOW`` and must be ours, and what Mantra writes is private (0600).  Anything else is refused
with ``UnsafePath``.  Every file under the root is created or opened through the functions here.

A system directory holds a ``lock`` file, flock-ed for the life of the process that created the
system (``lock_system``) and naming it, so a second system of the same name is refused
(``SystemRunning``) while the first lives, and the next start after a crash takes the directory over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import mmap
import os
import pwd
import re
import shutil
import stat
import time
from pathlib import Path

ROOT_ENV = "MANTRA_SHM"
LOCK = "lock"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

log = logging.getLogger("mantra.shm")


class Refused(Exception):
    """Mantra will not use a shared-memory path or start a system: the message says why and what to do."""


class UnsafePath(Refused):
    """A path under the shared-memory root is not ours alone (other owner, open mode, a symlink)."""


class SystemRunning(Refused):
    """A live process already runs a system of this name."""


def root() -> Path:
    return Path(os.path.abspath(os.environ.get(ROOT_ENV, "/dev/shm/mantra")))


def system_dir(system: str) -> Path:
    """The system's directory; the root and the directory are checked if they exist (not created)."""
    check_name(system)
    d = root() / system
    fd = _open_dir(d, create=False, missing_ok=True)
    if fd is not None:
        os.close(fd)
    return d


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"bad name {name!r}: use letters, digits, '_', '.', '-'")
    return name


# ---------------------------------------------------------------------------------- checks
def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refuse(path, problem: str, st=None, fix: str = "") -> UnsafePath:
    me = _who(os.geteuid())
    seen = f" (owner {_who(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})" if st is not None else ""
    fix = fix or (f"if you do not know who made it, remove it (as its owner or root: rm -rf {path}); "
                  f"or set {ROOT_ENV} to a directory of your own")
    return UnsafePath(f"{path}: {problem}{seen}. Mantra's shared memory must be made by you ({me}) and "
                      f"closed to everyone else (directories 0700, files 0600), or another user could read, "
                      f"forge or redirect its messages. What to do: {fix}.")


def _check_dir(fd: int, path) -> None:
    """A Mantra directory: ours, writable by nobody else; one that merely lets others look in
    (0755, made by mkdir) is closed to 0700, as nobody else can have put anything in it."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "not a directory", st)
    if st.st_uid != os.geteuid():
        raise _refuse(path, "owned by another user", st)
    if st.st_mode & 0o022:
        raise _refuse(path, "writable by group or others, so anyone may have planted files in it", st,
                      f"remove it (rm -rf {path}) and let Mantra create it again")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)


def _check_file(fd: int, path) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "not a regular file", st)
    if st.st_uid != os.geteuid():
        raise _refuse(path, "owned by another user", st)
    if st.st_mode & 0o022:
        raise _refuse(path, "writable by group or others", st, f"remove it (rm {path})")
    return st


def _check_ancestors(d: Path) -> None:
    """Whoever may rename entries of a directory above the root could swap the root under us:
    each must be ours or root's, and if others may write it, sticky (like /dev/shm and /tmp)."""
    p = Path(os.path.realpath(d))
    for a in (p, *p.parents):
        try:
            st = os.stat(a)
        except FileNotFoundError:
            continue  # created below, by us
        fix = f"set {ROOT_ENV} under directories only you or root may change (the default is /dev/shm/mantra)"
        if st.st_uid not in (0, os.geteuid()):
            raise _refuse(a, f"above {ROOT_ENV} and owned by another user, who could swap the root", st, fix)
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise _refuse(a, f"above {ROOT_ENV} and writable by others without the sticky bit, so another "
                             f"user could swap the root", st, fix)


def _not_dir(dfd: int | None, name: str, path) -> UnsafePath:
    """Describe what sits at ``name`` where a directory or file was expected (a symlink...)."""
    kw = {} if dfd is None else {"dir_fd": dfd}
    try:
        st = os.stat(name, follow_symlinks=False, **kw)
    except OSError:
        return _refuse(path, "not a directory")
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, **kw)
        return _refuse(path, f"a symbolic link (to {target}); Mantra follows no symlinks here", st,
                       f"remove the link (rm {path})")
    return _refuse(path, "not a directory", st)


def _open_dir_at(dfd: int | None, name: str, path, create: bool) -> int:
    """Open directory ``name`` (relative to ``dfd``; ``dfd`` None: ``name`` is absolute) without
    following a symlink, making it (0700) if asked, and check it."""
    kw = {} if dfd is None else {"dir_fd": dfd}
    for attempt in (0, 1):
        try:
            fd = os.open(name, _DIR_FLAGS, **kw)
            break
        except FileNotFoundError:
            if not create or attempt:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
            try:
                os.mkdir(name, 0o700, **kw)
            except FileExistsError:
                pass
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _not_dir(dfd, name, path) from None
            raise
    try:
        _check_dir(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_root(create: bool) -> int:
    r = root()
    if create and not r.parent.exists():
        os.makedirs(r.parent, 0o700, exist_ok=True)
    _check_ancestors(r.parent)
    return _open_dir_at(None, str(r), r, create)


def _open_dir(path, *, create: bool, missing_ok: bool = False) -> int | None:
    """A checked directory fd for ``path``.  Under the root, walked from the root one component
    at a time (O_DIRECTORY|O_NOFOLLOW); elsewhere (a caller's own directory) it must be ours or
    root's and, if others may write it, sticky."""
    path = Path(os.path.abspath(path))
    r = root()
    if path != r and r not in path.parents:
        if create:
            os.makedirs(path, 0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise
        st = os.fstat(fd)
        if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            os.close(fd)
            raise _refuse(path, "is not a directory only you (or root) may write", st,
                          "use a directory of your own")
        return fd
    try:
        fd = _open_root(create)
        cur = r
        for part in path.relative_to(r).parts:
            cur = cur / part
            try:
                nfd = _open_dir_at(fd, part, cur, create)
            finally:
                os.close(fd)
            fd = nfd
        return fd
    except FileNotFoundError:
        if missing_ok:
            return None
        raise


def _open_at(dfd: int, name: str, path, flags: int) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _not_dir(dfd, name, path) from None
        raise


# ---------------------------------------------------------------------------------- files
def ensure_dir(path) -> Path:
    """Make (0700) and check a directory; under the root every component is checked."""
    os.close(_open_dir(path, create=True))
    return Path(path)


def open_fd(path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A checked fd for a file (created 0600 if ``O_CREAT``): its directory checked, never through
    a symlink, ours and writable by nobody else.  For lock files and the like."""
    path = Path(path)
    dfd = _open_dir(path.parent, create=bool(flags & os.O_CREAT))
    try:
        fd = _open_at(dfd, path.name, path, flags)
    finally:
        os.close(dfd)
    try:
        _check_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(path) -> str:
    """A small file's text (manifest, telemetry, instruments), read without following symlinks."""
    fd = open_fd(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def _replace_into(path: Path, write) -> None:
    """Create a private temporary file next to ``path``, ``write(fd)``, rename it into place:
    readers never see a part, and whatever sat at ``path`` (a planted symlink too) is replaced,
    never written through."""
    dfd = _open_dir(path.parent, create=True)
    try:
        tmp = f".{path.name}.{os.getpid()}.tmp"
        try:
            fd = _open_at(dfd, tmp, path.with_name(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:  # left by a dead process that had our pid
            os.unlink(tmp, dir_fd=dfd)
            fd = _open_at(dfd, tmp, path.with_name(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            write(fd)
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
    finally:
        os.close(dfd)


def write_text(path, text: str) -> None:
    """Write a small file whole (0600), atomically."""
    data = text.encode()

    def write(fd):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    _replace_into(Path(path), write)


def create_file(path: Path, size: int, init) -> mmap.mmap:
    """Make a zeroed file of ``size`` bytes, let ``init(mapping)`` write its header, then rename it
    into place, so an attaching process never sees a half-written header."""
    out = []

    def write(fd):
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size)
        try:
            init(m)
        except BaseException:
            m.close()
            raise
        out.append(m)

    _replace_into(Path(path), write)
    return out[0]


def map_file(path: Path) -> mmap.mmap:
    fd = open_fd(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def systems() -> list[str]:
    try:
        fd = _open_root(create=False)
    except FileNotFoundError:
        return []
    try:
        return sorted(n for n in os.listdir(fd)
                      if stat.S_ISDIR(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- the system lock
_held: dict[str, "SystemLock"] = {}  # lock path -> the lock this process holds


def proc_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if it is gone or a zombie: with
    the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if rest[0] in (b"Z", b"X") else int(rest[19])


class SystemLock:
    """The lock of one system, held by this process.  Its file records who holds it and the
    processes it started (``note``), so the next start after a crash can name and clean them."""

    def __init__(self, system: str, fd: int, path: Path, previous: dict | None, *, claim: bool = True):
        self.system, self.fd, self.path = system, fd, path
        self.previous = previous  # the record a holder that died left behind, else None
        self.record = {"pid": os.getpid(), "start": proc_start(os.getpid()), "since_ns": time.time_ns(),
                       "processes": {}}
        if claim:
            self._write()
            _held[str(path)] = self

    def _write(self) -> None:
        data = json.dumps(self.record).encode() if self.record else b""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def note(self, name: str, pid: int | None) -> None:
        """Record a process this system started (``pid`` None: it ended)."""
        if pid is None:
            self.record["processes"].pop(name, None)
        else:
            self.record["processes"][name] = [pid, proc_start(pid)]
        self._write()

    def release(self) -> None:
        """Give the lock up cleanly (the record emptied: nothing to take over)."""
        if self.fd < 0:
            return
        self.record = {}
        try:
            self._write()
        finally:
            self._close()

    def _close(self) -> None:
        if _held.get(str(self.path)) is self:
            del _held[str(self.path)]
        os.close(self.fd)
        self.fd = -1


def _read_record(fd: int) -> dict | None:
    raw = os.pread(fd, 1 << 16, 0)
    if not raw.strip():
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return {"pid": None, "processes": {}}  # torn by a holder that died writing it
    return rec if isinstance(rec, dict) else {"pid": None, "processes": {}}


def _acquire(system: str, *, create: bool) -> tuple[int, Path, dict | None] | None:
    d = root() / check_name(system)
    path = d / LOCK
    if str(path) in _held:
        raise SystemRunning(f"system {system!r} is already running in this process (pid {os.getpid()}): "
                            f"stop it first, or give this one another [system] name")
    for _ in range(10):
        dfd = _open_dir(d, create=create, missing_ok=not create)
        if dfd is None:
            return None
        try:
            fd = _open_at(dfd, LOCK, path, os.O_RDWR | os.O_CREAT)
        finally:
            os.close(dfd)
        try:
            _check_file(fd, path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                rec = _read_record(fd) or {}
                pid = rec.get("pid")
                since = rec.get("since_ns")
                when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since / 1e9))}" if since else ""
                raise SystemRunning(
                    f"system {system!r} is already running (supervisor pid {pid or '?'}{when}; lock {path}). "
                    f"Stop it first (kill -INT {pid or '<pid>'}), or give this one another [system] name") from None
            if os.fstat(fd).st_nlink:
                return fd, path, _read_record(fd)
            # the holder before us removed the directory as we opened its lock: start again
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise SystemRunning(f"system {system!r}: its directory keeps being removed and created; is another "
                        f"system of the name starting and stopping?")


def lock_system(system: str) -> SystemLock:
    """Take the system's lock for the life of this process (or until ``release``/``remove_system``),
    making the root and the system directory if needed.  ``SystemRunning`` if a live process holds
    it; a lock whose holder died is taken over and its record kept in ``.previous``."""
    return SystemLock(system, *_acquire(system, create=True))


def held(system: str) -> SystemLock | None:
    return _held.get(str(root() / check_name(system) / LOCK))


def clear_system(lock: SystemLock) -> None:
    """Remove everything in the locked system's directory but its lock."""
    fd = _open_dir(lock.path.parent, create=False)
    try:
        for name in os.listdir(fd):
            if name == LOCK:
                continue
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                shutil.rmtree(name, dir_fd=fd)  # never follows symlinks (fd-based walk)
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def release_system(system: str) -> None:
    """Give up this process's lock of ``system``, keeping its files."""
    lock = held(system)
    if lock is not None:
        lock.release()


def remove_system(system: str) -> bool:
    """Remove the system's directory.  Only under its lock: the lock this process holds, or one
    taken now; a system another live process runs is left alone (logged, False)."""
    lock = held(system)
    if lock is None:
        try:
            got = _acquire(system, create=False)
        except SystemRunning as e:
            log.warning("not removing system %r: %s", system, e)
            return False
        if got is None:
            return True  # no such directory
        lock = SystemLock(system, *got, claim=False)
    try:
        rfd = _open_root(create=False)
        try:
            shutil.rmtree(system, dir_fd=rfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(rfd)
    finally:
        lock._close()
    return True


def _forget_locks_in_child() -> None:
    # A forked child must not keep its parent's system lock alive after the parent dies (closing
    # the child's copy of the fd leaves the parent's flock in place).
    for lock in list(_held.values()):
        try:
            os.close(lock.fd)
        except OSError:
            pass
        lock.fd = -1
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
