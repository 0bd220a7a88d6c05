"""The motion model's checkpoint file: written by train, read by evaluate and by a resumed train.

A dict saved with ``torch.save`` and read with ``weights_only=True`` (no code runs on load):
``format`` and ``version`` (below), ``model`` (the MotionNet state dict), ``model_params``,
``train_params``, ``window``, ``epoch``, ``split``, ``stats`` and, while training, the optimiser,
scheduler, scaler and RNG states with the history of finished epochs.

The file's bytes are a function of its contents only (see :func:`canonical`): a resumed run
writes the very bytes of an uninterrupted one, so DVC sees the same output. Weights that are
not finite (NaN, inf) are never accepted on load.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from densemotion.atomic import atomic_path
from densemotion.model import MotionNet, build_model
from densemotion.params import ModelParams
from densemotion.statedict import load_weights

CHECKPOINT_FORMAT = "densemotion.motion-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable densemotion motion-model checkpoint, or does not fit its model."""


def canonical(obj: Any, _seen: set | None = None) -> Any:
    """A copy of ``obj`` whose pickle depends on its contents only.

    Pickle writes an object met twice as a back-reference, so the bytes record which strings and
    tuples happened to be one object (a resumed run mixes loaded history with fresh records) and
    torch records which tensors share memory. Here every container and string is a new object,
    int-keyed dicts (optimiser state) are in key order, and a tensor that shares memory or views
    part of it is copied into its own storage. Tensor data is not copied otherwise.
    """
    seen: set = set() if _seen is None else _seen
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        storage = t.untyped_storage()
        where = (str(storage.device), storage.data_ptr())
        compact = t.is_contiguous() and t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if t.numel() and (where in seen or not compact):
            t = t.clone(memory_format=torch.contiguous_format)
            where = (str(storage.device), t.untyped_storage().data_ptr())
        seen.add(where)
        return t
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")  # a new object
    if type(obj) in (dict, OrderedDict):
        keys = sorted(obj) if obj and all(type(k) is int for k in obj) else list(obj)
        return type(obj)((canonical(k, seen), canonical(obj[k], seen)) for k in keys)
    if type(obj) in (list, tuple):
        return type(obj)(canonical(v, seen) for v in obj)
    return obj  # numbers, bools, None: pickle writes them by value


class _RecordingFile:
    """A binary file that remembers the OS error of a failed write: torch.save reports one as a
    RuntimeError without its errno (full disk, file size limit)."""

    def __init__(self, file: Any):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a checkpoint atomically (a killed write leaves the previous one intact).

    The top-level keys are sorted and the rest made :func:`canonical`; written through a file
    object, so the zip's internal folder name does not depend on the file's name either. A failed
    write is an OSError naming ``path`` (a full disk a :class:`~densemotion.atomic.DiskFullError`).
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _RecordingFile(f)
        try:
            torch.save(canonical({k: state[k] for k in sorted(state)}), out)  # type: ignore[arg-type]
        except (OSError, RuntimeError) as err:
            cause = err if isinstance(err, OSError) else out.error
            if cause is None:
                raise
            raise OSError(cause.errno, f"cannot write {path}: {cause.strerror}") from err


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = load_weights(path, CheckpointError, "motion-model checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a densemotion motion-model checkpoint (written by `densemotion train`)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')}, this densemotion reads {CHECKPOINT_VERSION}"
        )
    check_finite(ckpt, path)
    return ckpt


def check_finite(ckpt: dict, path: str | Path = "checkpoint") -> None:
    """Refuse weights (or optimiser state) holding a NaN or an inf: a diverged training's, whose
    predictions and scores would be NaN and whose resumption would go nowhere."""
    bad = nonfinite_tensors({"model": ckpt.get("model", {}), "optimizer": ckpt.get("optimizer", {})})
    if bad:
        raise CheckpointError(
            f"{path}: weights not finite (NaN or inf in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
            "the training diverged; retrain it (a lower train.lr) or use an earlier checkpoint"
        )


def nonfinite_tensors(obj: Any, name: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors in ``obj`` holding a NaN or an inf."""
    if isinstance(obj, torch.Tensor):
        return [name] if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, dict):
        return [b for k, v in obj.items() for b in nonfinite_tensors(v, f"{name}.{k}" if name else str(k))]
    if isinstance(obj, list | tuple):
        return [b for i, v in enumerate(obj) for b in nonfinite_tensors(v, f"{name}.{i}" if name else str(i))]
    return []


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> MotionNet:
    """Rebuild the checkpoint's model (no pretrained files needed) and load its weights (finite)."""
    check_finite({"model": ckpt.get("model", {})}, path)
    try:
        params = ModelParams(**ckpt["model_params"])
        model = build_model(params, int(ckpt["window"]), load_pretrained=False)
        model.load_state_dict(ckpt["model"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the checkpoint's weights do not fit its model ({str(err)[:300]})") from None
    return model
