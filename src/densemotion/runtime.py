"""Where torch work runs: the device named in params (cpu, cuda, cuda:N or auto), and this
process's rank when torchrun started several.

Kept apart from the trackers and the training loop so that every stage that uses torch picks
its device the same way, and none of them imports another's code for it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from densemotion.errors import DensemotionError

if TYPE_CHECKING:
    import numpy as np
    import torch

# mixed precision, one vocabulary for every stage (trajectories.pips.autocast, train.autocast):
# none = float32; bf16 / fp16 = autocast to that dtype; auto = bf16 where the hardware has it
Autocast = Literal["none", "bf16", "fp16", "auto"]
AUTOCASTS: tuple[str, ...] = get_args(Autocast)  # for a CLI's choices
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 dot products


class DeviceError(DensemotionError):
    """A device that is not available here."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device


@dataclass(frozen=True)
class Rank:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The rank that prints summaries and writes shared outputs."""
        return self.rank == 0


ALONE = Rank()  # a process not started by torchrun


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512_BF16 or AMX) and oneDNN can use it;
    elsewhere bf16 falls back to reference kernels, many times slower than float32."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX512"; "AMX" where torch sees it
    return "AMX" in capability.upper() or bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


def cuda_has_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_dtype(mode: Autocast, device: str, who: str) -> torch.dtype | None:
    """The dtype ``mode`` autocasts to on ``device`` (None: float32). ``auto`` is bf16 where the
    GPU or CPU has it natively; fp16 on a CPU runs float32, and bf16 on a CPU without native bf16
    runs as asked: both with a warning naming ``who`` (the params key)."""
    import torch

    cuda = torch.device(device).type == "cuda"
    if mode == "auto":
        mode = "bf16" if (cuda_has_bf16() if cuda else cpu_has_native_bf16()) else "none"
    if mode == "none":
        return None
    if mode == "fp16" and not cuda:
        warnings.warn(f"{who}: fp16 is a GPU mode; on the CPU it runs float32 (use bf16 or auto)", stacklevel=2)
        return None
    if mode == "bf16" and not cuda and not cpu_has_native_bf16():
        warnings.warn(
            f"{who}: this CPU has no native bf16 (AVX512_BF16 or AMX): bf16 runs 5-65x slower than float32 "
            "here; use auto or none",
            stacklevel=2,
        )
    return torch.bfloat16 if mode == "bf16" else torch.float16


def autocast_to(device: str | torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; None: a context that changes nothing."""
    import torch

    return contextlib.nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def to_device(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """A NumPy array as a tensor on ``device``; on CUDA copied up from page-locked memory (no
    staging copy, asynchronous), as the trackers' frames go."""
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def rank_from_env(env: Mapping[str, str] | None = None) -> Rank:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK; absent, a single process."""
    env = os.environ if env is None else env
    try:
        rank = Rank(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise DeviceError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun; unset them to run alone)"
        ) from None
    if not (rank.world_size >= 1 and 0 <= rank.rank < rank.world_size and rank.local_rank >= 0):
        raise DeviceError(f"inconsistent torchrun environment: RANK={rank.rank}, WORLD_SIZE={rank.world_size}")
    return rank


@contextlib.contextmanager
def distributed(device: str) -> Iterator[Rank]:
    """Join torchrun's process group for the block (nccl on CUDA, gloo on CPU), then leave it.

    On CUDA each rank takes the GPU of its LOCAL_RANK as its current device, so ``cuda`` means
    that GPU everywhere below. A single process joins nothing.
    """
    rank = rank_from_env()
    if rank.world_size == 1:
        yield rank
        return
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        if rank.local_rank >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {rank.local_rank} but only {torch.cuda.device_count()} GPU(s) here")
        torch.cuda.set_device(rank.local_rank)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def agree(value: str, what: str) -> None:
    """Refuse to go on unless every rank holds the same ``value`` (e.g. a digest of the params)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    if len(set(values)) > 1:
        differing = [r for r, v in enumerate(values) if v != values[0]]
        raise DeviceError(f"the ranks of this torchrun job disagree on {what} (ranks {differing} differ from rank 0)")


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks of a torchrun job (the values themselves alone)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()
