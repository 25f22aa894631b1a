"""Where a system's spine files live (one obvious place for every name)."""

from __future__ import annotations

from pathlib import Path

from ..spine.shm import system_dir

__all__ = ["system_dir", "queue", "array", "timing", "status", "manifest", "telemetry", "lock"]


def queue(d: Path, name: str) -> Path:
    return d / "queues" / name


def array(d: Path, name: str) -> Path:
    return d / "arrays" / name


def timing(d: Path, process: str) -> Path:
    return d / "timing" / process


def status(d: Path) -> Path:
    return d / "status"


def manifest(d: Path) -> Path:
    return d / "system.json"


def telemetry(d: Path) -> Path:
    return d / "telemetry.json"


def lock(d: Path) -> Path:
    """Held (flock) by the process that created the system, for its life; records its pid."""
    return d / "lock"
