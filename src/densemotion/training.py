"""The training loop: AdamW, a per-batch LR schedule, the motion head's loss, checkpoints every epoch.

Reads top to bottom: :func:`train` is :func:`build` (split, datasets, model, optimiser; a fresh
state or one resumed from a checkpoint, :mod:`densemotion.checkpoint`), :func:`fit` (per epoch:
:func:`train_one_epoch`, :func:`validate`, a line and a dvclive step, :mod:`densemotion.trainlog`,
and a complete checkpoint written atomically, so a killed run resumes where its last finished
epoch left it) and :func:`save` (the finished model).

The model kept (``model`` in every checkpoint, the whole of the finished one) is the weights of
the best epoch, ``best_epoch``: lowest validation EPE (a distribution head: its validation loss,
``head.selects_by``), the first of equal ones; without a
validation video there is nothing to choose by, and the last epoch is kept (said on stderr).
Resuming needs the last epoch's weights too (``last_model``, dropped from the finished model).

The loss is the motion head's (:mod:`densemotion.heads`, ``train.loss`` over the visible points,
tracker visibility >= 0.5, plus ``train.aux_weight`` times the auxiliary head's when
``model.aux_loss``), minimised in tracking pixels (what the net predicts) and logged at frame
scale (``loss_px``) beside ``epe_px``, the end-point error at the last predicted step.

Checkpoints (:mod:`densemotion.checkpoint`): with ``work_dir`` (what ``dvc repro`` uses) the run
in progress is checkpointed there and ``out`` written at the end; without it, ``out`` every epoch.
Weights or metrics that are not finite after an epoch are never saved. Determinism on CPU: the
weights from ``train.seed``, epoch e's batch order from (seed, e), the flips from (seed, e, index),
dropout from torch's RNG (saved in every checkpoint), so a resumed run reaches the same weights.

Letters: B batch, K predicted steps, Hg x Wg grid.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from densemotion.atomic import check_writable
from densemotion.checkpoint import (
    new_state,
    nonfinite_tensors,
    released,
    restore,
    resumable_state,
    rng_state,
    save_checkpoint,
)
from densemotion.dataset import (
    MotionDataset,
    Split,
    displacement_stats,
    make_loader,
    prepare_datasets,
    report_split,
    steps_per_epoch,
)
from densemotion.errors import DensemotionError
from densemotion.heads import Criterion
from densemotion.metrics import endpoint_epe_sum
from densemotion.model import MotionNet, build_model, set_backbone_trainable
from densemotion.params import ModelParams, TrainParams
from densemotion.runtime import (
    ALONE,
    Autocast,
    Rank,
    agree,
    all_sum,
    autocast_dtype,
    autocast_to,
    barrier,
    cuda_has_bf16,
    resolve_device,
)
from densemotion.trainlog import best_epoch, describe_epoch, final_report, log_epoch, open_live, pace, write_split
from densemotion.trajectories.store import store_sha256


class TrainingError(DensemotionError):
    """Training cannot start or go on: bad checkpoint, mismatched params, no visible point, NaN loss."""


# --- data, model, optimiser -----------------------------------------------------------------


def param_groups(model: MotionNet, train_params: TrainParams) -> list[dict[str, Any]]:
    """AdamW's groups, as torchvision's references and nanoGPT make them: the backbone at ``lr`` and
    the heads (everything after the backbone, zero-initialised) at ``lr * head_lr_mult``; weight
    decay on the conv and linear weights only, not on norm weights and biases (1-d tensors)."""
    groups = []
    for part, lr in (("backbone", train_params.lr), ("heads", train_params.lr * train_params.head_lr_mult)):
        params = [p for name, p in model.net.named_parameters() if name.startswith("backbone.") == (part == "backbone")]
        decayed, plain = [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]
        groups.append({"params": decayed, "lr": lr, "weight_decay": train_params.weight_decay, "name": f"{part}"})
        groups.append({"params": plain, "lr": lr, "weight_decay": 0.0, "name": f"{part} norms and biases"})
    return [g for g in groups if g["params"]]


def make_optimizer(model: MotionNet, tp: TrainParams, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over :func:`param_groups` and a scheduler stepped after every batch."""
    groups = param_groups(model, tp)
    opt = torch.optim.AdamW(groups, lr=tp.lr, weight_decay=tp.weight_decay)
    sched: torch.optim.lr_scheduler.LRScheduler
    if tp.scheduler == "onecycle":  # warm-up over the first 30%, then cosine down to lr / 1e4
        peaks = [g["lr"] for g in groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peaks, total_steps=total_steps)
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


def as_memory_format(images: torch.Tensor, device: str) -> torch.Tensor:
    """(B, 3, H, W) images channels-last on a GPU (as the model is there), unchanged on the CPU,
    where NCHW keeps the results of every earlier run."""
    return images.contiguous(memory_format=torch.channels_last) if device.startswith("cuda") else images


def train_autocast_dtype(mode: Autocast, device: str) -> torch.dtype | None:
    """``train.autocast``'s dtype (runtime.autocast_dtype; none, or fp16 on a CPU, is float32), with
    ``auto`` on a GPU without bf16 (a T4) meaning fp16 and grad scaling: the references' recipe."""
    if mode == "auto" and device.startswith("cuda") and not cuda_has_bf16():
        mode = "fp16"
    return autocast_dtype(mode, device, "train.autocast")


def autocast(device: str, mode: Autocast):
    """``train.autocast`` as a context."""
    return autocast_to(device, train_autocast_dtype(mode, device))


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
    model: MotionNet  # the plain model (model_without_ddp): what checkpoints hold
    ddp_model: torch.nn.Module  # the model, or its DDP wrapper under torchrun
    forward: Any  # what training batches go through: ddp_model, or its torch.compile'd form (train.compile)
    criterion: Criterion  # the head's training loss
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    state: dict  # the checkpoint's content, updated every epoch
    ckpt_path: Path  # where each epoch's checkpoint goes
    out: Path  # the finished model
    live: Any  # dvclive (rank 0 with a live_dir), else None


def train_one_epoch(run: Run, loader: DataLoader, epoch: int) -> dict[str, float]:
    """One pass over ``loader``; raises TrainingError on a non-finite loss (nothing saved).

    Under torchrun each of the ranks holds a slice of every batch. Returns ``loss_px`` (mean over
    batches of the loss at frame scale) and ``epe_px`` (pooled over the ranks); the progress bar
    is rank 0's.
    """
    train_params, model, device, world = run.train_params, run.model, run.device, run.rank.world_size
    model.train()
    set_backbone_trainable(model, epoch >= train_params.freeze_backbone_epochs)
    loss_sum, err_sum, err_n, batches = 0.0, 0.0, 0, 0
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{train_params.epochs}",
        leave=False,
        disable=None if run.rank.is_main else True,
        file=sys.stderr,
    )
    for b, batch in enumerate(bar):
        batch = _to(batch, device)
        target, mask, scale = batch["target"], batch["mask"], batch["scale"]
        with autocast(device, train_params.autocast):
            out = run.forward(as_memory_format(batch["image"], device))
            loss = run.criterion(out, target, mask)
        if world > 1:
            # each rank's mean is over its own visible points; DDP averages the ranks' gradients:
            # weighting by the rank's share of the batch's points gives the one-process mean's gradient
            count = float(mask.sum())
            (total,) = all_sum([count])
            loss = loss * (max(count, 1.0) * world / max(total, 1.0))
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at epoch {epoch + 1}, batch {b + 1}")
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if train_params.grad_clip is not None:
            run.scaler.unscale_(run.opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_params.grad_clip)
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        with torch.no_grad():  # the log: the same loss at frame scale, and the EPE of the point estimate
            loss_sum += float(run.criterion(out, target, mask, scale))
            s, n = endpoint_epe_sum(model.head.point(out["out"]), target, mask, scale)
        err_sum, err_n, batches = err_sum + s, err_n + n, batches + 1
        bar.set_postfix(loss_px=f"{loss_sum / batches:.3f}")
    loss_all, err_all, n_all, batches_all = all_sum([loss_sum, err_sum, err_n, batches])  # the ranks' together
    return {"loss_px": loss_all / max(batches_all, 1), "epe_px": err_all / max(n_all, 1)}


@torch.no_grad()
def validate(model: MotionNet, criterion: Criterion, loader: DataLoader, device: str) -> dict[str, float]:
    """Mean loss per batch (main head) and end-point error of the model and of zero motion, in frame px."""
    model.eval()
    loss_sum, batches, err_sum, zero_sum, err_n = 0.0, 0, 0.0, 0.0, 0
    for batch in loader:
        batch = _to(batch, device)
        target, mask, scale = batch["target"], batch["mask"], batch["scale"]
        out = model(batch["image"])["out"]
        loss_sum += float(criterion.head.loss(out, target, mask, criterion.kind, scale))
        pred = model.head.point(out)
        s, n = endpoint_epe_sum(pred, target, mask, scale)
        z, _ = endpoint_epe_sum(torch.zeros_like(pred), target, mask, scale)
        err_sum, zero_sum, err_n, batches = err_sum + s, zero_sum + z, err_n + n, batches + 1
    loss_all, batches_all, err_all, zero_all, n_all = all_sum([loss_sum, batches, err_sum, zero_sum, err_n])
    points = max(n_all, 1.0)
    return {"loss_px": loss_all / max(batches_all, 1), "epe_px": err_all / points, "zero_epe_px": zero_all / points}


# --- the run ----------------------------------------------------------------------------------


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

    ``rank``: this process's place in a torchrun job (:func:`densemotion.runtime.distributed`): the
    model is wrapped in DistributedDataParallel (SyncBatchNorm on CUDA), each global batch is cut
    across the ranks, sums are reduced, and only rank 0 writes checkpoints, logs and messages.
    ``pretrained_dir``: the files of ``model.pretrained`` (default ``models/pretrained/<it>``);
    ``partition``: each video's ``train`` / ``test`` folder, for ``train.split_partition``;
    ``resume``: continue from an existing ``out`` (without ``work_dir``; params and data must match).
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
    out = Path(out)
    _check_outputs(out, work_dir, live_dir)
    device = resolve_device(train_params.device)
    main, world = rank.is_main, rank.world_size
    split, train_ds, val_ds = prepare_datasets(trajectories, videos, model_params, train_params, partition)
    data = {v: store_sha256(Path(trajectories) / v) for v in (*split.train, *split.val)}
    what = (model_params.model_dump(), train_params.model_dump(), split.as_dict(), data)
    agree(repr(what), "the params, the split or the data")
    if main:
        report_split(split, train_params.split_seed)
        write_split(live_dir, split)
    torch.manual_seed(train_params.seed)
    model = build_model(model_params, train_ds.window, pretrained_dir=pretrained_dir).to(device)
    batch_size = train_params.batch_size
    if world > 1 and steps_per_epoch(train_ds, batch_size, at_least=0, world_size=world) == 0:
        raise TrainingError(
            f"train.batch_size {batch_size} cannot give each of {world} ranks two windows of a batch: raise it"
        )
    total_steps = train_params.epochs * steps_per_epoch(train_ds, batch_size, world_size=world)
    opt, sched = make_optimizer(model, train_params, total_steps)
    fp16 = train_autocast_dtype(train_params.autocast, device) == torch.float16  # needs grad scaling
    scaler = torch.amp.GradScaler("cuda", enabled=fp16 and device.startswith("cuda"))
    ckpt_path = Path(work_dir) / "checkpoint.pt" if work_dir is not None else out
    state = None
    if ckpt_path.is_file() and (resume or work_dir is not None):
        state = resumable_state(ckpt_path, work_dir is None, model_params, train_params, split, train_ds.window, data)
    if state is not None:
        restore(state, model, opt, sched, scaler)
        if main:
            print(f"resuming from {ckpt_path} after epoch {state['epoch']}", file=sys.stderr)
    else:
        codebook = model_params.hypotheses if model_params.head == "hypotheses" else None
        stats = displacement_stats(train_ds, codebook_size=codebook)
        state = new_state(model_params, train_params, split, train_ds.window, data, stats, train_ds.grid)
        model.disp_scale.fill_(max(float(state["stats"]["rms"]), 1e-3))
    if device.startswith("cuda"):  # the references' GPU layout: convolutions run NHWC on tensor cores
        model = model.to(memory_format=torch.channels_last)
    ddp_model = _distributed_model(model, device, rank, find_unused=train_params.freeze_backbone_epochs > 0)
    forward = torch.compile(ddp_model) if train_params.compile else ddp_model
    criterion = Criterion(model.head, train_params.loss, train_params.aux_weight)
    run_params = {"model": model_params.model_dump(), "train": train_params.model_dump(), "split": split.as_dict()}
    live = open_live(live_dir, run_params, state["history"], model.head.selects_by) if main else None
    return Run(
        model_params, train_params, rank, device, split, train_ds, val_ds, model, ddp_model, forward, criterion,
        opt, sched, scaler, state, ckpt_path, out, live,
    )  # fmt: skip


def fit(run: Run) -> None:
    """The epochs left of ``run``: train, validate, keep the best weights, checkpoint (rank 0)."""
    train_params, rank, model, state = run.train_params, run.rank, run.model, run.state
    batch_size, workers = train_params.batch_size, train_params.workers
    pin = run.device.startswith("cuda")
    val_loader = make_loader(run.val_ds, batch_size, shuffle_seed=None, workers=workers, rank=rank, pin_memory=pin)
    first, started = state["epoch"], time.monotonic()  # for the per-epoch time and the ETA (not logged)
    seed = _epoch_seed(train_params.seed, first)
    loader = make_loader(run.train_ds, batch_size, shuffle_seed=seed, workers=workers, rank=rank, pin_memory=pin)
    for epoch in range(state["epoch"], train_params.epochs):
        loader.batch_sampler.set_epoch(epoch, _epoch_seed(train_params.seed, epoch))  # type: ignore[union-attr]
        try:
            train_stats = train_one_epoch(run, loader, epoch)
        except TrainingError as err:
            raise TrainingError(f"{err}: {_stopped(run.ckpt_path, state['epoch'])}") from None
        record = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in train_stats.items()}}
        if len(run.val_ds):
            record.update({f"val/{k}": v for k, v in validate(model, run.criterion, val_loader, run.device).items()})
        record["lr"] = run.opt.param_groups[0]["lr"]
        history = [*state["history"], record]
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # kept: not live
        best = best_epoch(history, model.head.selects_by)
        update = {
            "epoch": epoch + 1,
            "history": history,
            "best_epoch": best,
            "model": weights if best == epoch + 1 else state["model"],
            "last_model": weights,
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": rng_state(),
        }
        _check_finite(record, update, epoch + 1, run.ckpt_path, state["epoch"])
        state.update(update)
        if rank.is_main:
            save_checkpoint(run.ckpt_path, state)
            log_epoch(run.live, record, history, model.head.selects_by)
            timing = pace(time.monotonic() - started, epoch + 1 - first, train_params.epochs - epoch - 1)
            tqdm.write(f"{describe_epoch(record)}  ({timing})", file=sys.stderr)


def save(run: Run) -> None:
    """The finished model (rank 0), the end of the logs and the final report; every rank waits."""
    if run.rank.is_main:
        if run.ckpt_path != run.out:
            save_checkpoint(run.out, released(run.state))  # the stage's output: what evaluation and users need
            run.ckpt_path.unlink(missing_ok=True)  # finished: nothing left to resume
        if run.live is not None:
            run.live.end()
        for line in final_report(run.state, run.model.head.selects_by):
            print(line, file=sys.stderr)
    barrier()  # the job ends when rank 0 has written everything


# --- checks and torchrun ----------------------------------------------------------------------


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
