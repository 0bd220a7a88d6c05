"""Which parts of PIPs run in a lower precision (``trajectories.pips.autocast``), per device.

Measured on a 2-core AMD EPYC with AVX-512 BF16 (docs/pips.md, "Precision"): in bf16 the
MLP-Mixer's matmuls run ~3.5x faster and the encoder ~2x; on a CPU without native bf16 the same
bf16 ops fall back to reference kernels (encoder convolutions ~65x, Mixer matmuls 5-14x slower
than float32: what made the old "75x slower" of docs/pips.md). So:

- the encoder, the Mixer and the feature updater's linear layer run under autocast, and the
  feature pyramid is kept in that dtype (the lookup's gathers and dot products: ~9% of a bf16
  iteration saved, half the pyramid's memory, no measurable change in the error);
- the lookup's bilinear weights, the group norm, coordinates and visibility stay in the run's
  dtype;
- ``auto`` picks bf16 where the hardware multiplies bf16 natively (a CUDA GPU that supports it;
  a CPU with AVX512_BF16 or AMX, detected from its flags, not assumed) and float32 otherwise;
- fp16 is a GPU mode: asked for on a CPU it runs float32, with a warning; bf16 asked for on a
  CPU without native bf16 runs as asked, with a warning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from densemotion.runtime import Autocast, autocast_dtype
from densemotion.tracking.pips.model import Mixer, PipsNet


@dataclass(frozen=True)
class Precision:
    """Autocast dtypes for the two parts that may run lower (None: the model's own dtype)."""

    mixer: torch.dtype | None = None  # the MLP-Mixer and the feature updater's linear layer
    encoder: torch.dtype | None = None  # the feature encoder
    lookup: torch.dtype | None = None  # the feature pyramid the correlation lookup reads

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.mixer]


def resolve_precision(autocast: Autocast, device: str | torch.device) -> Precision:
    """``trajectories.pips.autocast`` on ``device`` -> what runs in which dtype."""
    dtype = autocast_dtype(autocast, str(device), "trajectories.pips.autocast")
    return Precision() if dtype is None else Precision(mixer=dtype, encoder=dtype, lookup=dtype)


def lower_mixer(net: PipsNet, dtype: torch.dtype | None) -> Mixer:
    """The net's Mixer and feature updater for ``dtype``: copies whose linear and 1x1 conv weights
    are cast once (autocast alone would cast ~25M weights again on every call); norms keep
    their own dtype (the kernels take bf16 input with float32 weights)."""
    if dtype is None:
        return Mixer(net.delta_block, net.ffeat_updater)
    delta_block, ffeat_updater = copy.deepcopy(net.delta_block), copy.deepcopy(net.ffeat_updater)
    for module in (*delta_block.modules(), *ffeat_updater.modules()):
        if isinstance(module, nn.Linear | nn.Conv1d):
            module.to(dtype)
    return Mixer(delta_block, ffeat_updater, dtype)
