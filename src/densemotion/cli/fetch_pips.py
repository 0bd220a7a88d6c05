"""``densemotion fetch-pips ARCHIVE OUT_DIR``: unpack the published PIPs checkpoint from its archive.

The archive itself is data, obtained the DVC way so its exact bytes are versioned::

    dvc import-url 'https://www.dropbox.com/s/glk6jmoa9yeervl/reference_model.tar.gz?dl=1' \\
        models/pips/reference_model.tar.gz
    densemotion fetch-pips models/pips/reference_model.tar.gz models/pips/

Only ``model-000200000.pth`` is extracted (safely, whatever else the archive holds) and checked
against the published key set before it is put in place.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import clean_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densemotion fetch-pips",
        description="Extract model-000200000.pth from the published PIPs reference_model.tar.gz.",
    )
    parser.add_argument("archive", help="reference_model.tar.gz (e.g. from dvc import-url)")
    parser.add_argument("out_dir", help="folder to put model-000200000.pth in (e.g. models/pips/)")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the checkpoint's keys and shapes")
    return parser


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from densemotion.atomic import sha256_file
    from densemotion.tracking.pips.checkpoint import unpack_checkpoint

    dest = unpack_checkpoint(args.archive, args.out_dir, verify=not args.no_verify)
    print(f"{dest}: {dest.stat().st_size / 2**20:.1f} MiB, sha256 {sha256_file(dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
