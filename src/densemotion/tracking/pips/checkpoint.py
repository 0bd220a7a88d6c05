"""PIPs weights: loading the published checkpoint, unpacking its archive, and synthetic test weights.

The published checkpoint is ``model-000200000.pth`` inside ``reference_model.tar.gz`` (linked
from the authors' repository, aharley/pips, ``get_reference_model.sh``): a ``torch.save``d dict
whose ``model_state_dict`` holds the 200 tensors of :class:`~densemotion.tracking.pips.model.PipsNet`.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from densemotion.atomic import atomic_path
from densemotion.statedict import load_weights, mismatch
from densemotion.tracking.base import TrackerError
from densemotion.tracking.pips.model import PipsNet

CHECKPOINT_NAME = "model-000200000.pth"
# from aharley/pips get_reference_model.sh; "?dl=1" makes Dropbox serve the file itself
ARCHIVE_URL = "https://www.dropbox.com/s/glk6jmoa9yeervl/reference_model.tar.gz?dl=1"
# the fixture weights (docs/pips.md, "How it is checked")
FIXTURE_SEED = 20221024
FIXTURE_GAIN = 0.3


class CheckpointError(TrackerError):
    """The PIPs checkpoint is missing, unreadable, or not the published PIPs model."""


def fetch_command(checkpoint: str | Path) -> str:
    """The shell commands that put the published checkpoint at ``checkpoint`` (DVC-tracked)."""
    folder = Path(checkpoint).parent
    archive = folder / "reference_model.tar.gz"
    return (
        f"dvc import-url '{ARCHIVE_URL}' {archive} && densemotion fetch-pips {archive} {folder}/ && "
        f"dvc add {checkpoint} && git add {folder}/*.dvc {folder}/.gitignore && dvc push"
    )


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the published state_dict (built on the meta device: no memory used)."""
    with torch.device("meta"):
        net = PipsNet()
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``model_state_dict`` from a published-format checkpoint; clear errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"PIPs checkpoint {path} not found; fetch it with: {fetch_command(path)}")
    ckpt = load_weights(path, CheckpointError)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state_dict"), dict):
        got = sorted(map(str, ckpt))[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a PIPs checkpoint: expected a dict with 'model_state_dict', got {got}")
    return ckpt["model_state_dict"]


def check_state_dict(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and wrongly shaped keys."""
    problems = mismatch(state, expected_shapes())
    if problems:
        raise CheckpointError(f"{source} does not match the published PIPs model: {problems}")


def load_pips(path: str | Path, stride: int, device: str | torch.device = "cpu", dtype=torch.float32) -> PipsNet:
    """Build :class:`PipsNet` and load the checkpoint at ``path`` into it (strict), in eval mode."""
    state = read_state_dict(path)
    check_state_dict(state, str(path))
    net = PipsNet(stride=stride).to(dtype)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def fixture_state_dict(seed: int = FIXTURE_SEED, gain: float = FIXTURE_GAIN) -> dict[str, torch.Tensor]:
    """The synthetic float64 weights the PIPs fixtures were made with (docs/pips.md, "How it is checked").

    Key i of the sorted key list gets v = default_rng([seed, i]).standard_normal(shape); matrices
    and conv kernels gain * v / sqrt(fan_in), 1-D weights 1 + 0.1 v, biases 0.1 v. Used by tests,
    benchmarks and anyone who needs a checkpoint where the published one cannot be downloaded.
    """
    out = {}
    for i, (key, shape) in enumerate(sorted(expected_shapes().items())):
        v = np.random.default_rng([seed, i]).standard_normal(shape)
        if len(shape) >= 2:
            v = gain * v / np.sqrt(np.prod(shape[1:]))
        elif key.endswith("weight"):
            v = 1 + 0.1 * v
        else:
            v = 0.1 * v
        out[key] = torch.from_numpy(v)
    return out


def save_checkpoint(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write ``state`` in the published file format (a dict with ``model_state_dict``), atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model_state_dict": state}, tmp)


def save_fixture_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the fixture weights as a published-format checkpoint (for tests and pipelines without the real one)."""
    save_checkpoint({k: v.to(dtype) for k, v in fixture_state_dict().items()}, path)
    return Path(path)


def unpack_checkpoint(archive: str | Path, out_dir: str | Path, verify: bool = True) -> Path:
    """Extract only ``model-000200000.pth`` from the published archive into ``out_dir``; return its path.

    Safe against hostile archives: exactly one member with that base name must exist; it must
    pass tarfile's "data" filter and be a regular file; only its bytes are copied (its folder
    inside the archive is dropped), atomically; with ``verify`` it must hold the published keys.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not archive.is_file():
        raise CheckpointError(f"archive {archive} not found; get it with: dvc import-url '{ARCHIVE_URL}' {archive}")
    dest = out_dir / CHECKPOINT_NAME
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if Path(m.name).name == CHECKPOINT_NAME]
            if len(members) != 1:
                names = [m.name for m in tar.getmembers()][:10]
                raise CheckpointError(f"{archive}: expected one member named {CHECKPOINT_NAME}, found {names}")
            member = tarfile.data_filter(members[0], str(out_dir.resolve()))
            if not member.isfile():
                raise CheckpointError(f"{archive}: member {member.name} is not a regular file")
            source = tar.extractfile(member)
            assert source is not None  # a regular file, checked above
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as f:
                    shutil.copyfileobj(source, f, 1 << 20)
                if verify:  # before the rename: a foreign file never lands at dest
                    check_state_dict(read_state_dict(tmp), f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise CheckpointError(f"{archive} is not a readable .tar.gz archive ({err})") from None
    return dest
