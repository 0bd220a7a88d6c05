"""Atomic file and folder writes: a killed run never leaves a half output that looks finished.

Everything is written under a temporary name in the destination's own folder (same file
system, so the final ``os.replace`` is atomic) and renamed only once complete. Temporaries are
named ``.<name>.<random>.tmp``: ``.dvcignore`` keeps them out of DVC's hashes, and the next
write of the same destination removes those a killed run left. A destination that exists is
replaced only when it is of the same kind (a file by a file, a folder by a folder, and where the
caller says what its outputs look like, only such an output): a mistyped path never deletes a
folder of other things.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from densemotion.errors import DensemotionError


class DiskFullError(OSError):
    """The disk filled up (or a file size limit was hit) while writing; the partial output was removed."""


_FULL = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}


class DestinationError(DensemotionError):
    """The destination exists and is not an output of the kind being written."""


def _check_replaceable(dest: Path, is_dir: bool, same_kind: Callable[[Path], bool] | None, kind: str) -> None:
    if not dest.exists() and not dest.is_symlink():
        return
    what = "folder" if dest.is_dir() else "file"
    if dest.is_dir() != is_dir or (same_kind is not None and not same_kind(dest)):
        raise DestinationError(
            f"{dest} exists and is a {what} that is not {kind}: refusing to replace it "
            "(give the output's own path, or move that away first)"
        )


def _stem(dest: Path) -> str:
    """The part of ``dest``'s name its temporaries carry: cut so that a temporary's name fits the
    file system's 255 bytes for any ``dest`` a file system holds."""
    name = dest.name
    while len(name.encode("utf-8", "surrogateescape")) > 200:
        name = name[:-1]
    return name


def _remove_stale_temporaries(dest: Path) -> None:
    """Temporaries of ``dest`` that a killed write left (a later write of it proves they are stale)."""
    for stale in dest.parent.glob(f".{glob.escape(_stem(dest))}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(
    dest: str | Path,
    *,
    is_dir: bool = False,
    same_kind: Callable[[Path], bool] | None = None,
    kind: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``.

    On any exception the temporary file or folder is deleted and ``dest`` is left as it was.
    A full disk is re-raised as :class:`DiskFullError` naming ``dest``. An existing ``dest`` of
    the other type (file / folder), or for which ``same_kind(dest)`` is false, is refused with
    :class:`DestinationError` before anything is written (``kind`` names what was expected).
    """
    dest = Path(dest)
    _check_replaceable(dest, is_dir, same_kind, kind or ("a folder" if is_dir else "a file"))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{_stem(dest)}.", suffix=".tmp", dir=dest.parent))
    except OSError as err:
        raise OSError(err.errno, f"cannot write {dest}: {err.strerror}") from None
    target = tmp if is_dir else tmp / dest.name
    try:
        yield target
        if is_dir:
            if dest.exists():  # a folder of the same kind (checked above)
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        else:
            os.replace(target, dest)
        _fsync_dir(dest.parent)
    except OSError as err:
        if err.errno in _FULL:
            raise DiskFullError(err.errno, f"{_FULL[err.errno]} while writing {dest}; nothing was kept") from err
        if err.filename is not None and str(tmp) in str(err.filename):  # name the output, not its temporary
            raise OSError(err.errno, f"cannot write {dest}: {err.strerror}") from err
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def finite_json(obj: object) -> object:
    """``obj`` with every non-finite float (NaN, inf) as None: strict JSON has no NaN token."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def write_json(dest: str | Path, obj: object) -> None:
    """Write ``obj`` as indented, key-sorted, strict JSON (undefined values as null), atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


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


def check_writable(folder: str | Path, what: str, error: type[Exception] = DestinationError) -> None:
    """Create ``folder`` if needed and write a file in it now, so that an unwritable output is
    found before the long work rather than when its result is saved; ``error`` says why, naming
    ``what`` would have been written there."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".densemotion-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise error(f"cannot write {what} in {folder} ({err.strerror or err})") from None
