"""PIPs network: published key set, checkpoint loading, and agreement with the shared fixtures.

The fixtures (tests/fixtures/pips/, copied from ../shared/pips/) hold outputs of the published
code in float64 for the synthetic weights of docs/pips.md; with random weights small differences
grow about tenfold per iteration, so the 1e-6 px comparison is done in float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densemotion.tracking.base import TrackerError
from densemotion.tracking.pips import CHECKPOINT
from densemotion.tracking.pips.corr import CORR_DIVISOR, FeaturePyramid, SampledLookup, VolumeLookup
from densemotion.tracking.pips.model import PipsNet, time_values
from densemotion.tracking.weights import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures" / "pips"
TOL_PX = 1e-6


def load_fixture(stride: int) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"reference_stride{stride}.npz", allow_pickle=False) as f:
        return dict(f)


@pytest.fixture(scope="module")
def float64_checkpoint(tmp_path_factory) -> Path:
    """The fixture weights in float64, saved in the published file format."""
    path = tmp_path_factory.mktemp("pips") / "model-000200000.pth"
    CHECKPOINT.save(CHECKPOINT.fixture_state_dict(), path)
    return path


def frames_tensor(fx: dict[str, np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(fx["frames"]).permute(0, 3, 1, 2).to(dtype)  # (S, 3, H, W) in [0, 255]


def tiny_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Zero tensors of the given shapes that take one element of storage each (cheap to save)."""
    return {k: torch.zeros(1).expand(s) if s else torch.zeros(()) for k, s in shapes.items()}


# ---- architecture ---------------------------------------------------------------------------


def test_state_dict_is_the_published_key_set():
    fx = load_fixture(4)
    published = {
        k: tuple(int(d) for d in s.split(","))
        for k, s in zip(fx["state_dict_keys"], fx["state_dict_shapes"], strict=True)
    }
    with torch.device("meta"):
        net = PipsNet(stride=4)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == published
    assert len(ours) == 200
    assert sum(p.numel() for p in net.parameters()) == 28_677_713
    assert list(net.buffers()) == []  # instance norms keep no running statistics


def test_float32_constants_of_the_published_code():
    # see SPEC: both stay float32 numbers in a float64 run
    assert float(np.float32(np.sqrt(128))) == CORR_DIVISOR
    t = time_values(8, torch.float64, "cpu")
    assert t[1].item() == 1.1428571939468384 and t[1].item() != 8 / 7
    assert t[0].item() == 0 and t[-1].item() == 8


def test_sampled_lookup_equals_volume_lookup_everywhere():
    """The volume-free lookup gives the published numbers, also near and far outside the map."""
    gen = torch.Generator().manual_seed(0)
    S, C, H, W, N = 8, 128, 24, 40, 50
    fmaps = torch.randn(S, C, H, W, generator=gen, dtype=torch.float64)
    feats = torch.randn(S, N, C, generator=gen, dtype=torch.float64)
    coords = torch.rand(S, N, 2, generator=gen, dtype=torch.float64) * torch.tensor([W + 30.0, H + 30.0]) - 15
    coords[0, :4] = torch.tensor([[-1e6, 3.0], [5.0, 1e6], [W - 1.0, H - 1.0], [0.0, 0.0]], dtype=torch.float64)
    volume = VolumeLookup(fmaps)(feats, coords)
    sampled = SampledLookup(FeaturePyramid(fmaps), list(range(S)))(feats, coords)
    assert volume.shape == sampled.shape == (S, N, 196)
    assert torch.allclose(volume, sampled, rtol=0, atol=1e-12)
    assert (volume[0, 0] == 0).all()  # far outside: zero padding
    assert volume[0, 2].abs().sum() > 0


def test_sampled_lookup_reads_the_frames_it_is_given():
    gen = torch.Generator().manual_seed(1)
    fmaps = torch.randn(10, 128, 16, 16, generator=gen, dtype=torch.float64)
    feats = torch.randn(8, 5, 128, generator=gen, dtype=torch.float64)
    coords = torch.rand(8, 5, 2, generator=gen, dtype=torch.float64) * 15
    ids = [3, 4, 5, 6, 7, 9, 9, 9]  # a window ending in padding
    sampled = SampledLookup(FeaturePyramid(fmaps), ids)(feats, coords)
    assert torch.allclose(sampled, VolumeLookup(fmaps[ids])(feats, coords), rtol=0, atol=1e-12)


# ---- checkpoints ----------------------------------------------------------------------------


def test_loader_reads_the_published_format(float64_checkpoint):
    net = CHECKPOINT.load(float64_checkpoint, stride=8, dtype=torch.float64)
    weights = CHECKPOINT.fixture_state_dict()
    for key, value in net.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert not net.training


def test_missing_checkpoint_names_the_fetch_command(tmp_path):
    path = tmp_path / "models" / "pips" / "model-000200000.pth"
    with pytest.raises(TrackerError) as err:
        CHECKPOINT.read_state_dict(path)
    msg = str(err.value)
    assert str(path) in msg and "dvc import-url" in msg and "densemotion fetch-pips" in msg
    assert f"dvc add {path}" in msg and "git add" in msg and msg.rstrip().endswith("dvc push")  # kept for good


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "model-000200000.pth"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
        CHECKPOINT.read_state_dict(path)
    assert str(path) in str(err.value)
    # a truncated real checkpoint
    CHECKPOINT.save(tiny_state(CHECKPOINT.expected_shapes()), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        CHECKPOINT.read_state_dict(path)


def test_foreign_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="expected a dict with 'model_state_dict'"):
        CHECKPOINT.read_state_dict(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="expected a dict with 'model_state_dict'"):
        CHECKPOINT.read_state_dict(path)
    torch.save({"model_state_dict": {}, "extra": Path("x")}, path)  # not loadable with weights_only
    with pytest.raises(CheckpointError, match=str(path)):
        CHECKPOINT.read_state_dict(path)


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path):
    shapes = CHECKPOINT.expected_shapes()
    state = tiny_state(shapes)
    del state["vis_predictor.0.bias"]
    state["head.extra.weight"] = torch.zeros(2)
    state["norm.weight"] = torch.zeros(64)
    path = tmp_path / "model-000200000.pth"
    CHECKPOINT.save(state, path)
    with pytest.raises(CheckpointError) as err:
        CHECKPOINT.load(path, stride=4)
    msg = str(err.value)
    assert "missing keys: vis_predictor.0.bias" in msg
    assert "unexpected keys: head.extra.weight" in msg
    assert "norm.weight (64,) (expected (128,))" in msg
    assert str(path) in msg


# ---- agreement with the published code --------------------------------------------------------


def test_encoder_matches_fixture_frame0(test_device):
    fx = load_fixture(8)
    net = PipsNet(stride=8).double()
    net.load_state_dict(CHECKPOINT.fixture_state_dict())
    net.to(test_device)
    with torch.inference_mode():
        fmap = net.encode(frames_tensor(fx, torch.float64)[:1].to(test_device))[0]
    assert np.array_equal(fmap.cpu().numpy().astype(np.float16), fx["fmaps_frame0"])


# float32 against the float64 fixtures, per iteration: the largest and the median error (px).
# float32 rounding of the encoder's output (~1e-7 relative) grows about 20x per iteration with
# these random weights (SPEC: about tenfold for a 1e-9 px move of the queries); each bound is about
# 4x what float32 gave on the CPU here (stride 4 / stride 8, max: 1.6e-5 / 2.3e-5, 4.6e-4 / 5.9e-4,
# 8.7e-3 / 8.5e-3, 0.13 / 0.19, 0.44 / 1.0, 0.60 / 1.5). A real mistake moves points by a step's
# update, ~0.8 px (stride 4) and ~1.5 px (stride 8) in the median at every iteration.
FLOAT32_MAX_PX = (1e-4, 2e-3, 4e-2, 0.8, 4.0, 6.0)
FLOAT32_MEDIAN_PX = (3e-5, 4e-4, 6e-3, 0.08, 0.6, 0.8)
FLOAT32_VIS_LOGITS = 0.12  # 0.025 / 0.031 here


@pytest.mark.parametrize("stride", [4, 8])
def test_float32_agrees_with_float64_at_every_iteration(stride, test_device):
    fx = load_fixture(stride)
    net = PipsNet(stride=stride)
    net.load_state_dict(CHECKPOINT.fixture_state_dict())
    net.to(test_device)
    with torch.inference_mode():
        fmaps = net.encode(frames_tensor(fx, torch.float32).to(test_device))
        lookup = SampledLookup(FeaturePyramid(fmaps), list(range(8)))
        xys = torch.from_numpy(fx["query_xy"]).float().to(test_device)
        out = net.refine(lookup, xys, iters=int(fx["iters"]))
    assert len(out.trajs) == len(FLOAT32_MAX_PX) == 6
    for i, trajs in enumerate(out.trajs):
        err = np.abs(trajs.cpu().numpy() - fx["iter_trajs"][i])
        assert err.max() < FLOAT32_MAX_PX[i], (i, err.max())
        assert np.median(err) < FLOAT32_MEDIAN_PX[i], (i, np.median(err))
    assert np.abs(out.vis_logits.cpu().numpy() - fx["vis_logits"]).max() < FLOAT32_VIS_LOGITS


@pytest.mark.slow
@pytest.mark.parametrize("stride", [4, 8])
def test_float64_matches_fixture_every_iteration(stride, float64_checkpoint, test_device):
    """Through the real loader; the dense engine's lookup on all points, the naive one on a subset."""
    fx = load_fixture(stride)
    net = CHECKPOINT.load(float64_checkpoint, device=test_device, stride=stride, dtype=torch.float64)
    xys = torch.from_numpy(fx["query_xy"]).to(test_device)
    with torch.inference_mode():
        fmaps = net.encode(frames_tensor(fx, torch.float64).to(test_device))
        dense = net.refine(SampledLookup(FeaturePyramid(fmaps), list(range(8))), xys, iters=int(fx["iters"]))
        subset = slice(0, None, 5)
        naive = net.refine(VolumeLookup(fmaps, score_maps=True), xys[subset], iters=int(fx["iters"]))
    assert np.array_equal(fmaps[0].cpu().numpy().astype(np.float16), fx["fmaps_frame0"])
    assert len(dense.trajs) == len(naive.trajs) == 6
    for i in range(6):
        assert np.abs(dense.trajs[i].cpu().numpy() - fx["iter_trajs"][i]).max() < TOL_PX, i
        assert np.abs(naive.trajs[i].cpu().numpy() - fx["iter_trajs"][i][:, subset]).max() < TOL_PX, i
    assert np.abs(dense.vis_logits.cpu().numpy() - fx["vis_logits"]).max() < TOL_PX
    assert np.abs(naive.vis_logits.cpu().numpy() - fx["vis_logits"][:, subset]).max() < TOL_PX
    H8, W8 = fx["fmaps_frame0"].shape[1:]
    assert [tuple(m.shape) for m in naive.score_maps] == [(8, 6, H8, W8)] * 6
    assert dense.score_maps == []


def test_a_pickle_that_runs_code_is_refused_without_advising_weights_only_false(tmp_path):
    """torch's own message tells users to retry with weights_only=False, which runs the code."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    path = tmp_path / "model-000200000.pth"
    torch.save({"model_state_dict": Payload()}, path)
    with pytest.raises(CheckpointError, match="could run code when loaded: refused") as err:
        CHECKPOINT.read_state_dict(path)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
