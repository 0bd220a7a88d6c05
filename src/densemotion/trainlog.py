"""What a training run says: dvclive's log, a line per epoch with its time and an ETA, the final report.

dvclive logs every epoch (its ``step`` is the epoch, from 1) with ``best_epoch`` and
``best_val_epe_px`` in ``metrics.json``, whose every number is a column of ``dvc exp show``: it
keeps the last epoch's EPEs but not the learning rate or the losses (:data:`CURVES_ONLY`: their
per-epoch curves are in ``plots/metrics/``); the split's video names go to ``split.json`` beside it.
Every number is in pixels of the frames archive ("px at frame scale") and says so in its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from densemotion.atomic import write_json
from densemotion.metrics import beats_zero

if TYPE_CHECKING:
    from densemotion.dataset import Split


def best_epoch(history: list[dict], by: str = "val/epe_px") -> int:
    """The epoch whose weights are kept: the lowest ``by`` (the head's ``selects_by``: a point
    head's validation EPE, a distribution head's validation loss; the first of equal ones), or the
    last epoch when there was no validation (0 before any epoch)."""
    scored = [r for r in history if by in r]
    if not scored:
        return int(history[-1]["epoch"]) if history else 0
    return int(min(scored, key=lambda r: r[by])["epoch"])


def open_live(live_dir: str | Path | None, params: dict, history: list[dict], by: str = "val/epe_px"):
    """A fresh dvclive log holding the epochs of ``history`` (a resumed run's earlier epochs),
    so the log is complete whether or not the folder survived (DVC deletes it before a run)."""
    if live_dir is None:
        return None
    from dvclive import Live  # imported here: only training logs

    live = Live(dir=str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
    live.log_params(params)
    for i, record in enumerate(history):
        log_epoch(live, record, history[: i + 1], by)
    return live


# logged per epoch (dvclive's plots/metrics/) but kept out of metrics.json, the DVC metric: the
# last batch's learning rate says nothing of a run, and the losses repeat the EPEs beside them
CURVES_ONLY = ("lr", "train/loss_px", "val/loss_px")


def log_epoch(live, record: dict, history: list[dict], by: str = "val/epe_px") -> None:
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
    best = best_epoch(history, by)
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


def describe_epoch(record: dict) -> str:
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


def final_report(state: dict, by: str = "val/epe_px") -> list[str]:
    """Lines on the kept epoch for stderr: which it is (chosen by ``by``), and a warning when at
    that epoch the model does not beat zero motion on the validation videos (worse than doing nothing)."""
    history, best = state["history"], state["best_epoch"]
    if not history:
        return []
    record = next(r for r in history if r["epoch"] == best)
    if "val/epe_px" not in record:
        return [f"kept the last epoch ({best}): no validation video to choose the best by"]
    epe, zero = record["val/epe_px"], record["val/zero_epe_px"]
    if by == "val/epe_px":
        lines = [f"kept epoch {best} of {state['epoch']}: the lowest validation EPE, {epe:.4g} px at frame scale"]
    else:  # a distribution head: its own loss chooses (its point estimate may not beat zero by design)
        lines = [
            f"kept epoch {best} of {state['epoch']}: the lowest validation loss, {record[by]:.4g} "
            f"(its point estimate's EPE {epe:.4g} px at frame scale)"
        ]
    if not beats_zero(epe, zero):
        lines.append(
            f"WARNING: the model does not beat zero motion on the validation videos: EPE {epe:.4g} px, "
            f"zero motion {zero:.4g} px (at its best epoch, {best})"
        )
    return lines
