"""The training loop: AdamW, a per-batch LR schedule, a masked loss, checkpoints, resume, dvclive.

Reads top to bottom: :func:`train` prepares data and model (printing the split and warning about
parts too small to trust), then per epoch calls :func:`train_one_epoch` and :func:`validate`,
logs, and writes a complete checkpoint (best and last weights, optimizer, scheduler, scaler,
epoch, RNG state, params, split, data statistics) atomically, so a killed run resumes exactly
where the last finished epoch left it.

The model kept (``model`` in every checkpoint, the whole of the finished one) is the weights of
the best epoch, ``best_epoch``: lowest validation EPE, the first of equal ones; without a
validation video there is nothing to choose by, and the last epoch is kept (said on stderr).
Resuming needs the last epoch's weights too (``last_model``, dropped from the finished model).

Units: every logged number is in pixels of the frames archive ("px at frame scale", as
evaluation reports), and says so in its name: ``epe_px`` the end-point error at the last
predicted step, ``loss_px`` the training loss (``train.loss`` over all predicted steps, plus the
auxiliary head's when ``model.aux_loss``) evaluated at frame scale. The optimiser itself
minimises the same loss in tracking pixels (what the network predicts); only the log is rescaled.
dvclive logs them per epoch (its ``step`` is the epoch, from 1) with ``best_epoch`` and
``best_val_epe_px`` in ``metrics.json``, whose every number is a column of ``dvc exp show``: it
keeps the last epoch's EPEs but not the learning rate or the losses (:data:`CURVES_ONLY`: their
per-epoch curves are in ``plots/metrics/``); the split's video names go to ``split.json`` beside it.

Loss (``train.loss``), over the visible points only (tracker visibility >= 0.5):

- ``epe``: mean end-point error, sqrt(dx^2 + dy^2), the metric itself. Like L1 it grows linearly
  with the error (robust to the tracker's outliers); unlike L1 it does not depend on the axes.
- ``l1``: mean |dx| + |dy|.

Checkpoints: with ``work_dir`` (what ``dvc repro`` uses: DVC deletes a stage's outputs before
running it) the checkpoint of the run in progress lives in ``work_dir`` and a rerun after a kill
resumes from it when params, split and data are unchanged (else it starts over, saying why);
``out`` is written when training ends. Without it, ``out`` is written every epoch and ``resume``
continues from it (a mismatch is an error). A checkpoint's bytes depend on its contents only, so
a resumed run writes the very file an uninterrupted one does. Weights or metrics that are not
finite after an epoch are never saved: the run stops and the previous checkpoint stays.

Refused up front: an output folder that cannot be written, and a training or validation part of
the split where the tracker saw no point (all invisible or NaN: the loss would be 0).

Determinism on CPU: weights from ``train.seed``; the batch order of epoch e from (seed, e); the
flips from (seed, e, index); dropout from torch's global RNG, saved in every checkpoint. A
resumed run therefore reaches the same weights as an uninterrupted one.

Letters: B batch, K predicted steps, Hg x Wg grid.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from densemotion.atomic import check_writable, write_json
from densemotion.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    nonfinite_tensors,
    save_checkpoint,
)
from densemotion.dataset import (
    MotionDataset,
    ShapeBatchSampler,
    Split,
    displacement_stats,
    open_stores,
    split_videos,
    videos_without_visible_points,
)
from densemotion.metrics import endpoint_error
from densemotion.model import MotionNet, build_model, set_backbone_trainable
from densemotion.params import ModelParams, TrainParams
from densemotion.runtime import ALONE, Autocast, Rank, agree, autocast_dtype, autocast_to, barrier, resolve_device
from densemotion.trajectories.store import store_sha256

# train params that may change between a run and its resumption (they do not change results)
_RESUMABLE_CHANGES = {"device", "workers"}

# fewer videos than this in a part of the split draw a warning: one or two videos make its
# numbers (and the best epoch chosen by validation) hinge on those videos' content
MIN_VIDEOS = {"train": 5, "val": 3, "test": 3}

# the model beats zero motion when its EPE is lower by more than this fraction: a tie within
# rounding (an untrained net's zero-initialised head predicts no motion) is no win
BEAT_MARGIN = 1e-3


class TrainingError(ValueError):
    """Training cannot start or go on: bad checkpoint, mismatched params, no visible point, NaN loss."""


# --- loss and metric ------------------------------------------------------------------------


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over visible points. pred, target (B, K, 2, Hg, Wg) px; mask (B, K, Hg, Wg) bool."""
    return _masked_mean(pred.float() - target, mask, kind)


def loss_px(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor, kind: str
) -> torch.Tensor:
    """:func:`masked_loss` at frame scale, for the log: differences times each sample's frame px
    per tracking px (scale (B, 2), x and y), so the loss reads in the unit of the EPE."""
    return _masked_mean((pred.float() - target) * scale[:, None, :, None, None], mask, kind)


def _masked_mean(diff: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "epe":
        per_point = torch.sqrt((diff * diff).sum(dim=2) + 1e-8)  # eps keeps the gradient finite at 0
    elif kind == "l1":
        per_point = diff.abs().sum(dim=2)
    else:
        raise TrainingError(f"train.loss: unknown loss {kind!r} (epe or l1)")
    return (per_point * mask).sum() / mask.sum().clamp(min=1)


def endpoint_epe_sum(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor
) -> tuple[float, int]:
    """Sum and count of end-point errors at the last predicted step, in frame pixels.

    scale (B, 2): frame px per tracking px (x, y) of each sample's video.
    """
    last = pred[:, -1].float().permute(0, 2, 3, 1), target[:, -1].permute(0, 2, 3, 1)  # (B, Hg, Wg, 2) each
    err = endpoint_error(*last, scale[:, None, None, :])  # (B, Hg, Wg)
    m = mask[:, -1]
    return float(err[m].sum()), int(m.sum())


# --- data, model, optimiser -----------------------------------------------------------------


def prepare_data(
    root: str | Path,
    videos: list[str],
    model_params: ModelParams,
    train_params: TrainParams,
    partition: Mapping[str, str] | None = None,
) -> tuple[Split, MotionDataset, MotionDataset]:
    """Split the videos and build the training (flipped) and validation datasets.

    ``partition``: name -> ``train`` / ``test`` from the sources' folders, used when
    ``train.split_partition`` is set.
    """
    open_stores(root, videos)  # every video readable, one window length and grid shape
    split = split_videos(
        videos,
        val=train_params.val_videos,
        test=train_params.test_videos,
        seed=train_params.split_seed,
        group=train_params.split_group,
        partition=(partition or {}) if train_params.split_partition else None,
    )
    target = model_params.target
    train_ds = MotionDataset(root, split.train, target, hflip=train_params.hflip, seed=train_params.seed)
    val_ds = MotionDataset(root, split.val, target)
    if len(train_ds) == 0:
        raise TrainingError(f"the training videos {list(split.train)} have no trajectory windows")
    if steps_per_epoch(train_ds, train_params.batch_size, at_least=0) == 0:
        shapes = sorted({f"{h}x{w}" for h, w in train_ds.shapes})
        raise TrainingError(
            f"training needs batches of at least 2 windows of one grid shape (batch norm), but the training "
            f"videos {list(split.train)} have {len(train_ds)} window(s) (grids {', '.join(shapes)}) and "
            f"train.batch_size is {train_params.batch_size}: add videos, use shorter or overlapping "
            "windows (trajectories.window, trajectories.window_stride), or raise train.batch_size"
        )
    for part, ds in (("training", train_ds), ("validation", val_ds)):
        check_visible_points(ds, part)
    return split, train_ds, val_ds


def report_split(split: Split, seed: int) -> None:
    """Print the split (names and counts) on stderr and warn about parts too small to trust
    (:data:`MIN_VIDEOS`): a tiny split otherwise passes silently, and its scores with it."""
    lines = [f"video split (train.split_seed {seed}):"]
    for part, names in split.as_dict().items():
        shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        lines.append(f"  {part:5} {len(names):3}: {shown or '-'}")
    print("\n".join(lines), file=sys.stderr)
    for warning in split_warnings(split):
        print(f"WARNING: {warning}", file=sys.stderr)


def split_warnings(split: Split) -> list[str]:
    """What is wrong with a split's sizes, one sentence each ([] when every part is big enough)."""
    found = []
    counts = {part: len(names) for part, names in split.as_dict().items()}
    if counts["val"] == 0:
        found.append(
            "no validation video (train.val_videos 0): the best epoch cannot be chosen, "
            "the model kept is the last epoch's"
        )
    if counts["test"] == 0:
        found.append("no test video (train.test_videos 0): densemotion evaluate will have nothing to score")
    for part, least in MIN_VIDEOS.items():
        if 0 < counts[part] < least:
            found.append(f"only {counts[part]} {part} video(s), fewer than {least}: {_FEW[part]}")
    return found


_FEW = {
    "train": "the model sees little variety and may not generalise; add videos",
    "val": "the validation EPE, and the best epoch chosen by it, hinge on them; add videos or raise train.val_videos",
    "test": "evaluate's held-out scores hinge on them; add videos or raise train.test_videos",
}


def check_visible_points(dataset: MotionDataset, part: str) -> None:
    """Refuse a part of the split where the tracker saw no point (everything invisible or NaN):
    the loss would be 0 and the model would learn nothing, or validate perfectly on nothing.
    Videos without a visible point among others are named on stderr (they add nothing)."""
    blind = videos_without_visible_points(dataset.root, dataset.videos, dataset.steps)
    if blind and len(blind) == len(dataset.videos):
        raise TrainingError(
            f"the {part} videos {blind} have no visible point at the predicted steps of any window "
            "(every point invisible or its displacement not finite): check their trajectory stores"
        )
    if blind:
        print(f"{part} videos with no visible point: {', '.join(blind)} (they add nothing)", file=sys.stderr)


class RankBatches(Sampler[list[int]]):
    """This rank's share of the batches of one process (``ShapeBatchSampler``).

    ``within`` (training): every global batch of one process is cut across the ranks, so the
    ranks together take the same optimiser steps on the same items; global batches too small to
    give each rank two items (batch norm) are left out. Otherwise (validation): whole batches
    round-robin. Alone (world size 1) it is the sampler itself.
    """

    def __init__(self, batches: ShapeBatchSampler, rank: Rank, within: bool):
        self.sampler, self.rank, self.within = batches, rank, within

    def batches(self) -> list[list[int]]:
        every, r, w = self.sampler.batches(), self.rank.rank, self.rank.world_size
        if w == 1:
            return every
        if self.within:
            return [batch[r::w] for batch in every if len(batch) >= 2 * w]
        return every[r::w]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())


def make_loader(
    dataset: MotionDataset, batch_size: int, *, shuffle_seed: int | None, workers: int, rank: Rank = ALONE
) -> DataLoader:
    """Batches of ``dataset``, each of one grid shape (videos of different sizes train together);
    shuffled by ``shuffle_seed`` (None: in order). Training drops incomplete last batches and lone
    windows (a batch of one breaks batch norm on pooled features). Under torchrun, this rank's
    share (:class:`RankBatches`)."""
    training = shuffle_seed is not None
    batches = ShapeBatchSampler(dataset.shapes, batch_size, shuffle_seed, drop_last=training)
    return DataLoader(dataset, batch_sampler=RankBatches(batches, rank, within=training), num_workers=workers)


def steps_per_epoch(dataset: MotionDataset, batch_size: int, at_least: int = 1, world_size: int = 1) -> int:
    """Optimiser steps per epoch (the same every epoch: it depends only on the shapes' counts)."""
    sampler = ShapeBatchSampler(dataset.shapes, batch_size, seed=0, drop_last=True)
    return max(at_least, len(RankBatches(sampler, Rank(0, world_size), within=True)))


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks of a torchrun job (the values themselves alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def make_optimizer(model: MotionNet, tp: TrainParams, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over all parameters and a scheduler stepped after every batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    sched: torch.optim.lr_scheduler.LRScheduler
    if tp.scheduler == "onecycle":  # warm-up over the first 30%, then cosine down to lr / 1e4
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tp.lr, total_steps=total_steps)
    elif tp.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    return opt, sched


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


# --- one epoch --------------------------------------------------------------------------------


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast(device: str, mode: Autocast):
    """``train.autocast`` as a context (runtime.autocast_dtype: none, or fp16 on a CPU, is float32)."""
    return autocast_to(device, autocast_dtype(mode, device, "train.autocast"))


def train_one_epoch(
    model: MotionNet,
    loader: DataLoader,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler,
    tp: TrainParams,
    device: str,
    *,
    epoch: int,
    frozen: bool,
    forward: torch.nn.Module | None = None,
    world_size: int = 1,
    show: bool = True,
) -> dict[str, float]:
    """One pass over ``loader``; raises TrainingError on a non-finite loss (nothing saved).

    ``forward``: the module to call (the DistributedDataParallel wrapper of ``model`` under
    torchrun, whose ``world_size`` ranks each hold a slice of every batch). Returns ``loss_px``
    (mean over batches of the loss at frame scale) and ``epe_px`` (pooled over the ranks). ``show``:
    draw the progress bar (rank 0's only).
    """
    model.train()
    set_backbone_trainable(model, not frozen)
    net = forward if forward is not None else model
    loss_sum, err_sum, err_n, batches = 0.0, 0.0, 0, 0
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{tp.epochs}", leave=False, disable=None if show else True, file=sys.stderr
    )
    for b, batch in enumerate(bar):
        batch = _to(batch, device)
        with autocast(device, tp.autocast):
            out = net(batch["image"])
            loss = masked_loss(out["out"], batch["target"], batch["mask"], tp.loss)
            if "aux" in out:
                loss = loss + tp.aux_weight * masked_loss(out["aux"], batch["target"], batch["mask"], tp.loss)
        if world_size > 1:
            # each rank's mean is over its own visible points; DDP averages the ranks' gradients:
            # weighting by the rank's share of the batch's points gives the one-process mean's gradient
            count = float(batch["mask"].sum())
            (total,) = all_sum([count])
            loss = loss * (max(count, 1.0) * world_size / max(total, 1.0))
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at epoch {epoch + 1}, batch {b + 1}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if tp.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss_sum += _objective_px(out, batch, tp)
        s, n = endpoint_epe_sum(out["out"].detach(), batch["target"], batch["mask"], batch["scale"])
        err_sum, err_n, batches = err_sum + s, err_n + n, batches + 1
        bar.set_postfix(loss_px=f"{loss_sum / batches:.3f}")
    loss_all, err_all, n_all, batches_all = all_sum([loss_sum, err_sum, err_n, batches])  # the ranks' together
    return {"loss_px": loss_all / max(batches_all, 1), "epe_px": err_all / max(n_all, 1)}


@torch.no_grad()
def _objective_px(out: dict, batch: dict, tp: TrainParams) -> float:
    """The batch's training loss (both heads) at frame scale, for the log."""
    args = (batch["target"], batch["mask"], batch["scale"], tp.loss)
    value = loss_px(out["out"].detach(), *args)
    if "aux" in out:
        value = value + tp.aux_weight * loss_px(out["aux"].detach(), *args)
    return float(value)


@torch.no_grad()
def validate(model: MotionNet, loader: DataLoader, device: str, loss_kind: str) -> dict[str, float]:
    """Mean loss per batch (main head) and end-point error of the model and of zero motion, in frame px."""
    model.eval()
    loss_sum, batches, err_sum, zero_sum, err_n = 0.0, 0, 0.0, 0.0, 0
    for batch in loader:
        batch = _to(batch, device)
        pred = model(batch["image"])["out"]
        loss_sum += float(loss_px(pred, batch["target"], batch["mask"], batch["scale"], loss_kind))
        s, n = endpoint_epe_sum(pred, batch["target"], batch["mask"], batch["scale"])
        z, _ = endpoint_epe_sum(torch.zeros_like(pred), batch["target"], batch["mask"], batch["scale"])
        err_sum, zero_sum, err_n, batches = err_sum + s, zero_sum + z, err_n + n, batches + 1
    loss_all, batches_all, err_all, zero_all, n_all = all_sum([loss_sum, batches, err_sum, zero_sum, err_n])
    points = max(n_all, 1.0)
    return {"loss_px": loss_all / max(batches_all, 1), "epe_px": err_all / points, "zero_epe_px": zero_all / points}


# --- checkpoints ------------------------------------------------------------------------------


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


def _resume_state(
    path: Path, strict: bool, mp: ModelParams, tp: TrainParams, split: Split, window: int, data: dict[str, str]
) -> dict | None:
    """The checkpoint at ``path`` if it can be resumed with these settings and data.

    strict (an explicit --resume): a mismatch is an error. Otherwise (a work-dir checkpoint left
    by a killed run) a checkpoint that cannot be resumed is set aside with a message.
    """
    try:
        state = load_checkpoint(path)
        diffs = resume_differences(state, mp, tp, split, window, data)
    except (TrainingError, CheckpointError) as err:
        if strict:
            raise
        diffs = [str(err)]
    if not diffs:
        return state
    if strict:
        raise TrainingError(
            f"cannot resume from {path}: it was trained with other settings:\n  "
            + "\n  ".join(diffs)
            + "\n(drop --resume to start over, or restore those settings)"
        )
    print(f"not resuming from {path}, starting over:\n  " + "\n  ".join(diffs), file=sys.stderr)
    return None


def _restore(state: dict, model: MotionNet, opt, sched, scaler) -> None:
    model.load_state_dict(state["last_model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])


def _rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- the run ----------------------------------------------------------------------------------


# what only resuming needs; the finished model (the train stage's output) goes without it
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "last_model")


def released(state: dict) -> dict:
    """The finished model's checkpoint: the best epoch's weights, model and train params, split,
    data statistics and history, without the last epoch's weights and the optimiser, scheduler,
    scaler and RNG states (most of a resumable file)."""
    return {k: v for k, v in state.items() if k not in RESUME_KEYS}


def best_epoch(history: list[dict]) -> int:
    """The epoch whose weights are kept: the lowest ``val/epe_px`` (the first of equal ones), or
    the last epoch when there was no validation (0 before any epoch)."""
    scored = [r for r in history if "val/epe_px" in r]
    if not scored:
        return int(history[-1]["epoch"]) if history else 0
    return int(min(scored, key=lambda r: r["val/epe_px"])["epoch"])


def _new_state(mp: ModelParams, tp: TrainParams, split: Split, window: int, data: dict[str, str], stats: dict) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_params": mp.model_dump(),
        "train_params": tp.model_dump(),
        "split": split.as_dict(),
        "window": window,
        "data": data,  # video -> sha256 of its trajectory store (train and val videos)
        "stats": stats,  # training-set displacement mean (K, 2) and RMS, tracking px
        "epoch": 0,  # finished epochs
        "best_epoch": 0,  # the epoch of the weights in "model" (see best_epoch)
        "history": [],  # per-epoch metrics
    }


def _open_live(live_dir: str | Path | None, params: dict, history: list[dict]):
    """A fresh dvclive log holding the epochs of ``history`` (a resumed run's earlier epochs),
    so the log is complete whether or not the folder survived (DVC deletes it before a run)."""
    if live_dir is None:
        return None
    from dvclive import Live  # imported here: only training logs

    live = Live(dir=str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
    live.log_params(params)
    for i, record in enumerate(history):
        _log_epoch(live, record, history[: i + 1])
    return live


# logged per epoch (dvclive's plots/metrics/) but kept out of metrics.json, the DVC metric: the
# last batch's learning rate says nothing of a run, and the losses repeat the EPEs beside them
CURVES_ONLY = ("lr", "train/loss_px", "val/loss_px")


def _log_epoch(live, record: dict, history: list[dict]) -> None:
    """One epoch's metrics at dvclive step = the epoch (from 1), and the best of ``history`` so far
    (``best_epoch``, ``best_val_epe_px``: the latest values are the last epoch's, not the kept one's)."""
    if live is None:
        return
    live.step = int(record["epoch"])
    for key, value in record.items():
        if key != "epoch":
            live.log_metric(key, value)
    for key in CURVES_ONLY:
        *parents, leaf = key.split("/")
        node = live.summary
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    best = best_epoch(history)
    live.summary["best_epoch"] = best
    kept = next(r for r in history if r["epoch"] == best)
    if "val/epe_px" in kept:
        live.summary["best_val_epe_px"] = kept["val/epe_px"]
    live.next_step()


def write_split(live_dir: str | Path | None, split: Split) -> None:
    """``split.json`` beside the dvclive metrics: the video names of each part and their counts."""
    if live_dir is not None:
        parts = split.as_dict()
        write_json(Path(live_dir) / "split.json", {"counts": {k: len(v) for k, v in parts.items()}, **parts})


def _check_outputs(out: Path, work_dir: str | Path | None, live_dir: str | Path | None) -> None:
    """Every folder the run writes to, checked before any data is read."""
    if out.is_dir():
        raise TrainingError(f"{out}: is a folder, not a checkpoint file path")
    check_writable(out.parent, f"the checkpoint {out.name}", TrainingError)
    if work_dir is not None:
        check_writable(work_dir, "the checkpoint of the run in progress", TrainingError)
    if live_dir is not None:
        check_writable(live_dir, "the dvclive logs", TrainingError)


def _check_finite(record: dict, state: dict, epoch: int, ckpt_path: Path, saved_epoch: int) -> None:
    """Refuse to save weights or metrics made NaN / inf by the epoch's last steps (the loss of a
    batch is checked before its step, the weights it leaves behind only here)."""
    bad = nonfinite_tensors({"model": state["last_model"], "optimizer": state["optimizer"]})
    if bad:
        what = f"the weights became non-finite (NaN or inf in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
    else:
        key = next((k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)), None)
        if key is None:
            return
        what = f"{key} became {record[key]}"
    raise TrainingError(f"{what} in epoch {epoch}: {_stopped(ckpt_path, saved_epoch)}")


def _stopped(ckpt_path: Path, saved_epoch: int) -> str:
    """What a stopped run left behind: the checkpoint of its last finished epoch, if any."""
    kept = (
        f"{ckpt_path} keeps the last good checkpoint (epoch {saved_epoch})"
        if saved_epoch
        else "no checkpoint was written"
    )
    return f"training stopped; {kept}. Try a lower train.lr or check the trajectories."


def _describe(record: dict) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "lr")]
    return "  ".join(parts)


def pace(elapsed: float, done: int, left: int) -> str:
    """``'12.3 s/epoch, ETA 4m 06s'``: the mean time of the ``done`` epochs of this run, and that
    times the ``left`` epochs (on a CPU, real footage can take hours: say so every epoch)."""
    per = elapsed / max(done, 1)
    return f"{per:.1f} s/epoch, " + (f"ETA {_duration(per * left)}" if left else "done")


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def final_report(state: dict) -> list[str]:
    """Lines on the kept epoch for stderr: which it is, and a warning when at that epoch the
    model does not beat zero motion on the validation videos (worse than doing nothing)."""
    history, best = state["history"], state["best_epoch"]
    if not history:
        return []
    record = next(r for r in history if r["epoch"] == best)
    if "val/epe_px" not in record:
        return [f"kept the last epoch ({best}): no validation video to choose the best by"]
    epe, zero = record["val/epe_px"], record["val/zero_epe_px"]
    lines = [f"kept epoch {best} of {state['epoch']}: the lowest validation EPE, {epe:.4g} px at frame scale"]
    if not epe < (1 - BEAT_MARGIN) * zero:
        lines.append(
            f"WARNING: the model does not beat zero motion on the validation videos: EPE {epe:.4g} px, "
            f"zero motion {zero:.4g} px (at its best epoch, {best})"
        )
    return lines


@dataclass
class Run:
    """One training run between :func:`build` and :func:`save`: data, model, optimiser, state."""

    model_params: ModelParams
    train_params: TrainParams
    rank: Rank
    device: str
    split: Split
    train_ds: MotionDataset
    val_ds: MotionDataset
    model: MotionNet  # the plain model: what checkpoints hold
    forward: torch.nn.Module  # what batches go through: the model, or its DDP wrapper under torchrun
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    state: dict  # the checkpoint's content, updated every epoch
    ckpt_path: Path  # where each epoch's checkpoint goes
    out: Path  # the finished model
    live: Any  # dvclive (rank 0 with a live_dir), else None


def train(
    *,
    trajectories: str | Path,
    videos: list[str],
    model_params: ModelParams,
    train_params: TrainParams,
    out: str | Path,
    live_dir: str | Path | None = None,
    resume: bool = False,
    work_dir: str | Path | None = None,
    pretrained_dir: str | Path | None = None,
    partition: Mapping[str, str] | None = None,
    rank: Rank = ALONE,
) -> dict:
    """Train on the trajectory stores ``trajectories/<video>``; returns the final checkpoint state.

    ``rank``: this process's place in a torchrun job (joined by :func:`densemotion.runtime.distributed`):
    the model is wrapped in DistributedDataParallel (SyncBatchNorm on CUDA), each global batch of
    one process is cut across the ranks, validation sums are reduced, and only rank 0 writes the
    checkpoint (the unwrapped model, loadable alone), dvclive logs and messages.

    ``pretrained_dir``: where the files of ``model.pretrained`` are (default ``models/pretrained/<it>``).
    ``partition``: each video's ``train`` / ``test`` folder, the split of ``train.split_partition``.

    Without ``work_dir``: a checkpoint goes to ``out`` every epoch, and ``resume`` continues from
    an existing ``out`` (params and data must match). With ``work_dir``: every epoch's checkpoint
    goes to ``work_dir/checkpoint.pt``, a run finding one there resumes it when it can, and
    ``out`` is written at the end (see the module docstring).
    """
    run = build(
        trajectories=trajectories, videos=videos, model_params=model_params, train_params=train_params,
        out=out, live_dir=live_dir, resume=resume, work_dir=work_dir, pretrained_dir=pretrained_dir,
        partition=partition, rank=rank,
    )  # fmt: skip
    fit(run)
    save(run)
    return run.state


def build(
    *,
    trajectories: str | Path,
    videos: list[str],
    model_params: ModelParams,
    train_params: TrainParams,
    out: str | Path,
    live_dir: str | Path | None,
    resume: bool,
    work_dir: str | Path | None,
    pretrained_dir: str | Path | None,
    partition: Mapping[str, str] | None,
    rank: Rank,
) -> Run:
    """Split, datasets, model, optimiser and state (new, or resumed from a checkpoint): :func:`train`'s first part."""
    mp, tp, out = model_params, train_params, Path(out)
    _check_outputs(out, work_dir, live_dir)
    device = resolve_device(tp.device)
    main, world = rank.is_main, rank.world_size
    split, train_ds, val_ds = prepare_data(trajectories, videos, mp, tp, partition)
    data = {v: store_sha256(Path(trajectories) / v) for v in (*split.train, *split.val)}
    agree(repr((mp.model_dump(), tp.model_dump(), split.as_dict(), data)), "the params, the split or the data")
    if main:
        report_split(split, tp.split_seed)
        write_split(live_dir, split)
    torch.manual_seed(tp.seed)
    model = build_model(mp, train_ds.window, pretrained_dir=pretrained_dir).to(device)
    if world > 1 and steps_per_epoch(train_ds, tp.batch_size, at_least=0, world_size=world) == 0:
        raise TrainingError(
            f"train.batch_size {tp.batch_size} cannot give each of {world} ranks two windows of a batch: raise it"
        )
    total_steps = tp.epochs * steps_per_epoch(train_ds, tp.batch_size, world_size=world)
    opt, sched = make_optimizer(model, tp, total_steps)
    fp16 = autocast_dtype(tp.autocast, device, "train.autocast") == torch.float16  # fp16 needs grad scaling
    scaler = torch.amp.GradScaler("cuda", enabled=fp16 and device.startswith("cuda"))
    ckpt_path = Path(work_dir) / "checkpoint.pt" if work_dir is not None else out
    state = None
    if ckpt_path.is_file() and (resume or work_dir is not None):
        state = _resume_state(ckpt_path, work_dir is None, mp, tp, split, train_ds.window, data)
    if state is not None:
        _restore(state, model, opt, sched, scaler)
        if main:
            print(f"resuming from {ckpt_path} after epoch {state['epoch']}", file=sys.stderr)
    else:
        state = _new_state(mp, tp, split, train_ds.window, data, displacement_stats(train_ds))
        model.disp_scale.fill_(max(float(state["stats"]["rms"]), 1e-3))
    forward = _distributed_model(model, device, rank, find_unused=tp.freeze_backbone_epochs > 0)
    run_params = {"model": mp.model_dump(), "train": tp.model_dump(), "split": split.as_dict()}
    live = _open_live(live_dir, run_params, state["history"]) if main else None
    return Run(
        mp, tp, rank, device, split, train_ds, val_ds, model, forward, opt, sched, scaler, state, ckpt_path, out, live
    )


def fit(run: Run) -> None:
    """The epochs left of ``run``: train, validate, keep the best weights, checkpoint (rank 0)."""
    tp, rank, device, model, state = run.train_params, run.rank, run.device, run.model, run.state
    main, world = rank.is_main, rank.world_size
    val_loader = make_loader(run.val_ds, tp.batch_size, shuffle_seed=None, workers=tp.workers, rank=rank)
    first, started = state["epoch"], time.monotonic()  # for the per-epoch time and the ETA (not logged)
    for epoch in range(state["epoch"], tp.epochs):
        run.train_ds.set_epoch(epoch)
        seed = _epoch_seed(tp.seed, epoch)
        loader = make_loader(run.train_ds, tp.batch_size, shuffle_seed=seed, workers=tp.workers, rank=rank)
        frozen = epoch < tp.freeze_backbone_epochs
        try:
            train_stats = train_one_epoch(
                model, loader, run.opt, run.sched, run.scaler, tp, device, epoch=epoch, frozen=frozen,
                forward=run.forward, world_size=world, show=main,
            )  # fmt: skip
        except TrainingError as err:
            raise TrainingError(f"{err}: {_stopped(run.ckpt_path, state['epoch'])}") from None
        record = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in train_stats.items()}}
        if len(run.val_ds):
            record.update({f"val/{k}": v for k, v in validate(model, val_loader, device, tp.loss).items()})
        record["lr"] = run.opt.param_groups[0]["lr"]
        history = [*state["history"], record]
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # kept: not live
        best = best_epoch(history)
        update = {
            "epoch": epoch + 1,
            "history": history,
            "best_epoch": best,
            "model": weights if best == epoch + 1 else state["model"],
            "last_model": weights,
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": _rng_state(),
        }
        _check_finite(record, update, epoch + 1, run.ckpt_path, state["epoch"])
        state.update(update)
        if main:
            save_checkpoint(run.ckpt_path, state)
            _log_epoch(run.live, record, history)
            tqdm.write(
                f"{_describe(record)}  ({pace(time.monotonic() - started, epoch + 1 - first, tp.epochs - epoch - 1)})",
                file=sys.stderr,
            )


def save(run: Run) -> None:
    """The finished model (rank 0), the end of the logs and the final report; every rank waits."""
    if run.rank.is_main:
        if run.ckpt_path != run.out:
            save_checkpoint(run.out, released(run.state))  # the stage's output: what evaluation and users need
            run.ckpt_path.unlink(missing_ok=True)  # finished: nothing left to resume
        if run.live is not None:
            run.live.end()
        for line in final_report(run.state):
            print(line, file=sys.stderr)
    barrier()  # the job ends when rank 0 has written everything


def _distributed_model(model: MotionNet, device: str, rank: Rank, find_unused: bool) -> torch.nn.Module:
    """``model`` itself alone; under torchrun, wrapped in DistributedDataParallel (which starts
    every rank from rank 0's weights). Batch norm is synchronised across ranks on CUDA
    (SyncBatchNorm has no CPU kernels: on CPU each rank normalises over its slice of the batch)."""
    if rank.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.startswith("cuda"):
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()], find_unused_parameters=find_unused
        )
    return DistributedDataParallel(model, find_unused_parameters=find_unused)
