"""The ``raft`` tracker and the flow chaining it shares with ``dis`` (tracking/flowchain.py).

No published weights here: checkpoints are randomly initialised torchvision state_dicts the tests
save themselves (speed and shapes do not depend on the weights; accuracy does, docs/trackers.md "RAFT").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densemotion.params import TrajectoriesParams
from densemotion.runtime import DeviceError, cpu_has_native_bf16
from densemotion.tracking import grid, registry
from densemotion.tracking.dis.flow import DisTracker
from densemotion.tracking.flowchain import ChainChecks, PairFlow, chain_flows
from densemotion.tracking.raft import WEIGHTS, RaftParams
from densemotion.tracking.raft.flow import RaftFlow, RaftTracker, padded_size, to_input
from densemotion.tracking.weights import CheckpointError
from densemotion.trajectories.run import make_tracker

from conftest import moving_frames

SMALL = WEIGHTS["small"].file_name


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """models/raft/ with a random raft_small under torchvision's file name."""
    folder = tmp_path_factory.mktemp("raft")
    WEIGHTS["small"].save_fixture(folder / SMALL)
    return folder


def _params(**raft) -> TrajectoriesParams:
    return TrajectoriesParams(tracker="raft", device="cpu", raft={"model": "small", "num_flow_updates": 2, **raft})


def _constant_flows(num: int, h: int, w: int, dx: float, dy: float) -> list[PairFlow]:
    """The exact flows of frames translating by (dx, dy) px per frame."""
    plane = lambda v: np.full((h, w), v, np.float32)
    return [PairFlow((plane(dx), plane(dy)), (plane(-dx), plane(-dy))) for _ in range(num - 1)]


def test_padded_size_rounds_up_to_8_and_at_least_128():
    assert padded_size(61, 93) == (128, 128)
    assert padded_size(360, 640) == (360, 640)
    assert padded_size(130, 201) == (136, 208)


def test_input_is_scaled_to_plus_minus_one_and_edge_padded_at_bottom_right():
    frames = np.random.default_rng(0).integers(0, 256, (2, 131, 150, 3), dtype=np.uint8)
    x = to_input(frames, "cpu")
    assert x.shape == (2, 3, 136, 152) and x.dtype == torch.float32
    want = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(x[:, :, :131, :150], want)  # pixel coordinates unchanged
    assert torch.equal(x[:, :, 131:, :150], want[:, :, -1:].expand(-1, -1, 5, -1))  # bottom rows repeated
    assert torch.equal(x[:, :, :131, 150:], want[:, :, :, -1:].expand(-1, -1, -1, 2))


def test_shared_chaining_is_exact_on_a_known_translation():
    frames = moving_frames(n=5, h=64, w=96)  # 1 px/frame to the right
    q = np.array([[10.0, 20.0], [40.25, 33.5], [93.0, 8.0]], np.float32)
    tracks, vis = chain_flows(frames, q, _constant_flows(5, 64, 96, 1.0, 0.0), ChainChecks())
    want = q[None] + np.arange(5, dtype=np.float32)[:, None, None] * np.array([1.0, 0.0], np.float32)
    assert np.array_equal(tracks, want)
    assert vis[:, :2].all()  # exact flow: round trip and colour agree
    assert vis[:, 2].tolist() == [1, 1, 1, 0, 0]  # x = 96 leaves the 96 px frame, and stays lost
    # sub-pixel and diagonal, without the photometric check (these frames move by whole pixels)
    tracks, vis = chain_flows(frames, q[:2], _constant_flows(5, 64, 96, -0.75, 1.5), ChainChecks(photo_threshold=None))
    assert np.allclose(tracks[-1], q[:2] + 4 * np.array([-0.75, 1.5], np.float32), atol=1e-5) and vis.all()


def test_a_wrong_backward_flow_is_caught_by_the_forward_backward_check():
    frames = moving_frames(n=3, h=64, w=96)
    flows = _constant_flows(3, 64, 96, 1.0, 0.0)
    flows[1] = PairFlow(flows[1].forward, (flows[1].backward[0] + 2.0, flows[1].backward[1]))  # misses by 2 px
    _, vis = chain_flows(frames, np.array([[30.0, 30.0]], np.float32), flows, ChainChecks(photo_threshold=None))
    assert vis[:, 0].tolist() == [1, 1, 0]


def test_dis_and_raft_chain_through_the_one_shared_implementation(weights_dir, monkeypatch):
    """Given the exact flow, both trackers give the exact tracks: only their flows differ."""
    frames = moving_frames(n=4, h=64, w=96)
    q = grid.grid_points(grid.grid_shape((64, 96), 8, 4), 8, 4)
    exact = _constant_flows(4, 64, 96, 1.0, 0.0)
    want = chain_flows(frames, q, exact, ChainChecks())
    monkeypatch.setattr(DisTracker, "window_flows", lambda self, f: exact)
    monkeypatch.setattr(RaftFlow, "window_flows", lambda self, f: exact)
    for tracker in (DisTracker(), make_tracker(_params(), weights_dir)):
        tracks, vis = tracker.track(frames, q)
        assert np.array_equal(tracks, want[0]) and np.array_equal(vis, want[1]), tracker.name
        assert np.array_equal(tracks[-1], q + np.float32([3, 0]))


def test_raft_flows_are_cropped_back_for_sizes_not_multiple_of_8(weights_dir):
    net = WEIGHTS["small"].load(weights_dir / SMALL)
    flows = RaftFlow(net, num_flow_updates=2).window_flows(moving_frames(n=3, h=61, w=93))
    assert len(flows) == 2
    for pair in flows:
        for plane in (*pair.forward, *pair.backward):
            assert plane.shape == (61, 93) and plane.dtype == np.float32 and plane.flags.c_contiguous
            assert np.isfinite(plane).all()


def test_raft_with_random_weights_tracks_a_window_end_to_end_deterministically(weights_dir):
    frames = moving_frames(n=4, h=64, w=96)
    q = grid.grid_points(grid.grid_shape((64, 96), 4, 0), 4, 0)
    tracker = make_tracker(_params(), weights_dir)
    assert isinstance(tracker, RaftTracker) and tracker.flow.device.type == "cpu"
    tracks, vis = tracker.track(frames, q)
    assert tracks.shape == (4, len(q), 2) and vis.shape == (4, len(q))
    assert tracks.dtype == np.float32 and vis.dtype == np.float32
    assert np.array_equal(tracks[0], q) and (vis[0] == 1).all() and set(np.unique(vis)) <= {0.0, 1.0}
    assert np.isfinite(tracks).all()
    again = tracker.track(frames, q)
    assert np.array_equal(again[0], tracks) and np.array_equal(again[1], vis)
    # batching bounds memory, not results (batched convolutions may round differently)
    one_by_one = make_tracker(_params(batch_pairs=1), weights_dir).track(frames, q)[0]
    assert np.allclose(one_by_one, tracks, atol=1e-3)


def test_missing_weights_name_the_file_and_the_command(tmp_path):
    with pytest.raises(CheckpointError) as err:
        make_tracker(_params(), tmp_path)
    msg = str(err.value)
    assert str(tmp_path / SMALL) in msg and "not found" in msg
    assert f"dvc import-url {WEIGHTS['small'].url} {tmp_path / SMALL}" in msg
    with pytest.raises(CheckpointError, match="other.pth not found"):
        make_tracker(_params(weights="other.pth"), tmp_path)


@pytest.mark.parametrize("name", ["../elsewhere.pth", "/etc/raft.pth", "sub/raft.pth", "..", ".hidden.pth", ""])
def test_weights_outside_models_raft_are_refused_at_load(tmp_path, name):
    """The stage depends on models/raft/: a weights file elsewhere would change without a re-run."""
    from densemotion.params import ParamsError

    (tmp_path / "elsewhere.pth").write_bytes(b"x")
    with pytest.raises(ParamsError, match=r"raft\.weights: .* must be the name of a file in models/raft/"):
        registry.section(_params(weights=name))
    from densemotion.tracking.raft.flow import weights_path

    with pytest.raises(CheckpointError, match="must be the name of a file in models/raft/"):
        weights_path(tmp_path / "raft", "small", name)


def test_wrong_weights_are_refused_with_what_is_wrong(tmp_path):
    (tmp_path / SMALL).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch weights file"):
        make_tracker(_params(), tmp_path)
    torch.save([torch.zeros(2)], tmp_path / SMALL)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        make_tracker(_params(), tmp_path)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / SMALL)
    with pytest.raises(CheckpointError, match="does not match the published RAFT small model: missing keys"):
        make_tracker(_params(), tmp_path)
    WEIGHTS["large"].save_fixture(tmp_path / SMALL)  # the other model's file under this name
    with pytest.raises(CheckpointError, match="set trajectories.raft.model: large"):
        make_tracker(_params(), tmp_path)


def test_weights_in_float64_keep_their_integer_buffers(tmp_path):
    """The record's test weights in another dtype: floating tensors converted, BatchNorm's counts kept."""
    record = WEIGHTS["large"]
    net = record.load(record.save_fixture(tmp_path / "large.pth", torch.float64), dtype=torch.float64)
    state = net.state_dict()
    assert next(net.parameters()).dtype == torch.float64 and not net.training
    counts = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
    assert counts and all(v.dtype == torch.int64 for v in counts)
    same = record.fixture_state_dict()  # the same seed: the same values
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in same.items())


def test_device_and_autocast(weights_dir):
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            make_tracker(TrajectoriesParams(tracker="raft", device="cuda", raft={"model": "small"}), weights_dir)
    with pytest.warns(UserWarning, match="trajectories.raft.autocast: fp16 is a GPU mode"):
        fp16 = make_tracker(_params(autocast="fp16"), weights_dir)
    assert isinstance(fp16, RaftTracker) and fp16.flow.amp_dtype is None  # CPU: float32
    auto = make_tracker(_params(autocast="auto"), weights_dir)
    assert isinstance(auto, RaftTracker)
    assert auto.flow.amp_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert not any(p.requires_grad and p.grad is not None for p in auto.flow.net.parameters())


def test_params_section_is_validated():
    assert RaftParams().model == "large" and RaftParams().weights is None
    assert registry.section(TrajectoriesParams(tracker="raft", raft={"model": "small"})) == RaftParams(model="small")
    for bad in ({"model": "huge"}, {"num_flow_updates": 0}, {"autocast": "fp8"}, {"batch_size": 2}):
        with pytest.raises(ValueError, match="trajectories.raft"):
            registry.section(TrajectoriesParams(tracker="raft", raft=bad))


def _truth_flows(truth, start: int, num: int) -> list[PairFlow]:
    """The sample's exact dense flows between consecutive frames, from its ground-truth affines:
    each pixel moves with the layer (background or sprite) that owns it in the frame it starts in."""
    h, w = truth.height, truth.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xy = np.stack([xs, ys], -1)  # (H, W, 2)

    def flow(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        layer = truth.layers[a].astype(np.int64)  # (H, W)
        to_tex = truth.tex_from_frame[a, layer]  # (H, W, 2, 3)
        uv = np.einsum("hwij,hwj->hwi", to_tex[..., :2], xy) + to_tex[..., 2]
        to_b = truth.frame_from_tex[b, layer]
        moved = np.einsum("hwij,hwj->hwi", to_b[..., :2], uv) + to_b[..., 2] - xy  # (H, W, 2)
        return np.ascontiguousarray(moved[..., 0], np.float32), np.ascontiguousarray(moved[..., 1], np.float32)

    return [PairFlow(flow(t, t + 1), flow(t + 1, t)) for t in range(start, start + num - 1)]


def test_chaining_the_samples_exact_flow_reaches_its_true_tracks_for_dis_and_raft(weights_dir, monkeypatch):
    """The shared chainer adds no error of its own: fed the sample's exact flow (affine motions of
    rotating, scaling sprites over a background), both trackers follow the true tracks."""
    from densemotion.params import SampleParams
    from densemotion.sample import render_clip

    clip, truth = render_clip(SampleParams(), 0)
    start, num = 8, 8
    frames = clip[start : start + num]
    h, w = frames.shape[1:3]
    q = grid.grid_points(grid.grid_shape((h, w), 4, 4), 4, 4).astype(np.float32)  # (N, 2)
    true_tracks, true_vis = truth.tracks(start, num, q)
    exact = _truth_flows(truth, start, num)
    monkeypatch.setattr(DisTracker, "window_flows", lambda self, f: exact)
    monkeypatch.setattr(RaftFlow, "window_flows", lambda self, f: exact)
    for tracker in (DisTracker(), make_tracker(_params(), weights_dir)):
        tracks, vis = tracker.track(frames, q)
        seen = true_vis.all(axis=0) & (vis[-1] > 0)  # visible throughout, and kept by the checks
        err = np.linalg.norm(tracks[-1] - true_tracks[-1], axis=-1)[seen]  # px after 7 chained steps
        assert seen.mean() > 0.8, tracker.name  # the round-trip and colour checks keep what is visible
        assert np.median(err) < 1e-3 and np.quantile(err, 0.95) < 0.05, (tracker.name, np.quantile(err, [0.5, 0.95]))
