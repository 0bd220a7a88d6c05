"""Shared test helpers: small real videos encoded by the tests themselves."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# keep tests predictable on the 2-core CI machine
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]

# property-based tests (hypothesis) at the boundaries where outside data enters: bounded in time.
# "ci" (the default) runs a few hundred examples in all; HYPOTHESIS_PROFILE=deep for a longer hunt.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        max_examples=60,
        deadline=None,  # a 2-core machine under load: no per-example deadline, the count bounds time
        derandomize=True,  # the same examples on every run: CI never turns red by chance
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=True,
    )
    settings.register_profile("deep", max_examples=2000, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


def moving_frames(n: int = 12, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: a smooth random texture translating 1 px/frame to the right."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 6 + 2, (w + n) // 6 + 2, 3), dtype=np.uint8)
    big = cv2.resize(base, (base.shape[1] * 6, base.shape[0] * 6), interpolation=cv2.INTER_CUBIC)[:h, : w + n]
    return np.stack([big[:, n - t : n - t + w] for t in range(n)])


def sample_params_dict() -> dict:
    """params.yaml for the built-in sample, built from the schema's defaults.

    Tests start from this, never from the repository's params.yaml: a fork whose params point at
    its own videos (or at PIPs, a tracking resolution, a split regex) must pass the same suite.
    """
    from densemotion.params import DataParams, Params, SampleParams
    from densemotion.tracking import registry

    videos = {clip: f"data/sample/videos/{clip}.mp4" for clip in SampleParams().clips}
    raw = Params(data=DataParams(videos=videos)).model_dump(mode="json")
    for name in registry.names():  # every tracker's section, as params.yaml has them (DVC reads them)
        raw["trajectories"][name] = registry.get(name).params().model_dump(mode="json")
    return raw


def write_params(path: Path, raw: dict | None = None) -> Path:
    """Write ``raw`` (default: the sample's params) as a commented params.yaml; returns ``path``."""
    import yaml

    text = yaml.safe_dump(sample_params_dict() if raw is None else raw, sort_keys=False)
    path.write_text("# densemotion parameters (written by the tests)\n" + text)
    return path


@pytest.fixture
def test_device() -> Iterator[str]:
    """Where the reference tests (the trackers' nets against their published outputs) run:
    ``DENSEMOTION_TEST_DEVICE`` (default ``cpu``; bench/gpu_check.py sets ``cuda``). Skipped when it
    names CUDA and there is none. On CUDA, float32 means float32 for the test (TF32 off: cuDNN's
    convolutions use it by default), so the float32 bounds hold their meaning; results are
    compared on the CPU."""
    import torch

    device = os.environ.get("DENSEMOTION_TEST_DEVICE", "cpu")
    if torch.device(device).type != "cuda":
        yield device
        return
    if not torch.cuda.is_available():
        pytest.skip(f"DENSEMOTION_TEST_DEVICE={device} but no CUDA GPU is available")
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield device
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture
def sample_params() -> dict:
    """A fresh mutable copy of the sample's params (see :func:`sample_params_dict`)."""
    return sample_params_dict()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test process: pytest runs 2 processes on the 2-core CI machine,
    and oversubscribed spinning threads can make a torch test 10x slower."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, n=12, h=64, w=96, fps=24) -> path of a real H.264 MP4 made here."""
    from densemotion.video import encode_video

    def _make(
        name: str = "clip.mp4",
        n: int = 12,
        h: int = 64,
        w: int = 96,
        fps: float = 24.0,
        seed: int = 0,
        folder: Path | None = None,
    ) -> Path:
        path = (folder or tmp_path) / name
        encode_video(path, moving_frames(n, h, w, seed), fps, crf=18)
        return path

    return _make


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int) -> Iterator[Path | None]:
    """A ``size_kb`` tmpfs mounted at ``folder`` where the test may mount one (root), else None
    (the caller then limits file sizes with RLIMIT_FSIZE instead, see :func:`fsize_limit`)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True
    )
    if mount.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fsize_limit(limit_bytes: int):
    """A preexec_fn for subprocess: files may not grow past ``limit_bytes`` (EFBIG, not a signal)."""

    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply
