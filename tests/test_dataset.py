"""The motion dataset: video split, targets, masks, flips; plus the synthetic stores other tests use."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from densemotion.dataset import (
    DatasetError,
    MotionDataset,
    displacement_stats,
    make_loader,
    open_stores,
    split_videos,
)
from densemotion.trajectories.store import TrajectoryStore, write_store

# colour class -> endpoint displacement (x, y) in tracking px; motion follows appearance
MOTIONS = {"red": (3.0, 1.0), "blue": (-2.0, 0.0)}
COLOURS = {"red": (220, 40, 30), "blue": (30, 60, 220)}
GARBAGE = 500.0  # displacement written at invisible points: any leak into loss or metrics shows


def synthetic_windows(nw: int, hg: int, wg: int, t: int, seed: int) -> dict[str, np.ndarray]:
    """Grey-noise frames with red and blue rectangles; rectangles move by MOTIONS, the rest is still.

    About 10% of points are invisible at each step > 0 and carry GARBAGE displacements.
    """
    rng = np.random.default_rng(seed)
    frames0 = rng.integers(90, 170, (nw, hg, wg, 1), dtype=np.uint8).repeat(3, axis=-1)
    end = np.zeros((nw, hg, wg, 2), np.float32)
    for w in range(nw):
        for name in ("red", "blue"):
            h, ww = rng.integers(3, max(4, hg // 2)), rng.integers(3, max(4, wg // 2))
            y, x = rng.integers(0, hg - h + 1), rng.integers(0, wg - ww + 1)
            frames0[w, y : y + h, x : x + ww] = COLOURS[name]
            end[w, y : y + h, x : x + ww] = MOTIONS[name]
    frac = (np.arange(t, dtype=np.float32) / (t - 1))[None, :, None, None, None]
    disp = end[:, None] * frac  # (Nw, T, Hg, Wg, 2)
    vis = np.full((nw, t, hg, wg), 255, np.uint8)
    hidden = rng.random((nw, t, hg, wg)) < 0.1
    hidden[:, 0] = False
    vis[hidden] = rng.integers(0, 120, int(hidden.sum()))
    disp[hidden] = GARBAGE
    return {
        "frames0": frames0,
        "disp": disp.astype(np.float16),
        "vis": vis,
        "starts": np.arange(nw, dtype=np.int64) * t,
    }


def write_motion_store(
    root,
    video: str,
    *,
    nw: int = 6,
    hg: int = 12,
    wg: int = 16,
    t: int = 4,
    g: int = 4,
    frame_factor: float = 2.0,
    seed: int = 0,
):
    """A schema-1 store of synthetic windows at ``root/video``; frames are ``frame_factor`` x the
    tracking size (so EPE at frame scale is ``frame_factor`` x tracking px)."""
    arrays = synthetic_windows(nw, hg, wg, t, seed)
    track = [hg * g, wg * g]
    meta = {
        "video": video,
        "tracker": "synthetic",
        "tracker_params": {},
        "window": t,
        "window_stride": t,
        "grid_stride": g,
        "margin": 0,
        "tracking_size": track,
        "frame_size": [int(track[0] * frame_factor), int(track[1] * frame_factor)],
        "grid_shape": [hg, wg],
        "frames_sha256": "0" * 64,
        "past_end": "skip",
    }
    write_store(root / video, meta=meta, **arrays)
    return root / video


@pytest.fixture
def stores(tmp_path):
    for i in range(4):
        write_motion_store(tmp_path, f"vid{i}", seed=i)
    return tmp_path


def test_split_is_by_video_deterministic_and_disjoint():
    names = [f"v{i}" for i in range(7)]
    a = split_videos(names, val=2, test=1, seed=3)
    assert a == split_videos(list(reversed(names)), val=2, test=1, seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (4, 2, 1)
    assert sorted(a.train + a.val + a.test) == names
    others = {split_videos(names, val=2, test=1, seed=s).test for s in range(10)}
    assert len(others) > 1  # the seed matters


def test_split_refuses_to_leave_no_training_video():
    with pytest.raises(DatasetError, match="train.test_videos=1, train.val_videos=1"):
        split_videos(["a", "b"], val=1, test=1, seed=0)
    assert split_videos(["a"], val=0, test=0, seed=0).train == ("a",)


def test_split_keeps_groups_of_videos_together():
    names = [f"yt{k}_{i}" for k in range(5) for i in range(3)] + ["loner"]
    split = split_videos(names, val=1, test=2, seed=0, group=r"^(yt\d+)_\d+$")
    parts = [split.train, split.val, split.test]
    for k in range(5):
        homes = [p for p in parts if f"yt{k}_0" in p]
        assert all(f"yt{k}_{i}" in homes[0] for i in range(3))
    assert len(split.test) in (4, 6) and len(split.val) in (1, 3)  # 2 groups, 1 group ("loner" is one)
    with pytest.raises(DatasetError, match="6 group"):
        split_videos(names, val=3, test=3, seed=0, group=r"^(yt\d+)_")
    with pytest.raises(DatasetError, match="invalid regular expression"):
        split_videos(names, val=1, test=1, seed=0, group="(")


def test_items_have_target_mask_and_scale(stores):
    ds = MotionDataset(stores, ["vid0", "vid1"], "endpoint")
    assert len(ds) == 12 and ds.steps == [3]
    item = ds[7]
    raw = synthetic_windows(6, 12, 16, 4, seed=1)
    assert item["image"].shape == (3, 12, 16) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"] * 255, torch.from_numpy(raw["frames0"][1]).permute(2, 0, 1).float())
    assert item["target"].shape == (1, 2, 12, 16) and item["mask"].shape == (1, 12, 16)
    seen = raw["vis"][1, 3] >= 128
    np.testing.assert_array_equal(item["mask"][0].numpy(), seen)
    expected = np.where(seen[..., None], raw["disp"][1, 3].astype(np.float32), 0)  # unseen points zeroed
    np.testing.assert_array_equal(item["target"][0].permute(1, 2, 0).numpy(), expected)
    assert item["scale"].tolist() == [2.0, 2.0]
    traj = MotionDataset(stores, ["vid0"], "trajectory")[0]
    assert traj["target"].shape == (3, 2, 12, 16) and traj["mask"].shape == (3, 12, 16)


def test_hflip_mirrors_and_negates_x_reproducibly(stores):
    plain = MotionDataset(stores, ["vid0"], "trajectory")
    flip = MotionDataset(stores, ["vid0"], "trajectory", hflip=True, seed=5)
    flipped = [i for i in range(len(flip)) if not torch.equal(flip[i]["image"], plain[i]["image"])]
    assert 0 < len(flipped) < len(flip)
    i = flipped[0]
    a, b = plain[i], flip[i]
    assert torch.equal(b["image"], a["image"].flip(-1))
    assert torch.equal(b["mask"], a["mask"].flip(-1))
    assert torch.equal(b["target"][:, 0], -a["target"][:, 0].flip(-1))
    assert torch.equal(b["target"][:, 1], a["target"][:, 1].flip(-1))
    again = MotionDataset(stores, ["vid0"], "trajectory", hflip=True, seed=5)
    assert all(torch.equal(again[j]["image"], flip[j]["image"]) for j in range(len(flip)))
    choices = []
    for epoch in range(4):
        flip.set_epoch(epoch)
        choices.append(tuple(not torch.equal(flip[j]["image"], plain[j]["image"]) for j in range(len(flip))))
    assert len(set(choices)) > 1  # new flips every epoch


def test_one_loader_with_persistent_workers_gives_each_epoch_its_order_and_flips(stores):
    """The training loader lives across epochs (workers that never see set_epoch): the sampler
    hands out (epoch, index), so two worker processes give exactly the batches and flips that
    a fresh in-process loader per epoch gives."""
    ds = MotionDataset(stores, ["vid0", "vid1"], "endpoint", hflip=True, seed=3)
    kept = make_loader(ds, 4, shuffle_seed=0, workers=2)
    assert kept.persistent_workers
    seen = []
    for epoch in range(3):
        kept.batch_sampler.set_epoch(epoch, 100 + epoch)
        fresh = make_loader(ds, 4, shuffle_seed=100 + epoch, workers=0)
        ds.set_epoch(epoch)
        got, want = list(kept), list(fresh)
        assert len(got) == len(want) > 1
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a["window"], b["window"]) and torch.equal(a["image"], b["image"])
        seen.append([tuple(b["window"].tolist()) for b in got])
    assert seen[0] != seen[1]  # a new order each epoch: the test would see a stale sampler


def test_dataset_pickles_for_workers_without_memory_maps(stores):
    ds = MotionDataset(stores, ["vid0"], "endpoint")
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._stores is None
    assert torch.equal(clone[3]["target"], ds[3]["target"])


def test_stores_of_different_windows_are_refused(tmp_path):
    write_motion_store(tmp_path, "a", t=4)
    write_motion_store(tmp_path, "b", t=5)
    with pytest.raises(DatasetError, match=r"differ in window length \(a: 4, b: 5\).*trajectories.window"):
        open_stores(tmp_path, ["a", "b"])
    write_motion_store(tmp_path, "c", t=4, hg=7, wg=20)  # another grid shape is fine
    assert set(open_stores(tmp_path, ["a", "c"])) == {"a", "c"}


def test_missing_store_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        MotionDataset(tmp_path, ["nope"], "endpoint")


def test_displacement_stats_ignore_invisible_points(stores):
    ds = MotionDataset(stores, ["vid0", "vid1"], "endpoint")
    stats = displacement_stats(ds)
    disp, vis = [], []
    for seed in (0, 1):
        raw = synthetic_windows(6, 12, 16, 4, seed)
        disp.append(raw["disp"][:, 3].astype(np.float64).reshape(-1, 2))
        vis.append((raw["vis"][:, 3] >= 128).ravel())
    disp, vis = np.concatenate(disp), np.concatenate(vis)
    np.testing.assert_allclose(stats["mean"][0], disp[vis].mean(axis=0), rtol=1e-6)
    assert stats["rms"] == pytest.approx(np.sqrt((disp[vis] ** 2).sum(axis=1).mean()))
    assert stats["rms"] < 4  # GARBAGE never counted


def test_nan_displacements_are_masked_out(tmp_path):
    path = write_motion_store(tmp_path, "v")
    disp = np.load(path / "disp.npy", mmap_mode="r+")
    disp[0, 3, 0, 0] = np.nan
    disp.flush()
    item = MotionDataset(tmp_path, ["v"], "endpoint")[0]
    assert not item["mask"][0, 0, 0] and torch.isfinite(item["target"]).all()
    assert np.isfinite(displacement_stats(MotionDataset(tmp_path, ["v"], "endpoint"))["rms"])


def test_frame_scale(tmp_path):
    store = TrajectoryStore(write_motion_store(tmp_path, "v", hg=45, wg=80, frame_factor=2.0))
    assert store.info.frame_size == (360, 640) and store.info.tracking_size == (180, 320)
    assert store.info.frame_scale == (2.0, 2.0)
    wide = TrajectoryStore(write_motion_store(tmp_path, "w", hg=12, wg=16, frame_factor=1.5))
    assert wide.info.frame_scale == (72 / 48, 96 / 64) == (1.5, 1.5)
    assert MotionDataset(tmp_path, ["v", "w"], "endpoint").scales == [(2.0, 2.0), (1.5, 1.5)]


def test_shape_batches_equal_a_seeded_random_sampler_for_one_shape():
    from torch.utils.data import BatchSampler, RandomSampler

    from densemotion.dataset import ShapeBatchSampler

    for n, bs in ((10, 3), (9, 3), (3, 4)):
        ours = ShapeBatchSampler([(4, 6)] * n, bs, seed=7, drop_last=True).batches()
        sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(7))
        theirs = list(BatchSampler(sampler, bs, drop_last=n > bs))
        assert ours == theirs
    assert ShapeBatchSampler([(4, 6)] * 5, 2, seed=None, drop_last=False).batches() == [[0, 1], [2, 3], [4]]


def test_shape_batches_hold_one_shape_each_and_cover_everything():
    from densemotion.dataset import ShapeBatchSampler

    shapes = [(4, 6)] * 7 + [(6, 4)] * 5 + [(5, 5)]  # the last shape has one window only
    batches = ShapeBatchSampler(shapes, 3, seed=1, drop_last=True).batches()
    assert all(len({shapes[i] for i in b}) == 1 and len(b) == 3 for b in batches)
    assert len(batches) == 2 + 1  # 7 -> 2 full batches, 5 -> 1; the lone (5, 5) window is left out
    assert batches == ShapeBatchSampler(shapes, 3, seed=1, drop_last=True).batches()  # deterministic
    assert batches != ShapeBatchSampler(shapes, 3, seed=2, drop_last=True).batches()
    everything = ShapeBatchSampler(shapes, 3, seed=None, drop_last=False).batches()
    assert sorted(i for b in everything for i in b) == list(range(len(shapes)))


def test_videos_of_different_sizes_train_together(tmp_path):
    from densemotion.params import ModelParams, TrainParams
    from densemotion.training import train

    write_motion_store(tmp_path, "wide", hg=8, wg=14, seed=0)
    write_motion_store(tmp_path, "tall", hg=14, wg=8, seed=1)
    write_motion_store(tmp_path, "square", hg=10, wg=10, seed=2)
    write_motion_store(tmp_path, "test", hg=9, wg=12, seed=3)
    state = train(trajectories=tmp_path, videos=["wide", "tall", "square", "test"],
                  model_params=ModelParams(input_scale=1), out=tmp_path / "m.pt",
                  train_params=TrainParams(device="cpu", epochs=2, batch_size=2, val_videos=0, test_videos=1,
                                           split_seed=0))  # fmt: skip
    assert state["epoch"] == 2 and len(state["split"]["train"]) == 3
    assert all(np.isfinite(h["train/loss_px"]) for h in state["history"])
