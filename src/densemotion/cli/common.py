"""What every stage CLI shares: loading params and turning known errors into clean exits."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from densemotion.params import Params, ParamsError, load_params


class StageError(Exception):
    """A user-facing failure: bad input or missing prerequisite; printed without a traceback."""


def stage_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``densemotion COMMAND``, its module docstring shown as written in --help."""
    return argparse.ArgumentParser(
        prog=f"densemotion {command}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")


def params_from(args: argparse.Namespace) -> Params:
    return load_params(args.params)


def clean_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Print StageError / ParamsError / FileNotFoundError as one clear line and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            return func(*args, **kwargs)
        except (StageError, ParamsError, FileNotFoundError, ValueError) as err:
            prog = func.__module__.rsplit(".", 1)[-1].replace("_", "-")
            print(f"densemotion {prog}: error: {err}", file=sys.stderr)
            return 1

    return wrapper
