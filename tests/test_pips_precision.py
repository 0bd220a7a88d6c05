"""PIPs in bf16: which parts run lower, how ``auto`` decides, and how far bf16 moves the tracks.

The error bounds come from the fixture weights and frames (tests/fixtures/pips/, stride 4).
With these random weights a small difference grows about tenfold per iteration (SPEC), so the
first iteration is the sharp check; later bounds only catch gross breakage.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from densemotion import runtime
from densemotion.tracking.pips import CHECKPOINT
from densemotion.tracking.pips.corr import FeaturePyramid, SampledLookup
from densemotion.tracking.pips.model import PipsNet
from densemotion.tracking.pips.precision import Precision, lower_mixer, resolve_precision

FIXTURES = Path(__file__).parent / "fixtures" / "pips"

# bf16 encoder, pyramid and Mixer (what autocast bf16 runs) against float32, stride 4, frames 1-7,
# per iteration (px, Euclidean). Measured on the AMD EPYC here (AVX512_BF16, torch 2.14.1), max /
# median: 0.017 / 0.0068, 0.38 / 0.082, 0.64 / 0.22, 0.87 / 0.29, 1.17 / 0.36, 1.10 / 0.43;
# bounds are 2.2-3x (another CPU's bf16 kernels may round differently). float32 against the
# float64 fixtures moves up to 0.6 px by iteration 6 (test_pips_model): with these weights bf16
# is the same order there.
BF16_MAX_PX = (0.05, 0.85, 2.0, 2.2, 2.8, 3.3)
BF16_MEDIAN_PX = (0.02, 0.27, 0.5, 0.7, 0.85, 1.0)
BF16_VIS_LOGITS = 0.15  # 0.039 measured; flips only where |logit| < that (random weights: logits near 0)


def test_bf16_error_against_float32_is_bounded():
    with np.load(FIXTURES / "reference_stride4.npz") as f:
        frames, query = f["frames"], f["query_xy"]
    net = PipsNet(stride=4)
    net.load_state_dict(CHECKPOINT.fixture_state_dict())
    rgbs = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    out = {}
    with torch.inference_mode():
        for dtype in (None, torch.bfloat16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                fmaps = net.encode(rgbs)  # bf16 in bf16 mode, as the engine keeps the pyramid
            lookup = SampledLookup(FeaturePyramid(fmaps), list(range(8)))
            out[dtype] = net.refine(lookup, torch.from_numpy(query).float(), 6, mixer=lower_mixer(net, dtype))
    for i, (a, b) in enumerate(zip(out[None].trajs, out[torch.bfloat16].trajs, strict=True)):
        assert b.dtype == torch.float32  # coordinates stay float32
        d = np.linalg.norm(a.numpy()[1:] - b.numpy()[1:], axis=-1)  # (7, N): frame 0 is the query
        assert d.max() < BF16_MAX_PX[i], (i, d.max())
        assert np.median(d) < BF16_MEDIAN_PX[i], (i, np.median(d))
        assert d.max() > 0  # bf16 really ran
    v32, v16 = out[None].vis_logits, out[torch.bfloat16].vis_logits
    assert (v32 - v16).abs().max() < BF16_VIS_LOGITS
    flipped = (v32 > 0) != (v16 > 0)
    assert (v32[flipped].abs() < BF16_VIS_LOGITS).all()


def test_lower_mixer_casts_copies_and_leaves_the_model_alone():
    net = PipsNet(stride=4)
    mixer = lower_mixer(net, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert mixer.delta_block is not net.delta_block
    linears = [m for m in mixer.delta_block.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv1d)]
    assert len(linears) == 2 + 4 * 12 and all(m.weight.dtype == torch.bfloat16 for m in linears)
    norms = [m for m in mixer.delta_block.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.weight.dtype == torch.float32 for m in norms)
    assert lower_mixer(net, None).delta_block is net.delta_block
    assert set(net.state_dict()) == set(PipsNet(stride=4).state_dict())  # no extra keys


def test_resolve_precision_per_device(monkeypatch):
    assert resolve_precision("none", "cpu") == Precision()
    both = Precision(mixer=torch.bfloat16, encoder=torch.bfloat16, lookup=torch.bfloat16)
    with pytest.warns(UserWarning, match="GPU mode"):
        assert resolve_precision("fp16", "cpu") == Precision()
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == both
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu") == both
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == Precision()
    with pytest.warns(UserWarning, match="no native bf16"):
        assert resolve_precision("bf16", "cpu") == both  # as asked
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda: True)
    assert resolve_precision("auto", "cuda") == both and resolve_precision("bf16", "cuda:0") == both
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        half = resolve_precision("fp16", "cuda")
    assert half == Precision(torch.float16, torch.float16, torch.float16) and half.name == "fp16"


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert "avx512_bf16" in runtime.cpu_flags(info)
    assert runtime.cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    runtime.cpu_has_native_bf16.cache_clear()
    try:
        assert not runtime.cpu_has_native_bf16()
        monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
        runtime.cpu_has_native_bf16.cache_clear()
        assert runtime.cpu_has_native_bf16() == torch.backends.mkldnn.is_available()
    finally:
        runtime.cpu_has_native_bf16.cache_clear()


def test_tracker_applies_autocast_on_the_cpu(tmp_path):
    from densemotion.params import SampleParams, TrajectoriesParams
    from densemotion.sample import render_clip
    from densemotion.trajectories.run import make_tracker

    CHECKPOINT.save_fixture(tmp_path / CHECKPOINT.file_name)
    frames, _ = render_clip(SampleParams(height=64, width=96, num_frames=8, sprites=2), 0)
    queries = np.array([[10.0, 10.0], [50.0, 30.0], [80.0, 50.0]], dtype=np.float32)
    result = {}
    for mode in ("none", "bf16"):
        params = TrajectoriesParams(tracker="pips", device="cpu", pips={"iters": 1, "autocast": mode})
        tracker = make_tracker(params, tmp_path)
        assert tracker.engine.precision.name == {"none": "fp32", "bf16": "bf16"}[mode]
        result[mode] = tracker.track(frames, queries)
    (t32, v32), (t16, v16) = result["none"], result["bf16"]
    assert t16.dtype == np.float32 and np.array_equal(t16[0], queries)
    assert 0 < np.abs(t16 - t32).max() < 0.5 and np.abs(v16 - v32).max() < 0.05
