"""encode_video writes the same bytes every run and on every CPU, and keeps the colours.

``dvc.lock`` pins the sample clips' MP4 bytes. Two things made them CPU-dependent: swscale's
RGB -> YUV conversion (its result depends on FFmpeg's SIMD path) and x264, which picks other
algorithms by SIMD level (intra mode search, macroblock-tree float code; with AVX-512 the bytes
even changed from one run to the next in one process). Child processes encode the default sample
clips with x264's assembly forced to other levels (``asm=...`` appended to the encoder's
x264-params), NumPy's dispatch targets and FFmpeg's SIMD off, and must write the bytes the test
process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from densemotion import video
from densemotion.params import SampleParams
from densemotion.sample import render_clip
from densemotion.video import encode_video, iter_frames

from conftest import moving_frames

PARAMS = SampleParams()

# A child encodes every clip of an .npz twice (all clips, then all again: the second pass runs after
# other allocations, which is what made x264's AVX-512 code change its output) and prints digests.
_CHILD = r"""
import ctypes, hashlib, json, os, sys
import numpy as np
from densemotion import video

extra, frames_path, out_dir, fps, crf, ffmpeg_off = sys.argv[1:7]
ffmpeg_cpu_flags = None
if ffmpeg_off == "1":  # av_force_cpu_flags(0): FFmpeg's plain C code everywhere (swscale included)
    import av  # loads the libavutil bundled with PyAV
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps if "libavutil" in line})
    avutil = ctypes.CDLL(libs[0])
    avutil.av_force_cpu_flags(0)
    ffmpeg_cpu_flags = avutil.av_get_cpu_flags()
if extra:
    video._X264_PARAMS += ":" + extra
clips = np.load(frames_path)
digests = {}
for run in range(2):
    for name in clips.files:
        path = os.path.join(out_dir, f"{name}.{run}.mp4")
        video.encode_video(path, clips[name], float(fps), crf=int(crf))
        with open(path, "rb") as f:
            digests[f"{name} run {run}"] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps({"digests": digests, "ffmpeg_cpu_flags": ffmpeg_cpu_flags}))
"""


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    """The default sample clips' frames, name -> (T, H, W, 3) uint8."""
    return {name: render_clip(PARAMS, i)[0] for i, name in enumerate(PARAMS.clips)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encode_all(clips: dict[str, np.ndarray], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, frames in clips.items():
        encode_video(folder / f"{name}.mp4", frames, PARAMS.fps, crf=PARAMS.crf)
        digests[name] = _digest(folder / f"{name}.mp4")
    return digests


def _child_digests(
    clips_npz: Path, out: Path, *, extra: str = "", env: dict[str, str] | None = None, ffmpeg_simd: bool = True
) -> dict:
    """Run _CHILD; ``ffmpeg_simd=False`` switches FFmpeg's SIMD off (Linux: finds libavutil in /proc)."""
    out.mkdir()
    ffmpeg_off = "0" if ffmpeg_simd or not sys.platform.startswith("linux") else "1"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, extra, str(clips_npz), str(out), str(PARAMS.fps), str(PARAMS.crf), ffmpeg_off],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _simd_targets() -> list[str]:
    """NumPy's dispatch targets this CPU runs: what NPY_DISABLE_CPU_FEATURES can switch off
    (NumPy 2.x takes only these names there, e.g. X86_V3, X86_V4, AVX512_ICL)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _x264_asm_levels() -> list[str]:
    """x264 ``asm=`` values this CPU can run, besides auto (the default) and 0 (plain C).

    x264 trusts the value: a level the CPU lacks would crash the child, so each is checked first.
    SSE2 is the last level before x264 switches intra mode search (SSSE3+); AVX2 is where AVX-512
    CPUs' automatic choice differs.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as has
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as has
    levels = ["sse2"]
    if has.get("AVX2") and has.get("FMA3") and has.get("BMI2"):
        levels.append("avx2")
    return levels


def test_same_bytes_twice_in_one_process(clips, tmp_path):
    first = _encode_all(clips, tmp_path / "first")
    second = _encode_all(clips, tmp_path / "second")
    assert first == second
    assert len(set(first.values())) == len(first)  # every clip is its own


def test_same_bytes_in_a_fresh_process(clips, tmp_path):
    np.savez(tmp_path / "clips.npz", **clips)
    here = _encode_all(clips, tmp_path / "here")
    child = _child_digests(tmp_path / "clips.npz", tmp_path / "child")["digests"]
    assert child == {f"{name} run {run}": here[name] for run in range(2) for name in clips}


@pytest.mark.slow
def test_bytes_do_not_depend_on_simd_paths(clips, tmp_path):
    """x264 at other assembly levels (plain C included), NumPy and FFmpeg SIMD off: the same bytes."""
    np.savez(tmp_path / "clips.npz", **clips)
    expected = _encode_all(clips, tmp_path / "here")
    # plain C: x264 without assembly, NumPy on its baseline, FFmpeg without SIMD
    plain_c = {"NPY_DISABLE_CPU_FEATURES": ",".join(_simd_targets())}
    if sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64"):
        # glibc's libm (x264's exp, log, pow) then takes its SSE2 code rather than its FMA variants
        plain_c["GLIBC_TUNABLES"] = "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX"
    variants = {"asm=0": plain_c} | {f"asm={level}": None for level in _x264_asm_levels()}
    differ = {}
    for extra, env in variants.items():
        plain = env is not None
        result = _child_digests(
            tmp_path / "clips.npz", tmp_path / extra.replace("=", "_"), extra=extra, env=env, ffmpeg_simd=not plain
        )
        if plain and sys.platform.startswith("linux"):
            assert result["ffmpeg_cpu_flags"] == 0  # FFmpeg's SIMD really was off
        bad = sorted(key for key, digest in result["digests"].items() if digest != expected[key.rsplit(" run ", 1)[0]])
        if bad:
            differ[extra] = bad
    assert not differ, f"encode_video's bytes depend on the CPU's SIMD paths: {differ}"


def test_rgb_to_yuv420p_is_bt601_limited_range():
    """Exact integers within rounding of the BT.601 formulas; greys neutral; the legal ranges."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    rgb[:2, :2] = 255  # a white block, a black block and a grey block
    rgb[2:4, :2] = 0
    rgb[4:6, :2] = 77
    packed = video._rgb_to_yuv420p(rgb)
    assert packed.shape == (96, 96) and packed.dtype == np.uint8
    y, u, v = packed[:64], packed[64:80].reshape(32, 48), packed[80:].reshape(32, 48)
    r, g, b = (rgb[..., c].astype(float) for c in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - luma) / 1.772 * 224 / 255
    cr = (r - luma) / 1.402 * 224 / 255

    def mean2x2(p: np.ndarray) -> np.ndarray:
        return p.reshape(32, 2, 48, 2).mean(axis=(1, 3))

    assert np.abs(y - (16 + luma * 219 / 255)).max() <= 0.51
    assert np.abs(u - (128 + mean2x2(cb))).max() <= 0.51
    assert np.abs(v - (128 + mean2x2(cr))).max() <= 0.51
    assert (y[0, 0], y[2, 0]) == (235, 16) and (u[:3, 0] == 128).all() and (v[:3, 0] == 128).all()
    extremes = video._rgb_to_yuv420p(np.array([[[255, 0, 0], [0, 0, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8))
    assert extremes[:2].min() >= 16 and extremes[:2].max() <= 235 and extremes[2].min() >= 16
    assert extremes[2].max() <= 240


def test_x264_gets_the_planes_unconverted(tmp_path):
    """Lossless (crf 0) decode gives back exactly the planes made here: swscale did not touch them."""
    frames = moving_frames(4, 64, 96)
    encode_video(tmp_path / "lossless.mp4", frames, 24, crf=0)
    with av.open(str(tmp_path / "lossless.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 4
    for frame, rgb in zip(decoded, frames, strict=True):
        assert np.array_equal(frame.to_ndarray(), video._rgb_to_yuv420p(rgb))
        assert (frame.colorspace, frame.color_range) == (6, 1)  # tagged BT.601 (SMPTE 170M), limited range


def _swscale_encode(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    """The previous way: rgb24 frames, converted to yuv420p by PyAV's swscale."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.options = {"crf": str(crf), "threads": "1", "preset": "medium"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _decode_error(path: Path, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean absolute error and mean error of the decoded video against ``frames``,
    decoded the way the frames stage does (4:2:0 planes, then Yuv420.to_rgb)."""
    decoded = np.stack([planes.to_rgb() for _, planes in iter_frames(path, planes=True)]).astype(int)
    diff = decoded - frames.astype(int)
    return np.abs(diff).mean(axis=(0, 1, 2)), diff.mean(axis=(0, 1, 2))


def test_decoded_colours_match_the_input(clips, tmp_path):
    """The sample's crf: small error, no colour bias, no worse than swscale's conversion was."""
    frames = clips[PARAMS.clips[3]]
    encode_video(tmp_path / "new.mp4", frames, PARAMS.fps, crf=PARAMS.crf)
    _swscale_encode(tmp_path / "old.mp4", frames, PARAMS.fps, PARAMS.crf)
    mae, bias = _decode_error(tmp_path / "new.mp4", frames)
    old_mae, _ = _decode_error(tmp_path / "old.mp4", frames)
    assert mae.max() < 4.5 and np.abs(bias).max() < 0.5, (mae, bias)
    assert (mae <= old_mae * 1.02).all(), (mae, old_mae)  # 2x2 mean chroma: sharper than swscale's
    # the frames stage's fixture texture at its crf: same bound on bias
    texture = moving_frames(12, 64, 96)
    encode_video(tmp_path / "texture.mp4", texture, 24, crf=18)
    mae, bias = _decode_error(tmp_path / "texture.mp4", texture)
    assert mae.max() < 8 and np.abs(bias).max() < 0.5, (mae, bias)


@pytest.mark.parametrize(
    "frames, message",
    [
        ([np.zeros((63, 96, 3), np.uint8)], "must be even"),
        ([], "no frames"),
        ([np.zeros((64, 96, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)], "frame 1 is 64x64"),
        ([np.zeros((64, 96, 3), np.float32)], "expected \\(H, W, 3\\) uint8"),
    ],
)
def test_refused_frames_leave_no_file(tmp_path, frames, message):
    with pytest.raises((video.VideoError, ValueError), match=message):
        encode_video(tmp_path / "out.mp4", iter(frames), 24)
    assert list(tmp_path.iterdir()) == []


def test_other_muxers_hold_the_same_stream(tmp_path):
    """``muxer`` picks the container (tests of MPEG-TS need real ones); every frame decodes back."""
    from densemotion.video import probe

    frames = moving_frames(10, 32, 48)
    encode_video(tmp_path / "clip.ts", frames, 24, muxer="mpegts")
    data = (tmp_path / "clip.ts").read_bytes()
    assert len(data) % 188 == 0 and data[::188] == b"\x47" * (len(data) // 188)  # TS packets, each synced
    assert probe(tmp_path / "clip.ts").codec == "h264"
    assert len(list(iter_frames(tmp_path / "clip.ts"))) == 10
