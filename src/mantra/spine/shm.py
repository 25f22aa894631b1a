"""The per-system directory of shared-memory files: ``$MANTRA_SHM/<system>/{queues,arrays}/<name>``.

Files live in ``/dev/shm`` (RAM-backed) and are mapped with ``mmap`` directly: unlike
``multiprocessing.shared_memory`` on 3.11, nothing unlinks them when some process exits.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
from pathlib import Path

ROOT_ENV = "MANTRA_SHM"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/dev/shm/mantra"))


def system_dir(system: str) -> Path:
    check_name(system)
    return root() / system


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad name {name!r}: use letters, digits, '_', '.', '-'")
    return name


def create_file(path: Path, size: int, init) -> mmap.mmap:
    """Make a zeroed file of ``size`` bytes, let ``init(mapping)`` write its header, then rename it
    into place, so an attaching process never sees a half-written header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    init(m)
    os.replace(tmp, path)
    return m


def map_file(path: Path) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def remove_system(system: str) -> None:
    shutil.rmtree(system_dir(system), ignore_errors=True)


def systems() -> list[str]:
    r = root()
    return sorted(p.name for p in r.iterdir() if p.is_dir()) if r.exists() else []


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
