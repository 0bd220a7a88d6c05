"""What every stage CLI shares: loading params and turning known errors into clean exits.

A known error (:class:`~densemotion.errors.DensemotionError`, or an OSError) prints one line naming
the file or key and the cause, and exits 1; anything else is a bug and shows its traceback. Set
``DENSEMOTION_DEBUG=1`` (or pass ``--debug`` to the command) to see the traceback behind it too.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable

from densemotion.errors import DensemotionError
from densemotion.params import Params, load_params


class StageError(DensemotionError):
    """A user-facing failure: bad input or missing prerequisite; printed without a traceback."""


def stage_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``densemotion COMMAND``, its module docstring shown as written in --help."""
    parser = argparse.ArgumentParser(
        prog=f"densemotion {command}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback (or DENSEMOTION_DEBUG=1)")
    return parser


def whole_number(text: str) -> int:
    """argparse type: an integer written as plain digits (Python's ``int`` also takes ``1_0`` as 10
    and ``١٢`` as 12, which no user means)."""
    if not re.fullmatch(r"-?[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (plain digits)")
    return int(text)


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")


def params_from(args: argparse.Namespace) -> Params:
    return load_params(args.params)


def describe(err: BaseException) -> str:
    """One line for an error: an OS error as 'PATH: cause' (full disk, read-only, permissions)."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        return f"{where}: {err.strerror}" if where else err.strerror
    return str(err)


def _command(func: Callable) -> str:
    """The command name of a CLI module's main, also when run as ``python -m densemotion.cli.X``."""
    spec = getattr(sys.modules.get(func.__module__), "__spec__", None)
    return (spec.name if spec else func.__module__).rsplit(".", 1)[-1].replace("_", "-")


def debugging(argv: list[str] | None) -> bool:
    """True when ``--debug`` is among the arguments or DENSEMOTION_DEBUG is set (not 0/empty)."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("DENSEMOTION_DEBUG", "") not in ("", "0")


def clean_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Print an expected failure (:class:`~densemotion.errors.DensemotionError`, or an OSError: a full
    disk, a missing file) as one clear line and exit 1, and Ctrl-C as ``interrupted`` with exit 130
    (with the traceback as well under ``--debug`` or DENSEMOTION_DEBUG=1). Any other exception is a
    bug in densemotion and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(argv: list[str] | None = None) -> int:
        debug = debugging(argv)
        if argv is not None:
            argv = [a for a in argv if a != "--debug"]
        elif "--debug" in sys.argv:
            sys.argv.remove("--debug")
        try:
            return func(argv)
        except (DensemotionError, OSError) as err:
            if debug:
                traceback.print_exc()
            print(f"densemotion {_command(func)}: error: {describe(err)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C: what was finished is kept (each command says what)
            if debug:
                traceback.print_exc()
            print(f"densemotion {_command(func)}: interrupted", file=sys.stderr)
            return 130

    return wrapper
