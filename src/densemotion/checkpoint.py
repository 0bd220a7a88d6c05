"""The motion model's checkpoint file: written by train, read by evaluate and by a resumed train.

A dict saved with ``torch.save`` and read with ``weights_only=True`` (no code runs on load):
``format`` and ``version`` (below), ``model`` (the MotionNet state dict), ``model_params``,
``train_params``, ``window``, ``epoch``, ``split``, ``stats`` and, while training, the optimiser,
scheduler, scaler and RNG states with the history of finished epochs.

The file's bytes are a function of its contents only (see :func:`canonical`): a resumed run
writes the very bytes of an uninterrupted one, so DVC sees the same output. Weights that are
not finite (NaN, inf) are never accepted on load.

Resuming (:func:`resumable_state`): with a work dir (what ``dvc repro`` uses: DVC deletes a
stage's outputs before running it) the checkpoint of the run in progress lives there, and a rerun
after a kill resumes from it when params, split and data are unchanged (else it starts over,
saying why); with an explicit ``--resume`` a mismatch is an error. The RNG state is saved beside
the weights, so a resumed run reaches the weights of an uninterrupted one.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from densemotion.atomic import atomic_path
from densemotion.errors import DensemotionError
from densemotion.model import MotionNet, build_model
from densemotion.params import ModelParams, TrainParams
from densemotion.statedict import load_weights

if TYPE_CHECKING:
    from densemotion.dataset import Split

CHECKPOINT_FORMAT = "densemotion.motion-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(DensemotionError):
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


# --- resuming a run: what must match, and the state beside the weights ------------------------


# train params that may change between a run and its resumption (they do not change results)
_RESUMABLE_CHANGES = {"device", "workers"}


def _param_differences(ckpt: dict, mp: ModelParams, tp: TrainParams) -> list[str]:
    diffs = []
    for section, old, new in (
        ("model", ckpt["model_params"], mp.model_dump()),
        ("train", ckpt["train_params"], tp.model_dump()),
    ):
        for key in sorted(set(old) | set(new)):
            if section == "train" and key in _RESUMABLE_CHANGES:
                continue
            if old.get(key) != new.get(key):
                diffs.append(f"{section}.{key}: checkpoint {old.get(key)!r}, params {new.get(key)!r}")
    return diffs


def resume_differences(
    ckpt: dict, mp: ModelParams, tp: TrainParams, split: Split, window: int, data: dict[str, str]
) -> list[str]:
    """Why a checkpoint cannot be resumed with these settings and data ([] when it can)."""
    if "last_model" not in ckpt:
        return ["the checkpoint has no last-epoch weights (written by an older densemotion, or a finished model)"]
    diffs = _param_differences(ckpt, mp, tp)
    if ckpt.get("split") != split.as_dict():
        diffs.append(f"video split: checkpoint {ckpt.get('split')}, now {split.as_dict()}")
    if ckpt.get("window") != window:
        diffs.append(f"trajectory window: checkpoint {ckpt.get('window')}, stores {window}")
    old_data = ckpt.get("data", {})
    changed = sorted(v for v in old_data.keys() | data.keys() if old_data.get(v) != data.get(v))
    if changed:
        diffs.append(f"trajectory stores changed since the checkpoint: {', '.join(changed)}")
    return diffs


def resumable_state(
    path: Path, strict: bool, mp: ModelParams, tp: TrainParams, split: Split, window: int, data: dict[str, str]
) -> dict | None:
    """The checkpoint at ``path`` if it can be resumed with these settings and data.

    strict (an explicit --resume): a mismatch is an error. Otherwise (a work-dir checkpoint left
    by a killed run) a checkpoint that cannot be resumed is set aside with a message.
    """
    try:
        state = load_checkpoint(path)
        diffs = resume_differences(state, mp, tp, split, window, data)
    except CheckpointError as err:
        if strict:
            raise
        diffs = [str(err)]
    if not diffs:
        return state
    if strict:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained with other settings:\n  "
            + "\n  ".join(diffs)
            + "\n(drop --resume to start over, or restore those settings)"
        )
    print(f"not resuming from {path}, starting over:\n  " + "\n  ".join(diffs), file=sys.stderr)
    return None


def restore(state: dict, model: MotionNet, opt, sched, scaler) -> None:
    """Put a resumable checkpoint's last-epoch weights, optimiser, scheduler, scaler and RNG back."""
    model.load_state_dict(state["last_model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])


def rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# what only resuming needs; the finished model (the train stage's output) goes without it
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "last_model")


def released(state: dict) -> dict:
    """The finished model's checkpoint: the best epoch's weights, model and train params, split,
    data statistics and history, without the last epoch's weights and the optimiser, scheduler,
    scaler and RNG states (most of a resumable file)."""
    return {k: v for k, v in state.items() if k not in RESUME_KEYS}


def new_state(
    mp: ModelParams,
    tp: TrainParams,
    split: Split,
    window: int,
    data: dict[str, str],
    stats: dict,
    grid: dict | None = None,
) -> dict:
    """A fresh run's checkpoint. ``grid``: the training stores' grid, ``{"stride": g, "margin": m,
    "tracking_sizes": [[H, W], ...]}`` (px of the tracking resolution; a size per training store):
    how a still must be seen to get the motion the model learnt."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_params": mp.model_dump(),
        "train_params": tp.model_dump(),
        "split": split.as_dict(),
        "window": window,
        "data": data,  # video -> sha256 of its trajectory store (train and val videos)
        "stats": stats,  # training-set displacement mean (K, 2) and RMS, tracking px
        "grid": grid or {},  # the training stores' grid and tracking sizes (predict's defaults)
        "epoch": 0,  # finished epochs
        "best_epoch": 0,  # the epoch of the weights in "model" (see best_epoch)
        "history": [],  # per-epoch metrics
    }
