"""Prediction from stills: images/s and peak memory of the eager predictor, its TorchScript export and
its ONNX export under ONNX Runtime, side by side, at 256x256, 640x360 and 1920x1080.

    .venv/bin/python bench/predict_speed.py [--model models/motion.pt] [--scale training|native]
        [--sizes 256x256,640x360,1920x1080] [--seconds 3] [--threads 2]

``--model``: a checkpoint of ``densemotion train`` (default models/motion.pt, made by the
README's first command). Each row runs in its own process (spawned: nothing shared), which loads
the engine, runs one warm-up image, then predicts the same image (a smooth random one) for
``--seconds``; "peak MiB" is that process's peak resident memory and "load MiB" that of a
process that loaded the same engine and predicted nothing (loading has its own transient peak,
so the two are shown side by side rather than subtracted), and "x eager" the speed against the
eager row of the same size. On a machine with a GPU, eager
and TorchScript rows on it follow, with torch's peak allocated GPU memory. At ``--scale
training`` every image is resized to the training side first, so the net costs the same at
every size and the rest (resizing, the full-size field) is what grows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _image(h: int, w: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(h // 32, 2), max(w // 32, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _engine(kind: str, model: str, scale: str, files: dict[str, str], device: str):
    """A function (H, W, 3) uint8 -> motion of one engine."""
    import torch

    from densemotion.predictor import MotionPredictor

    if kind == "eager":
        predictor = MotionPredictor.from_checkpoint(model, device=device, scale=scale)
        return lambda image: predictor(image).motion
    if kind == "torchscript":
        scripted = torch.jit.load(files["torchscript"], map_location=device)

        def run_script(image: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device)
            with torch.inference_mode():
                return scripted(x)[0].cpu().numpy()

        return run_script
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(files["onnx"], options, providers=["CPUExecutionProvider"])
    return lambda image: session.run(["motion"], {"image": np.ascontiguousarray(image.transpose(2, 0, 1)[None])})[0]


def _row(kind: str, model: str, scale: str, files: dict, device: str, size, seconds: float, threads: int, queue):
    """In a child process: images/s and peak RSS (MiB) of ``kind`` at ``size`` (None: load only)."""
    import torch

    torch.set_num_threads(threads)
    run = _engine(kind, model, scale, files, device)
    count, rate = 0, 0.0
    if size is not None:
        image = _image(*size)
        run(image)  # warm-up: first-call allocations and TorchScript's profiling runs
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or count < 2:
            run(image)
            count += 1
        if device == "cuda":
            torch.cuda.synchronize()
        rate = count / (time.perf_counter() - start)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    queue.put((rate, peak_rss_mib(), gpu))


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM (Linux; ru_maxrss would include the parent's
    peak, which Linux keeps across the spawn's exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, model: str, scale: str, files: dict, device: str, size, seconds: float, threads: int):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_row, args=(kind, model, scale, files, device, size, seconds, threads, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/motion.pt")
    ap.add_argument("--scale", choices=("training", "native"), default="training")
    ap.add_argument("--sizes", default="256x256,640x360,1920x1080", help="WxH,...")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not Path(args.model).is_file():
        print(f"{args.model}: no such checkpoint (run the README's first command, or pass --model)", file=sys.stderr)
        return 1
    import torch

    from densemotion.export import export_model
    from densemotion.predictor import MotionPredictor

    sizes = [tuple(int(v) for v in s.split("x"))[::-1] for s in args.sizes.split(",")]  # (H, W)
    predictor = MotionPredictor.from_checkpoint(args.model, device="cpu", scale=args.scale)
    tmp = Path(tempfile.mkdtemp(prefix="predict-speed-"))
    files = {"torchscript": str(export_model(predictor, "torchscript", tmp / "motion.torchscript.pt"))}
    kinds = ["eager", "torchscript"]
    try:
        files["onnx"] = str(export_model(predictor, "onnx", tmp / "motion.onnx"))
        kinds.append("onnxruntime")
    except Exception as err:  # no [export] extra, or a native-scale model
        print(f"(no ONNX rows: {err})")
    rows = [(kind, "cpu") for kind in kinds]
    if torch.cuda.is_available():
        rows += [("eager", "cuda"), ("torchscript", "cuda")]
    side = f"training side {predictor.side} px" if predictor.side else "native scale"
    print(f"{args.model} ({predictor.name}, {side}, grid {predictor.grid_stride}); {args.threads} CPU threads")
    print(
        f"{'size':>10} {'engine':>12} {'device':>6} {'images/s':>9} {'x eager':>8} {'peak MiB':>9} "
        f"{'load MiB':>9} {'GPU MiB':>8}"
    )
    for h, w in sizes:
        eager_rate = {}
        for kind, device in rows:
            base = measure(kind, args.model, args.scale, files, device, None, 0, args.threads)[1]
            rate, peak, gpu = measure(kind, args.model, args.scale, files, device, (h, w), args.seconds, args.threads)
            eager_rate.setdefault(device, rate)
            gpu_text = f"{gpu:8.0f}" if device == "cuda" else f"{'-':>8}"
            print(
                f"{f'{w}x{h}':>10} {kind:>12} {device:>6} {rate:9.2f} {rate / eager_rate[device]:8.2f} "
                f"{peak:9.0f} {base:9.0f} {gpu_text}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
