"""Atomic file and folder writes: a killed run never leaves a half output that looks finished.

Everything is written under a temporary name in the destination's own folder (same file
system, so the final ``os.replace`` is atomic) and renamed only once complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class DiskFullError(OSError):
    """The disk filled up while writing; the partial output was removed."""


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``.

    On any exception the temporary file or folder is deleted and ``dest`` is left as it was.
    A full disk is re-raised as :class:`DiskFullError` naming ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    target = tmp if is_dir else tmp / dest.name
    try:
        yield target
        if is_dir:
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            os.replace(tmp, dest)
        else:
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(target, dest)
        _fsync_dir(dest.parent)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {dest}; nothing was kept") from err
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(dest: str | Path, obj: object) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def listing_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """Hex SHA-256 over (name, hex SHA-256 of its bytes) pairs in the given order: one digest for
    a set of files, the same whether they sit in a folder or a zip."""
    return hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in entries).encode()).hexdigest()
