"""The motion model's checkpoint file: written by train, read by evaluate and by a resumed train.

A dict saved with ``torch.save`` and read with ``weights_only=True`` (no code runs on load):
``format`` and ``version`` (below), ``model`` (the MotionNet state dict), ``model_params``,
``train_params``, ``window``, ``epoch``, ``split``, ``stats`` and, while training, the optimiser,
scheduler, scaler and RNG states with the history of finished epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from densemotion.atomic import atomic_path
from densemotion.model import MotionNet, build_model
from densemotion.params import ModelParams

CHECKPOINT_FORMAT = "densemotion.motion-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable densemotion motion-model checkpoint, or does not fit its model."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a checkpoint atomically (a killed write leaves the previous one intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: not a readable weights-only torch checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a densemotion motion-model checkpoint (written by `densemotion train`)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')}, this densemotion reads {CHECKPOINT_VERSION}"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> MotionNet:
    """Rebuild the checkpoint's model (no pretrained files needed) and load its weights."""
    try:
        params = ModelParams(**ckpt["model_params"])
        model = build_model(params, int(ckpt["window"]), load_pretrained=False)
        model.load_state_dict(ckpt["model"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the checkpoint's weights do not fit its model ({str(err)[:300]})") from None
    return model
