"""Training samples from trajectory stores: one window's first frame -> its grid's motion.

A sample is one window of one video: the window's first frame at grid resolution (the model
input), the displacement of every grid point at the predicted steps (the target) and where the
tracker saw the point (the loss mask). Videos are split into train / val / test as a whole,
never by window: the windows of one video are near-duplicates of each other.

Letters: S frames per window, K predicted steps (1 for the endpoint target, S - 1 for the
trajectory), Hg x Wg grid.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from densemotion.errors import DensemotionError
from densemotion.metrics import kmeans, laplace_fit
from densemotion.model import predicted_steps
from densemotion.runtime import ALONE, Rank
from densemotion.trajectories.store import TrajectoryStore

if TYPE_CHECKING:
    from densemotion.params import ModelParams, TrainParams


class DatasetError(DensemotionError):
    """Stores that cannot be trained on together, or a split that leaves a part empty."""


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def split_videos(
    names: Sequence[str],
    *,
    val: int,
    test: int,
    seed: int,
    group: str | None = None,
    partition: Mapping[str, str] | None = None,
) -> Split:
    """Split whole videos: sorted names shuffled by ``seed``; the first ``test`` are the test set,
    the next ``val`` the validation set, the rest (at least one) the training set.

    ``group``: a regular expression; videos whose names give the same match (its first group
    if it has one) stay together and the counts count groups (e.g. TaiChi clips cut from one
    YouTube video: ``^(.+)_\\d+_\\d+$``). Names it does not match form groups of their own.

    ``partition`` (name -> ``train`` or ``test``, a data set's own split): the test set is the
    ``test`` videos, whatever ``test`` says, and ``val`` groups are drawn from the ``train`` ones.
    """
    if partition is not None:
        return _split_partition(names, partition, val=val, seed=seed, group=group)
    groups: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        groups.setdefault(_group_key(name, group), []).append(name)
    keys = sorted(groups)
    unit = "group(s) of videos" if group else "video(s)"
    if len(keys) < val + test + 1:
        raise DatasetError(
            f"{len(keys)} {unit} cannot be split into train.test_videos={test}, "
            f"train.val_videos={val} and at least one for training: add videos or lower those counts"
        )
    random.Random(seed).shuffle(keys)

    def members(part: list[str]) -> tuple[str, ...]:
        return tuple(sorted(n for k in part for n in groups[k]))

    return Split(train=members(keys[test + val :]), val=members(keys[test : test + val]), test=members(keys[:test]))


def _split_partition(
    names: Sequence[str], partition: Mapping[str, str], *, val: int, seed: int, group: str | None
) -> Split:
    """The split of ``train.split_partition``: test as partitioned, val drawn from train."""
    outside = sorted(n for n in set(names) if partition.get(n) not in ("train", "test"))
    if outside:
        listed = ", ".join(outside[:5]) + (", ..." if len(outside) > 5 else "")
        raise DatasetError(
            f"train.split_partition: {len(outside)} video(s) have their source in neither a train/ nor a test/ "
            f"folder ({listed}); use `densemotion use-videos` on a folder with train/ and test/ sub-folders, "
            "or set train.split_partition to false"
        )
    test = tuple(sorted(n for n in set(names) if partition[n] == "test"))
    if not test:
        raise DatasetError("train.split_partition: no video has its source in a test/ folder")
    rest = split_videos([n for n in names if partition[n] == "train"], val=val, test=0, seed=seed, group=group)
    return Split(train=rest.train, val=rest.val, test=test)


def _group_key(name: str, pattern: str | None) -> str:
    if pattern is None:
        return name
    try:
        match = re.search(pattern, name)
    except re.error as err:
        raise DatasetError(f"train.split_group: invalid regular expression {pattern!r} ({err})") from None
    if match is None:
        return name
    return match.group(1) if match.re.groups else match.group(0)


def open_stores(root: str | Path, videos: Sequence[str]) -> dict[str, TrajectoryStore]:
    """The stores ``root/<video>`` of ``videos``, checked to share window length and grid shape."""
    stores = {v: TrajectoryStore(Path(root) / v) for v in videos}
    check_compatible(stores)
    return stores


def check_compatible(stores: dict[str, TrajectoryStore]) -> None:
    """Videos trained or evaluated together need one window length (the model's output has a step
    per frame of it); their grid shapes may differ: batches are made of one shape each
    (:class:`ShapeBatchSampler`), and each video keeps its own size and aspect."""
    windows = {s.info.window for s in stores.values()}
    if len(windows) > 1:
        detail = ", ".join(f"{v}: {s.info.window}" for v, s in stores.items())
        raise DatasetError(
            f"trajectory stores differ in window length ({detail}): re-run the trajectories stage "
            "so that every video is tracked with the same trajectories.window"
        )


def has_visible_point(store: TrajectoryStore, steps: Sequence[int]) -> bool:
    """Whether the tracker saw any grid point (visible, finite displacement) at ``steps`` of any
    window; stops at the first window that has one, so a healthy store costs one read."""
    return any(store.window(k, steps)["visible"].any() for k in range(len(store)))


def videos_without_visible_points(root: str | Path, videos: Sequence[str], steps: Sequence[int]) -> list[str]:
    """The ``videos`` under ``root`` whose stores have no visible point at ``steps`` of any window."""
    return [v for v in videos if not has_visible_point(TrajectoryStore(Path(root) / v), steps)]


class MotionDataset(Dataset):
    """Windows of several videos as training samples.

    Item: dict with image (3, Hg, Wg) float32 in [0, 1], target (K, 2, Hg, Wg) float32 px of
    the tracking resolution, mask (K, Hg, Wg) bool (tracker visibility), scale (2,) float32
    (frame px per tracking px, x and y), video (int index into ``videos``), window (int).

    With ``hflip`` each item is mirrored with probability 1/2 (x displacements negated); the
    choice depends only on (seed, epoch, index), so it is reproducible whatever the workers.
    Stores are opened lazily in each process (memory maps are not pickled to workers).
    """

    def __init__(self, root: str | Path, videos: Sequence[str], target: str, *, hflip: bool = False, seed: int = 0):
        self.root = Path(root)
        self.videos = list(videos)
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0
        self._stores: dict[str, TrajectoryStore] | None = open_stores(self.root, self.videos)
        first = next(iter(self._stores.values()), None)
        self.window = first.info.window if first else 0
        # the stores' grid stride and margin (one run tracks every video with the same ones) and
        # each store's tracking size (H, W): the scale a predictor sees a still at
        self.grid = (
            {
                "stride": first.info.grid_stride,
                "margin": first.info.margin,
                "tracking_sizes": [list(s.info.tracking_size) for s in self._stores.values()],
            }
            if first
            else {}
        )
        self.steps = predicted_steps(target, self.window) if first else []
        self.scales = [s.info.frame_scale for s in self._stores.values()]
        # (video index, window index) of every item
        self.index = [(v, w) for v, s in enumerate(self._stores.values()) for w in range(len(s))]
        grids = [s.info.grid_shape for s in self._stores.values()]
        self.shapes = [grids[v] for v, _ in self.index]  # (Hg, Wg) of every item, for batching

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stores": None}

    def _store(self, v: int) -> TrajectoryStore:
        if self._stores is None:
            self._stores = {name: TrajectoryStore(self.root / name) for name in self.videos}
        return self._stores[self.videos[v]]

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's flips (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def _flipped(self, i: int, epoch: int) -> bool:
        return self.hflip and np.random.default_rng([self.seed, epoch, i]).random() < 0.5

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item ``key``: an index, or (epoch, index) from a sampler that carries the epoch (workers
        that outlive an epoch, DataLoader's persistent_workers, never see ``set_epoch``)."""
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        v, w = self.index[i]
        window = self._store(v).window(w, self.steps)
        image, disp = window["frame0"], window["disp"]  # (Hg, Wg, 3), (K, Hg, Wg, 2)
        mask = window["visible"]  # (K, Hg, Wg)
        disp = np.where(mask[..., None], disp, 0.0)  # nothing unseen (or NaN) reaches the loss
        if self._flipped(i, epoch):
            image, disp, mask = image[:, ::-1], disp[:, :, ::-1], mask[:, :, ::-1]
            disp = disp * np.array([-1.0, 1.0], np.float32)  # mirrored motion: x reverses
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0),
            "target": torch.from_numpy(np.ascontiguousarray(disp.transpose(0, 3, 1, 2))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "scale": torch.tensor(self.scales[v], dtype=torch.float32),
            "video": v,
            "window": w,
        }


class ShapeBatchSampler(Sampler[list[int]]):
    """Batches of items that share a grid shape: videos of different sizes train together, and
    a batch is one tensor.

    Items are shuffled by ``seed`` (None: in order); each shape's items keep that order and are
    cut into batches, which are interleaved by where they start in it. With one shape this is
    exactly a seeded RandomSampler (or a SequentialSampler) cut into batches. With ``drop_last``
    a shape's incomplete last batch is dropped when it has more than ``batch_size`` items, and a
    lone item never makes a batch (batch norm needs two).
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], batch_size: int, seed: int | None, drop_last: bool):
        self.shapes, self.batch_size, self.seed, self.drop_last = list(shapes), batch_size, seed, drop_last

    def batches(self) -> list[list[int]]:
        n = len(self.shapes)
        if self.seed is None:
            order = list(range(n))
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        groups: dict[tuple[int, int], list[int]] = {}
        for i in order:
            groups.setdefault(self.shapes[i], []).append(i)
        out = []
        for members in groups.values():
            for b in range(0, len(members), self.batch_size):
                batch = members[b : b + self.batch_size]
                short = len(batch) < self.batch_size and len(members) > self.batch_size
                if self.drop_last and (short or len(batch) < 2):
                    continue
                out.append(batch)
        rank = {i: k for k, i in enumerate(order)}
        return sorted(out, key=lambda batch: rank[batch[0]])

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())


def displacement_stats(
    dataset: MotionDataset, max_windows: int = 512, codebook_size: int | None = None, max_points: int = 20_000
) -> dict[str, object]:
    """Mean displacement per step (K, 2) and RMS magnitude of visible points, tracking px; the
    image-independent Laplace of the last step's displacements (``laplace``,
    :func:`~densemotion.metrics.laplace_fit`) and, given ``codebook_size``, their k-means
    ``codebook`` (:func:`~densemotion.metrics.kmeans`): the baselines of the distribution scores.

    Uses up to ``max_windows`` windows spread evenly over the dataset (no flips), and up to
    ``max_points`` of their last-step points for the fits: the mean is the training-set baseline
    of the evaluate stage, the RMS the network's output unit.
    """
    if len(dataset) == 0:
        raise DatasetError("no training windows: the training videos' trajectory stores are empty")
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(max_windows, len(dataset))).round().astype(int))
    total = np.zeros((len(dataset.steps), 2))
    count = np.zeros((len(dataset.steps), 1))
    square = 0.0
    last: list[np.ndarray] = []
    for i in picks:
        v, w = dataset.index[int(i)]
        window = dataset._store(v).window(w, dataset.steps)
        disp, mask = window["disp"].astype(np.float64), window["visible"]  # (K, Hg, Wg, 2), (K, Hg, Wg)
        last.append(disp[-1][mask[-1]])  # (n, 2)
        disp = np.where(mask[..., None], disp, 0.0)
        total += disp.sum(axis=(1, 2))
        count += mask.sum(axis=(1, 2))[:, None]
        square += float((disp**2).sum())
    n = float(count.sum())
    mean = total / np.maximum(count, 1)
    rms = (square / n) ** 0.5 if n else 0.0
    ends = np.concatenate(last) if last else np.zeros((0, 2))
    ends = ends[:: max(1, len(ends) // max_points)]  # an even subsample: the fits' cost stays bounded
    stats: dict[str, object] = {"mean": mean.tolist(), "rms": rms, "visible_points": int(n)}
    stats["laplace"] = laplace_fit(ends)
    if codebook_size:
        stats["codebook"] = kmeans(ends, codebook_size).tolist()
    return stats


# --- the split as a person reads it, and batches of it ---------------------------------------


# fewer videos than this in a part of the split draw a warning: one or two videos make its
# numbers (and the best epoch chosen by validation) hinge on those videos' content
MIN_VIDEOS = {"train": 5, "val": 3, "test": 3}


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
        raise DatasetError(
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
        self.epoch: int | None = None

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Shuffle by ``seed`` from now on and hand the items out as (epoch, index): one loader (and
        its persistent workers) serves every epoch, each with its own order and flips."""
        self.sampler.seed, self.epoch = seed, epoch

    def batches(self) -> list[list[int]]:
        every, r, w = self.sampler.batches(), self.rank.rank, self.rank.world_size
        if w == 1:
            return every
        if self.within:
            return [batch[r::w] for batch in every if len(batch) >= 2 * w]
        return every[r::w]

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.batches():
            yield batch if self.epoch is None else [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return len(self.batches())


def make_loader(
    dataset: MotionDataset,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    workers: int,
    rank: Rank = ALONE,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of ``dataset``, each of one grid shape (videos of different sizes train together);
    shuffled by ``shuffle_seed`` (None: in order; a training loader's ``batch_sampler.set_epoch``
    reshuffles it for each epoch). Training drops incomplete last batches and lone windows (a batch
    of one breaks batch norm on pooled features). Under torchrun, this rank's share
    (:class:`RankBatches`). Worker processes live as long as the loader (persistent workers: no
    restart each epoch); ``pin_memory`` (a GPU run) makes the copies to the GPU asynchronous."""
    training = shuffle_seed is not None
    batches = ShapeBatchSampler(dataset.shapes, batch_size, shuffle_seed, drop_last=training)
    return DataLoader(
        dataset,
        batch_sampler=RankBatches(batches, rank, within=training),
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


def steps_per_epoch(dataset: MotionDataset, batch_size: int, at_least: int = 1, world_size: int = 1) -> int:
    """Optimiser steps per epoch (the same every epoch: it depends only on the shapes' counts)."""
    sampler = ShapeBatchSampler(dataset.shapes, batch_size, seed=0, drop_last=True)
    return max(at_least, len(RankBatches(sampler, Rank(0, world_size), within=True)))


def prepare_datasets(
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
        raise DatasetError(f"the training videos {list(split.train)} have no trajectory windows")
    if steps_per_epoch(train_ds, train_params.batch_size, at_least=0) == 0:
        shapes = sorted({f"{h}x{w}" for h, w in train_ds.shapes})
        raise DatasetError(
            f"training needs batches of at least 2 windows of one grid shape (batch norm), but the training "
            f"videos {list(split.train)} have {len(train_ds)} window(s) (grids {', '.join(shapes)}) and "
            f"train.batch_size is {train_params.batch_size}: add videos, use shorter or overlapping "
            "windows (trajectories.window, trajectories.window_stride), or raise train.batch_size"
        )
    for part, ds in (("training", train_ds), ("validation", val_ds)):
        check_visible_points(ds, part)
    return split, train_ds, val_ds
