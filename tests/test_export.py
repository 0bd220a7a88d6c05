"""Exports run without densemotion: each file is loaded in a fresh Python where densemotion (and,
for ONNX, torch) cannot be imported, on images of several sizes, and compared with the predictor."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_predict import _image, make_checkpoint

from densemotion.export import INFO_NAME, ExportError, export_model
from densemotion.predictor import MotionPredictor

SIZES = [(128, 224), (300, 200), (97, 61), (720, 1280)]  # the training size, portrait, odd, 720p
BLOCK = "import sys\nfor name in ('densemotion', {extra}): sys.modules[name] = None  # not importable here\n"

RUN_TORCHSCRIPT = """
import json, numpy as np, torch
files = {"densemotion.json": ""}
model = torch.jit.load(sys.argv[1], _extra_files=files)
print(json.dumps(json.loads(files["densemotion.json"])))
for i in range(int(sys.argv[3])):
    image = torch.from_numpy(np.load(f"{sys.argv[2]}/in{i}.npy"))
    with torch.no_grad():
        motion, grid_motion = model(image)
    np.save(f"{sys.argv[2]}/out{i}.npy", motion.numpy())
"""

RUN_ONNX = """
import json, numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(session.get_modelmeta().custom_metadata_map["densemotion.json"].replace("\\n", ""))
for i in range(int(sys.argv[3])):
    motion, grid_motion = session.run(None, {"image": np.load(f"{sys.argv[2]}/in{i}.npy")})
    np.save(f"{sys.argv[2]}/out{i}.npy", motion)
"""


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    grid = {"stride": 4, "margin": 0, "tracking_sizes": [[128, 224]]}
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "motion.pt", grid, input_scale=2)
    return MotionPredictor.from_checkpoint(path, device="cpu")


def run_fresh(script: str, block: str, model, tmp_path, images: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    """Run ``script`` on ``images`` ((B, H, W, 3) uint8 each) in a new interpreter, outside the
    repository, with densemotion and ``block`` unimportable; -> (its densemotion.json, its motions)."""
    for i, batch in enumerate(images):
        np.save(tmp_path / f"in{i}.npy", np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))  # (B, 3, H, W)
    code = BLOCK.format(extra=block) + textwrap.dedent(script)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(model), str(tmp_path), str(len(images))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return info, [np.load(tmp_path / f"out{i}.npy") for i in range(len(images))]


def batches() -> list[np.ndarray]:
    """One image per size, and a batch of two at the first."""
    ones = [_image(h, w, seed=i)[None] for i, (h, w) in enumerate(SIZES)]
    return [*ones, np.stack([_image(*SIZES[0], seed=7), _image(*SIZES[0], seed=8)])]


def check_against_predictor(predictor: MotionPredictor, images: list[np.ndarray], motions: list[np.ndarray]) -> None:
    for batch, motion in zip(images, motions, strict=True):
        want = np.stack([p.motion for p in predictor(list(batch))])  # (B, K, 2, H, W)
        assert motion.shape == want.shape
        assert np.abs(want).max() > 0.1  # motion that varies, not zeros
        np.testing.assert_allclose(motion, want, atol=1e-4, rtol=0)


def test_torchscript_runs_with_only_torch(predictor, tmp_path):
    out = export_model(predictor, "torchscript", tmp_path / "m" / "motion.torchscript.pt")
    images = batches()
    info, motions = run_fresh(RUN_TORCHSCRIPT, "'densemotion.export'", out, tmp_path, images)
    assert info["steps"] == list(predictor.steps) and info["grid_stride"] == 4 and info["training_side"] == 224
    check_against_predictor(predictor, images, motions)


def test_torchscript_of_the_native_scale_keeps_the_varying_upsampling(tmp_path):
    """At the native scale the net's upsampling factor depends on the image (max_input_side): the
    script computes it per call, so a small and a large image both match the predictor."""
    path = make_checkpoint(tmp_path / "motion.pt", {"stride": 4, "margin": 0}, input_scale=4)
    native = MotionPredictor.from_checkpoint(path, device="cpu")
    assert native.side == 0
    assert native.model.scale_for(16, 16) == 4 and native.model.scale_for(160, 90) == 2
    out = export_model(native, "torchscript", tmp_path / "native.pt")
    images = [_image(64, 64)[None], _image(640, 360, seed=1)[None]]
    _, motions = run_fresh(RUN_TORCHSCRIPT, "'densemotion.export'", out, tmp_path, images)
    check_against_predictor(native, images, motions)


@pytest.mark.slow
def test_onnx_runs_with_only_onnxruntime(predictor, tmp_path):
    pytest.importorskip("onnxscript")  # the [export] extra, installed by dev.sh setup
    out = export_model(predictor, "onnx", tmp_path / "motion.onnx")
    images = batches()
    info, motions = run_fresh(RUN_ONNX, "'torch'", out, tmp_path, images)
    assert info["format"] == "onnx" and info["training_side"] == 224
    check_against_predictor(predictor, images, motions)


def test_exports_replace_only_exports(predictor, tmp_path, capsys):
    from densemotion.__main__ import main

    other = tmp_path / "notes.pt"
    other.write_bytes(b"someone else's file")
    with pytest.raises(ExportError, match="torchscript"):
        export_model(MotionPredictor(predictor.model, predictor.steps, side=0), "onnx", tmp_path / "x.onnx")
    assert main(["export", "unused.pt", "--format", "torchscript", "--out", str(other)]) == 1  # no model
    ckpt = tmp_path / "motion.pt"
    make_checkpoint(ckpt, {"stride": 4, "margin": 0, "tracking_sizes": [[64, 64]]})
    capsys.readouterr()
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.pt" in err[0] and "earlier densemotion export" in err[0], err
    assert other.read_bytes() == b"someone else's file"
    out = tmp_path / "motion.torchscript.pt"
    for _ in range(2):  # the second replaces the first: it is an export
        assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    assert INFO_NAME.encode() in out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motion.pt", "motion.torchscript.pt", "notes.pt"]
