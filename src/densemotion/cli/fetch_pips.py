"""``densemotion fetch-pips ARCHIVE OUT_DIR``: unpack the published PIPs checkpoint from its archive.

The archive itself is data, obtained the DVC way so its exact bytes are versioned::

    dvc import-url 'https://www.dropbox.com/s/glk6jmoa9yeervl/reference_model.tar.gz?dl=1' \\
        models/pips/reference_model.tar.gz
    densemotion fetch-pips models/pips/reference_model.tar.gz models/pips/

Only ``model-000200000.pth`` is extracted (safely, whatever else the archive holds) and checked
against the published key set before it is put in place. The file's name, the archive's URL and
the check are the PIPs checkpoint record's (``densemotion.tracking.pips.CHECKPOINT``).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tarfile
import zlib
from pathlib import Path

from densemotion.atomic import atomic_path, sha256_file
from densemotion.cli.common import clean_errors
from densemotion.tracking.pips import ARCHIVE_NAME, CHECKPOINT
from densemotion.tracking.weights import CheckpointError


def unpack_checkpoint(archive: str | Path, out_dir: str | Path, verify: bool = True) -> Path:
    """Extract only ``model-000200000.pth`` from the published archive into ``out_dir``; return its path.

    Safe against hostile archives: exactly one member with that base name must exist; it must
    pass tarfile's "data" filter and be a regular file; only its bytes are copied (its folder
    inside the archive is dropped), atomically; with ``verify`` it must hold the published keys.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not archive.is_file():
        raise CheckpointError(f"archive {archive} not found; get it with: dvc import-url '{CHECKPOINT.url}' {archive}")
    name = CHECKPOINT.file_name
    dest = out_dir / name
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if Path(m.name).name == name]
            if len(members) != 1:
                names = [m.name for m in tar.getmembers()][:10]
                raise CheckpointError(f"{archive}: expected one member named {name}, found {names}")
            member = tarfile.data_filter(members[0], str(out_dir.resolve()))
            if not member.isfile():
                raise CheckpointError(f"{archive}: member {member.name} is not a regular file")
            source = tar.extractfile(member)
            assert source is not None  # a regular file, checked above
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as f:
                    shutil.copyfileobj(source, f, 1 << 20)
                if verify:  # before the rename: a foreign file never lands at dest
                    CHECKPOINT.check(CHECKPOINT.read_state_dict(tmp), f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise CheckpointError(f"{archive} is not a readable .tar.gz archive ({err})") from None
    return dest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densemotion fetch-pips",
        description=f"Extract {CHECKPOINT.file_name} from the published PIPs {ARCHIVE_NAME}.",
    )
    parser.add_argument("archive", help=f"{ARCHIVE_NAME} (e.g. from dvc import-url)")
    parser.add_argument("out_dir", help=f"folder to put {CHECKPOINT.file_name} in (e.g. models/pips/)")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the checkpoint's keys and shapes")
    return parser


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dest = unpack_checkpoint(args.archive, args.out_dir, verify=not args.no_verify)
    print(f"{dest}: {dest.stat().st_size / 2**20:.1f} MiB, sha256 {sha256_file(dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
