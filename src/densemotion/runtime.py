"""Where torch work runs: the device named in params (cpu, cuda, cuda:N or auto).

Kept apart from the trackers and the training loop so that every stage that uses torch picks
its device the same way, and none of them imports another's code for it.
"""

from __future__ import annotations


class DeviceError(ValueError):
    """A device that is not available here."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device
