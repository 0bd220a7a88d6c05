"""AllTracker weights: reading the published checkpoint, and deterministic test weights.

The published checkpoint is ``alltracker.pth`` on the authors' Hugging Face repository
(``aharley/alltracker``): a ``torch.save``d dict whose ``model`` entry is the state_dict of
:class:`~densemotion.tracking.alltracker.model.AllTrackerNet` (235 parameters + ``time_emb``).
Nothing is downloaded at run time: a missing file fails at once with the command that fetches it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from densemotion.atomic import atomic_path
from densemotion.statedict import load_weights, mismatch, shapes_of
from densemotion.tracking.alltracker.model import AllTrackerNet, sincos_table
from densemotion.tracking.base import TrackerError, import_url_command

CHECKPOINT_NAME = "alltracker.pth"
URL = "https://huggingface.co/aharley/alltracker/resolve/main/alltracker.pth"
# the reference weights (tests/fixtures/alltracker/README.md)
FIXTURE_SEED = 20250610
FIXTURE_GAIN = 0.3


class CheckpointError(TrackerError):
    """The AllTracker checkpoint is missing, unreadable, or not the published model."""


def fetch_command(checkpoint: str | Path) -> str:
    """The shell commands that put the published checkpoint at ``checkpoint`` (DVC-tracked)."""
    return import_url_command(URL, checkpoint)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the published state_dict (built on the meta device: no memory used)."""
    with torch.device("meta"):
        return shapes_of(AllTrackerNet().state_dict())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` entry of a published-format checkpoint (weights_only); clear errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"AllTracker checkpoint {path} not found; fetch it with: {fetch_command(path)}")
    ckpt = load_weights(path, CheckpointError)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        got = sorted(map(str, ckpt))[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an AllTracker checkpoint: expected a dict with 'model', got {got}")
    return ckpt["model"]


def check_state_dict(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and wrongly shaped keys."""
    problems = mismatch(state, expected_shapes())
    if problems:
        raise CheckpointError(f"{source} does not match the published AllTracker model: {problems}")


def load_alltracker(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> AllTrackerNet:
    """Build :class:`AllTrackerNet` in ``dtype`` and load the checkpoint at ``path`` (strict), in eval mode."""
    state = read_state_dict(path)
    check_state_dict(state, str(path))
    net = AllTrackerNet().to(dtype)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def fixture_state_dict(seed: int = FIXTURE_SEED, gain: float = FIXTURE_GAIN) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights (the reference outputs' weights), with the ``time_emb`` buffer.

    Parameter i of the sorted parameter names gets v = default_rng([seed, i]).standard_normal(shape);
    tensors of 2+ dimensions gain * v / sqrt(prod(shape[1:])), 1-D weights 1 + 0.1 v, the rest 0.1 v.
    """
    with torch.device("meta"):
        net = AllTrackerNet()
    params = {k: tuple(p.shape) for k, p in net.named_parameters()}
    out = {}
    for i, (key, shape) in enumerate(sorted(params.items())):
        v = np.random.default_rng([seed, i]).standard_normal(shape)
        if len(shape) >= 2:
            v = gain * v / np.sqrt(np.prod(shape[1:]))
        elif key.endswith("weight"):
            v = 1 + 0.1 * v
        else:
            v = 0.1 * v
        out[key] = torch.from_numpy(v)
    out["time_emb"] = sincos_table(net.dim, net.seqlen)
    return out


def save_checkpoint(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write ``state`` in the published file format (a dict with ``model``), atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": state}, tmp)


def save_fixture_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the fixture weights as a published-format checkpoint (tests, pipelines without the real one)."""
    save_checkpoint({k: v.to(dtype) for k, v in fixture_state_dict().items()}, path)
    return Path(path)
