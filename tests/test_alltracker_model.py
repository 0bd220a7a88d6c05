"""AllTracker network: the published key set, checkpoint loading, and the reference outputs.

The references (tests/fixtures/alltracker/, README there) are the published code's outputs for
deterministic weights: float64 (its float32 casts removed) and unpatched float32. The float64 run
is well conditioned (1e-9 on the input moves the flows by 2.6e-13 px), so our float64 model must
agree within 1e-8 px; float32 within 1e-5 px.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from densemotion.tracking.alltracker import CHECKPOINT
from densemotion.tracking.alltracker.corr import CorrPyramid
from densemotion.tracking.alltracker.model import AllTrackerNet, Padder, sincos_table, sliding_window_starts
from densemotion.tracking.base import TrackerError
from densemotion.tracking.weights import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures" / "alltracker"
TOL_PX = {torch.float64: 1e-8, torch.float32: 1e-5}
REFERENCE = {torch.float64: "reference_float64.npz", torch.float32: "reference_float32_published.npz"}


def load_reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name, allow_pickle=False) as f:
        return dict(f)


def tiny_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Zero tensors of the given shapes taking one element of storage each (cheap to save)."""
    return {k: torch.zeros(1).expand(s) for k, s in shapes.items()}


# ---- architecture ---------------------------------------------------------------------------


def test_state_dict_is_the_published_key_set():
    shapes = json.loads((FIXTURES / "published_state_dict_shapes.json").read_text())
    published = {k: tuple(s) for k, s in shapes.items()}
    with torch.device("meta"):
        net = AllTrackerNet()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == published
    assert len(list(net.parameters())) == 235
    assert sum(p.numel() for p in net.parameters()) == 16_476_962
    assert [name for name, _ in net.named_buffers()] == ["time_emb"]


def test_time_table_is_sin_then_cos_of_position_times_frequency():
    table = sincos_table(128, 16)  # (1, 16, 128)
    assert table.shape == (1, 16, 128) and table.dtype == torch.float64
    assert torch.equal(table[0, 0, :64], torch.zeros(64)) and torch.equal(table[0, 0, 64:], torch.ones(64))
    assert table[0, 3, 0].item() == pytest.approx(np.sin(3.0))
    assert table[0, 3, 127].item() == pytest.approx(np.cos(3 / 10000 ** (63 / 64)))


def test_padding_and_windows():
    padder = Padder(128, 224)
    assert padder.pads == (16, 16, 0, 0)
    x = torch.arange(128 * 224.0).reshape(1, 1, 128, 224)
    assert padder.pad(x).shape == (1, 1, 128, 256) and torch.equal(padder.unpad(padder.pad(x)), x)
    assert Padder(40, 130).pads == (31, 31, 44, 44)  # small frames: at least 128 (5 pyramid levels)
    assert sliding_window_starts(8, 16, 8) == [0]
    assert sliding_window_starts(16, 16, 8) == [0]
    assert sliding_window_starts(17, 16, 8) == [0, 8]
    assert sliding_window_starts(30, 16, 8) == [0, 8, 16]


def test_bounded_correlation_samples_the_same_values_within_its_bound():
    gen = torch.Generator().manual_seed(0)
    fmap1, fmap2 = torch.randn(2, 3, 8, 12, 20, generator=gen, dtype=torch.float64)  # (N, C, H, W) each
    coords = torch.rand(3, 2, 12, 20, generator=gen, dtype=torch.float64) * 26 - 3  # some outside the map
    whole = CorrPyramid(fmap1, fmap2, levels=3, radius=2)
    per_anchor = 3 * (12 * 20 + 6 * 10 + 3 * 5) * 8  # bytes of one anchor pixel's volumes, all levels
    bounded = CorrPyramid(fmap1, fmap2, levels=3, radius=2, max_bytes=7 * per_anchor + 5)
    assert whole.chunk == 240 and bounded.chunk == 7 and bounded.volumes is None
    built: list[int] = []  # bytes of each set of volumes the lookup makes
    make = bounded._volumes

    def counted(anchors: slice) -> list[torch.Tensor]:
        volumes = make(anchors)
        built.append(sum(v.nbytes for v in volumes))
        return volumes

    bounded._volumes = counted  # type: ignore[method-assign]
    got = bounded(coords)  # (N, K, H, W)
    assert got.shape == (3, 3 * 25, 12, 20) and len(built) == -(-240 // 7)
    assert max(built) <= 7 * per_anchor
    torch.testing.assert_close(got, whole(coords), rtol=0, atol=1e-12)
    roomy = CorrPyramid(fmap1, fmap2, levels=3, radius=2, max_bytes=240 * per_anchor)
    assert roomy.volumes is not None and roomy.chunk == 240  # fits: computed once


def test_each_frame_is_encoded_once_a_batch_at_a_time():
    torch.manual_seed(0)
    net = AllTrackerNet().eval()
    calls: list[int] = []  # frames per encoder call
    encode = net.encode

    def counted(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return encode(images)

    net.encode = counted  # type: ignore[method-assign]
    images = torch.rand(1, 20, 3, 40, 56) * 255  # two windows: frames 0-15, then 8-23 (20-23 repeat 19)
    with torch.no_grad():
        flows, visconf = net.forward_sliding(images, iters=1, batch=3)
    assert flows.shape == visconf.shape == (1, 20, 2, 40, 56)
    assert calls == [3, 3, 3, 3, 3, 1, 3, 1]  # frames 0-15 once (anchor included), then 16-19


# ---- checkpoint -----------------------------------------------------------------------------


def test_missing_checkpoint_names_the_fetch_command(tmp_path):
    with pytest.raises(CheckpointError, match="dvc import-url https://huggingface.co/aharley/alltracker"):
        CHECKPOINT.read_state_dict(tmp_path / "alltracker.pth")


def test_foreign_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    state = tiny_state(CHECKPOINT.expected_shapes())
    del state["dot_conv.weight"]
    state["head.weight"] = torch.zeros(2, 2)
    CHECKPOINT.save(state, tmp_path / "alltracker.pth")
    with pytest.raises(TrackerError) as err:
        CHECKPOINT.load(tmp_path / "alltracker.pth")
    assert "missing keys: dot_conv.weight;" in str(err.value)
    assert "unexpected keys: head.weight" in str(err.value)


def test_checkpoint_without_a_model_entry_is_refused(tmp_path):
    torch.save({"model_state_dict": {}}, tmp_path / "alltracker.pth")
    with pytest.raises(CheckpointError, match="expected a dict with 'model'"):
        CHECKPOINT.read_state_dict(tmp_path / "alltracker.pth")


def test_fixture_checkpoint_loads_strictly(tmp_path):
    net = CHECKPOINT.load(CHECKPOINT.save_fixture(tmp_path / "alltracker.pth"))
    assert not net.training and next(net.parameters()).dtype == torch.float32
    state = CHECKPOINT.fixture_state_dict()
    assert torch.equal(net.dot_conv.bias, state["dot_conv.bias"].float())


# ---- reference outputs ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bounded", [False, True], ids=["whole", "bounded"])
def test_agrees_with_the_published_outputs(dtype, bounded, test_device):
    """``bounded``: correlation volumes recomputed 100 anchor pixels at a time (of 512), frames
    encoded and upsampled 3 at a time: the same numbers. On ``test_device`` (conftest), compared
    on the CPU."""
    ref = load_reference(REFERENCE[dtype])
    inputs = load_reference("reference_float64.npz")
    assert int(inputs["seed"]) == CHECKPOINT.fixture.seed and float(inputs["gain"]) == CHECKPOINT.fixture.gain
    net = AllTrackerNet().to(dtype).eval()
    net.load_state_dict(CHECKPOINT.fixture_state_dict(), strict=True)  # float64 values into a `dtype` module
    net.to(test_device)
    images = torch.from_numpy(inputs["frames"]).permute(0, 3, 1, 2)[None].to(test_device, dtype)  # (1, 8, 3, 128, 224)
    per_anchor = 16 * (512 + 128 + 32 + 8 + 2) * images.element_size()  # 16 pairs, 5 levels from 16 x 32
    bounds = {"corr_max_bytes": 100 * per_anchor, "batch": 3} if bounded else {}
    with torch.no_grad():
        flows, visconf = net.forward_sliding(images, iters=int(inputs["iters"]), **bounds)  # (1, 8, 2, 128, 224) each
    assert flows.dtype == dtype and flows.shape == (1, 8, 2, 128, 224)
    flows_np, vis_np = flows[0].double().cpu().numpy(), visconf[0].double().cpu().numpy()
    tol = TOL_PX[dtype]
    np.testing.assert_allclose(flows_np[:, :, ::4, ::4], ref["flows_sub4"], rtol=0, atol=tol)
    np.testing.assert_allclose(vis_np[:, :, ::4, ::4], ref["visconf_sub4"], rtol=0, atol=tol)
    if "flows_frame7_full" in ref:
        np.testing.assert_allclose(flows_np[7], ref["flows_frame7_full"], rtol=0, atol=tol)
