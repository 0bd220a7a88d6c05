"""RAFT weights: torchvision's published state_dicts, read from disk (never downloaded here).

The files are those torchvision's ``Raft_Small_Weights.DEFAULT`` / ``Raft_Large_Weights.DEFAULT``
download (``torchvision/models/optical_flow/raft.py``): a plain ``torch.save``d state_dict of
:func:`torchvision.models.optical_flow.raft_small` / ``raft_large``. They are data of the
pipeline, fetched once with ``dvc import-url`` where there is internet (models/raft/README.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.optical_flow import RAFT, raft_large, raft_small

from densemotion.atomic import atomic_path
from densemotion.statedict import load_weights, mismatch, shapes_of
from densemotion.tracking.base import TrackerError, import_url_command, weights_file_name

# model -> (torchvision's file name, its URL): the DEFAULT weights of torchvision 0.29
WEIGHTS = {
    "small": ("raft_small_C_T_V2-01064c6d.pth", "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth"),
    "large": (
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    ),
}
_BUILD = {"small": raft_small, "large": raft_large}


class RaftWeightsError(TrackerError):
    """The RAFT weights file is missing, unreadable, or not the state_dict of the model asked for."""


def build(model: str) -> RAFT:
    """An untrained torchvision RAFT (``small`` or ``large``); weights=None downloads nothing."""
    if model not in _BUILD:
        raise RaftWeightsError(f"trajectories.raft.model: unknown model {model!r}; use one of {sorted(_BUILD)}")
    return _BUILD[model](weights=None, progress=False)


def fetch_command(path: str | Path, model: str) -> str:
    """The shell commands that put ``model``'s published weights at ``path`` (DVC-tracked)."""
    return import_url_command(WEIGHTS[model][1], path)


def weights_path(folder: str | Path, model: str, name: str | None = None) -> Path:
    """The weights file in ``folder``: ``name`` (a plain file name: see weights_file_name), or
    torchvision's file name for ``model``."""
    if name is not None:
        try:
            name = weights_file_name(name, "raft")
        except ValueError as err:
            raise RaftWeightsError(f"trajectories.raft.weights: {err}") from None
    return Path(folder) / (name if name is not None else WEIGHTS[model][0])


def _expected(model: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no init
        return shapes_of(build(model).state_dict())


def read_state_dict(path: Path, model: str) -> dict[str, torch.Tensor]:
    """The state_dict at ``path``, checked against ``model``'s keys and shapes; clear errors naming it."""
    if not path.is_file():
        raise RaftWeightsError(
            f"RAFT weights {path} not found ({model} model); fetch them with: {fetch_command(path, model)}"
        )
    state = load_weights(path, RaftWeightsError, "weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RaftWeightsError(f"{path} is not a state_dict (a dict of tensors), got {type(state).__name__}")
    problems = mismatch(state, _expected(model))
    if problems:
        other = "large" if model == "small" else "small"
        hint = (
            f" (it is raft_{other}'s: set trajectories.raft.model: {other})"
            if not mismatch(state, _expected(other))
            else ""
        )
        raise RaftWeightsError(f"{path} is not torchvision's raft_{model} state_dict{hint}: {problems}")
    return state


def load_raft(path: str | Path, model: str, device: str = "cpu") -> RAFT:
    """torchvision's RAFT ``model`` with the weights at ``path`` (strict), in eval mode on ``device``."""
    state = read_state_dict(Path(path), model)
    net = build(model)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def save_random_weights(path: str | Path, model: str, seed: int = 0) -> Path:
    """A randomly initialised ``model``'s state_dict in torchvision's format (tests, benchmarks)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build(model).state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)
