"""A trained model as one file that runs without densemotion: TorchScript (only torch) or ONNX
(only onnxruntime).

The file is :class:`~densemotion.stillmodel.StillMotionModel` of the predictor, everything inside:
image (B, 3, H, W) RGB 0 .. 255 (TorchScript: uint8 or float; ONNX: uint8), H and W free, ->
``motion`` (B, K, 2, H, W) and ``grid_motion`` (B, K, 2, Hg, Wg) float32, x and y in the image's
px, with the resizing to the training scale, the grid, the normalisation and the head's decoding
as the predictor does them (the same numbers, within 1e-4 px in float32: tests/test_export.py
runs each file in a fresh process where densemotion cannot be imported).

Beside the graph each file carries ``densemotion.json`` (:func:`export_info`: the predicted steps,
grid stride, training side, model name and the contract above): a TorchScript file's extra file,
an ONNX file's metadata entry of that name.

    import torch, json
    files = {"densemotion.json": ""}
    model = torch.jit.load("motion.torchscript.pt", _extra_files=files)
    motion, grid_motion = model(image)      # image: torch.uint8 (1, 3, H, W)

    import onnxruntime
    session = onnxruntime.InferenceSession("motion.onnx")
    motion, grid_motion = session.run(None, {"image": image})   # numpy uint8 (1, 3, H, W)

ONNX needs the optional extra ``pip install -e '.[export]'`` (onnx, onnxscript for torch's
exporter; onnxruntime to run it) and a model seen at the training scale (a fixed upsampling
factor; the native scale's varies with the image, which ``torch.export`` cannot keep dynamic).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch

from densemotion.atomic import atomic_path
from densemotion.errors import DensemotionError
from densemotion.predictor import MotionPredictor

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 18  # the first with Resize's antialias (the image's resizing to the training scale)
INFO_NAME = "densemotion.json"
EXAMPLE_SIZE = (96, 128)  # (H, W) of the example image the ONNX exporter traces with (any size works after)


class ExportError(DensemotionError):
    """An export that cannot be made (unknown format, missing optional package, native scale for ONNX)."""


def export_info(predictor: MotionPredictor, fmt: str) -> dict:
    """What a user of the exported file needs to know, written inside it as ``densemotion.json``."""
    return {
        "format": fmt,
        "model": predictor.name,
        "steps": list(predictor.steps),
        "grid_stride": predictor.grid_stride,
        "training_side": predictor.side,
        "input": "image (B, 3, H, W) RGB 0..255" + (" uint8" if fmt == "onnx" else ", uint8 or float"),
        "outputs": ["motion (B, K, 2, H, W) float32 px of the image", "grid_motion (B, K, 2, Hg, Wg) float32 px"],
    }


def export_model(predictor: MotionPredictor, fmt: str, out: str | Path) -> Path:
    """Write ``predictor``'s model to ``out`` as ``fmt`` (:data:`FORMATS`); the file is written
    whole or not at all, and an existing ``out`` is replaced only when it is an earlier export."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
    still = predictor.still.to("cpu").eval()
    info = json.dumps(export_info(predictor, fmt), indent=1)
    out = Path(out)
    with atomic_path(out, same_kind=is_export, kind="an earlier densemotion export") as tmp:
        if fmt == "torchscript":
            _torchscript(still, Path(tmp), info)
        else:
            if predictor.side <= 0:
                raise ExportError(
                    "ONNX export needs a model seen at the training scale, and this one is native "
                    "(--scale native, or a checkpoint that records no training size): use torchscript"
                )
            _onnx(still, Path(tmp), info)
    return out


def is_export(path: Path) -> bool:
    """Whether ``path`` is a file this module wrote (it holds :data:`INFO_NAME`): the only kind an
    export replaces."""
    try:
        return path.is_file() and INFO_NAME.encode() in path.read_bytes()
    except OSError:
        return False


def _torchscript(still: torch.nn.Module, path: Path, info: str) -> None:
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; it still loads everywhere
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=FutureWarning)
        scripted = torch.jit.script(still)
        torch.jit.save(scripted, str(path), _extra_files={INFO_NAME: info})


def _onnx(still: torch.nn.Module, path: Path, info: str) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as err:
        raise ExportError(f"ONNX export needs the optional packages: pip install -e '.[export]' ({err})") from None
    example = torch.zeros((1, 3, *EXAMPLE_SIZE), dtype=torch.uint8)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's step-by-step lines
        torch.onnx.export(
            still,
            (example,),
            str(path),
            dynamo=True,
            input_names=["image"],
            output_names=["motion", "grid_motion"],
            dynamic_shapes={"image": dims},
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = INFO_NAME, info
    onnx.save(model, str(path))
