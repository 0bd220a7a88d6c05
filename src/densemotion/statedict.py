"""Reading a weights file, and one check of a state dict against the keys and shapes a network
expects.

Used for every weights file we load (PIPs, RAFT and AllTracker checkpoints, torchvision pretrained
weights, our motion-model checkpoints), so a foreign or truncated file is refused with the same
one-line reason or the same listing of what is missing, unexpected or misshapen, instead of
torch's long error or, worse, a silent partial load.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# what torch.load raises on a file that is not a weights-only torch file (or not readable)
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError)


def load_weights(path: Path, error: type[Exception], kind: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU; a file torch cannot read raises
    ``error``: "PATH is not a readable PyTorch KIND (the first line of torch's reason)"."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        raise error(f"{path} is not a readable PyTorch {kind} ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    """torch's reason in one line; for a pickle of code-running objects, what it held and that it is
    refused, never torch's advice to load it with ``weights_only=False`` (which runs that code)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "weights_only" in lines[0] or "Weights only load failed" in lines[0]:
        held = next((line for line in lines[1:] if "weights_only" not in line and "documentation" not in line), "")
        return (
            "it holds Python objects other than tensors and plain values, which could run code when "
            "loaded: refused" + (f"; {held.rstrip('.')}" if held else "")
        )
    return lines[0]


def mismatch(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], shown: int = 20) -> str | None:
    """None when ``state`` has exactly the keys of ``expected`` with those shapes, else the list
    of missing keys, unexpected keys and wrong shapes (at most ``shown`` of each)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(getattr(state[k], 'shape', ()))} (expected {tuple(expected[k])})"
        for k in set(expected) & set(state)
        if tuple(getattr(state[k], "shape", (None,))) != tuple(expected[k])
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if keys:
            more = f", ... ({len(keys)} in all)" if len(keys) > shown else ""
            problems.append(f"{label}: {', '.join(keys[:shown])}{more}")
    return "; ".join(problems) or None


def shapes_of(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a state dict (e.g. a freshly built module's)."""
    return {k: tuple(v.shape) for k, v in state.items()}
