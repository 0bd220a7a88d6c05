"""The sample stage writes the same bytes on any CPU: a render with SIMD paths switched off matches.

``dvc.lock`` pins the sample's files, so a CPU on which NumPy, OpenCV or OpenBLAS take other SIMD
paths (AVX-512, AVX2/FMA3 or none) must write the same bytes. A child process renders the default
clips (few frames) and prints SHA-256 digests of each clip's frames and saved truth .npz, and of
float textures and motion (whose last bits the rounding to pixels would mostly hide): once as
usual, once with NumPy's dispatch targets off (``NPY_DISABLE_CPU_FEATURES``), OpenCV's optimised
code off (``cv2.setUseOptimized(False)``) and OpenBLAS on pre-AVX kernels. The MP4 is not
compared: its bytes also depend on x264 and swscale, whose own SIMD paths these switches miss.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

_CHILD = r"""
import hashlib, io, json, os, sys, tempfile
from pathlib import Path

import cv2
import numpy as np

portable = sys.argv[1] == "portable"
cv2.setUseOptimized(not portable)
try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
except ImportError:  # NumPy 1.x
    from numpy.core._multiarray_umath import __cpu_features__ as features

from densemotion import sample
from densemotion.params import SampleParams
from densemotion.sample import render_clip, save_truth

params = SampleParams(num_frames=int(sys.argv[2]))
digests = {}
with tempfile.TemporaryDirectory() as tmp:
    for index, name in enumerate(params.clips):
        frames, truth = render_clip(params, index)
        save_truth(Path(tmp) / "truth.npz", truth)
        buf = io.BytesIO()
        np.save(buf, frames, allow_pickle=False)
        digests[name + " frames"] = hashlib.sha256(buf.getvalue()).hexdigest()
        digests[name + " truth"] = hashlib.sha256((Path(tmp) / "truth.npz").read_bytes()).hexdigest()
# the float textures and motion before pixels are rounded, where a last-bit difference still shows
floats = hashlib.sha256()
for seed in range(8):
    rng = np.random.default_rng(seed)
    floats.update(sample._background(rng, params.height, params.width).tobytes())
    for _ in range(params.sprites):
        sprite = sample._make_sprite(rng, params)
        floats.update(sprite.texture.tobytes() + sample._invert_affine(sprite.frame_from_tex).tobytes())
digests["float textures and motion"] = floats.hexdigest()
off = [f for f in os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split(",") if f]
print(json.dumps({"digests": digests, "still_on": [f for f in off if features.get(f)], "cv2": cv2.useOptimized()}))
"""


def _simd_targets() -> list[str]:
    """NumPy's dispatch targets this CPU runs: the ones NPY_DISABLE_CPU_FEATURES can switch off.

    NumPy 2.x accepts only dispatch targets there (on x86-64: X86_V3, X86_V4, AVX512_ICL, ...);
    it silently ignores single features such as AVX2 or FMA3 and refuses the baseline (X86_V2).
    """
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _render_digests(mode: str, num_frames: int, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(num_frames)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_sample_bytes_do_not_depend_on_simd_paths():
    """Frames, truth .npz and float intermediates: the same bytes with and without SIMD paths."""
    targets = _simd_targets()
    if not targets:
        pytest.skip("this CPU runs no NumPy dispatch target above the baseline: nothing to switch off")
    plain_env = {"NPY_DISABLE_CPU_FEATURES": ""}
    portable_env = {"NPY_DISABLE_CPU_FEATURES": ",".join(targets)}
    if platform.machine().lower() in ("x86_64", "amd64"):
        portable_env["OPENBLAS_CORETYPE"] = "Prescott"  # pre-AVX kernels, no FMA
    plain = _render_digests("plain", 6, plain_env)
    portable = _render_digests("portable", 6, portable_env)
    assert portable["still_on"] == [] and portable["cv2"] is False  # the switches really took
    assert plain["cv2"] is True
    differ = sorted(k for k in plain["digests"] if plain["digests"][k] != portable["digests"][k])
    assert not differ, f"bytes depend on SIMD paths ({', '.join(targets)} off): {differ}"
    assert len(set(plain["digests"].values())) == len(plain["digests"])  # every clip is its own
