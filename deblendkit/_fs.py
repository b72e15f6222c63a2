"""File-system helpers: atomic writes and durable renames.

A file the kit writes appears whole or not at all: it is written to a
temporary name in the same directory, flushed and fsynced, renamed over the
target with :func:`os.replace`, and the directory is fsynced so that the
rename survives a crash.
"""
from __future__ import annotations

import contextlib
import os
import socket
from importlib import metadata
from pathlib import Path

from deblendkit.errors import DataFileError

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_directory", "temp_name", "package_version"]


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform can fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platform dependent
        pass
    finally:
        os.close(fd)


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden temporary name beside ``path``, unique to this host and process."""
    path = Path(path)
    return path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, directory fsync).

    Raises :class:`~deblendkit.errors.DataFileError` naming the path if it cannot be written;
    the temporary file is removed then.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DataFileError(f"cannot write {path}: {exc}", value=str(path)) from exc
    fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
