"""Motion heads: what the net's last layer means, how it is trained, and the motion it stands for.

A head owns the contract between the segmentation net and everything after it:

- ``channels(steps)``: how many output channels the net's last 1x1 conv has for K = ``steps``
  predicted steps (the model zero-initialises that conv, so an untrained net is zero motion);
- ``decode(raw, steps, disp_scale)``: the net's raw output ``(B, C, Hg, Wg)`` -> the head's
  prediction in tracking pixels (``disp_scale``: pixels per unit of raw output, set from the
  training data so the net works at unit scale);
- ``point(prediction)``: the one motion field ``(B, K, 2, Hg, Wg)`` px that scores, pictures and
  baselines compare (a point head's prediction itself; a distribution's mean or mode);
- ``point_decoder(steps)``: ``point(decode(raw, ...))`` as an ``nn.Module`` ``(raw, disp_scale)``
  that TorchScript and the ONNX exporter take (what a still's predictor runs and exports);
- ``loss(prediction, target, mask, kind, scale)``: the training loss over the visible points.

Training, evaluation and pictures read the prediction only through these, so a head that
predicts more (a scale per pixel, K hypotheses) is one class here plus its params. Today there is
one: :class:`PointHead`, one displacement per pixel and step.

Letters: B batch, K predicted steps, C raw channels, Hg x Wg grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

LOSSES = ("epe", "l1")


class MotionHead(Protocol):
    """What a head provides (see the module docstring)."""

    name: str

    def channels(self, steps: int) -> int: ...

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> Any: ...

    def point(self, prediction: Any) -> torch.Tensor: ...
    def point_decoder(self, steps: int) -> nn.Module: ...

    def loss(
        self, prediction: Any, target: torch.Tensor, mask: torch.Tensor, kind: str, scale: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class PointHead:
    """One (x, y) displacement per pixel and predicted step, trained by a masked EPE or L1.

    Loss ``kind`` (``train.loss``), over the visible points only:

    - ``epe``: mean end-point error, sqrt(dx^2 + dy^2), the metric itself. Like L1 it grows
      linearly with the error (robust to the tracker's outliers); unlike L1 it does not depend on
      the axes.
    - ``l1``: mean |dx| + |dy|.
    """

    name = "point"

    def channels(self, steps: int) -> int:
        return 2 * steps

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> torch.Tensor:
        """raw (B, 2K, Hg, Wg) -> (B, K, 2, Hg, Wg) px."""
        return decode_point(raw, steps, disp_scale)

    def point(self, prediction: torch.Tensor) -> torch.Tensor:
        return prediction

    def point_decoder(self, steps: int) -> nn.Module:
        return PointDecoder(steps)

    def loss(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean loss over visible points. prediction, target (B, K, 2, Hg, Wg) px; mask (B, K, Hg, Wg)
        bool; ``scale`` (B, 2) frame px per tracking px (x, y): the loss at frame scale, for the log."""
        diff = prediction.float() - target
        if scale is not None:
            diff = diff * scale[:, None, :, None, None]
        return masked_mean(diff, mask, kind)


def decode_point(raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> torch.Tensor:
    """The point head's decoding: raw (B, 2K, Hg, Wg) -> (B, K, 2, Hg, Wg) px."""
    b, h, w = raw.shape[0], raw.shape[2], raw.shape[3]
    return (raw * disp_scale).view(b, steps, 2, h, w)


class PointDecoder(nn.Module):
    """``point(decode(raw))`` of the point head as a module TorchScript and ONNX can export."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, raw: torch.Tensor, disp_scale: torch.Tensor) -> torch.Tensor:
        """raw (B, 2K, Hg, Wg) -> (B, K, 2, Hg, Wg) px."""
        return decode_point(raw, self.steps, disp_scale)


def masked_mean(diff: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean per-point loss of differences diff (B, K, 2, Hg, Wg) over the points of mask (B, K, Hg, Wg)."""
    if kind == "epe":
        per_point = torch.sqrt((diff * diff).sum(dim=2) + 1e-8)  # eps keeps the gradient finite at 0
    elif kind == "l1":
        per_point = diff.abs().sum(dim=2)
    else:
        raise ValueError(f"train.loss: unknown loss {kind!r} ({' or '.join(LOSSES)})")
    return (per_point * mask).sum() / mask.sum().clamp(min=1)


HEADS: dict[str, MotionHead] = {"point": PointHead()}


def get_head(name: str = "point") -> MotionHead:
    """The head called ``name``."""
    if name not in HEADS:
        raise ValueError(f"unknown motion head {name!r}; available: {', '.join(HEADS)}")
    return HEADS[name]


@dataclass(frozen=True)
class Criterion:
    """The training loss of a net's outputs: the head's loss on the main output, plus
    ``aux_weight`` times that on the auxiliary head's (``model.aux_loss``)."""

    head: MotionHead
    kind: str  # train.loss
    aux_weight: float  # train.aux_weight

    def __call__(
        self, out: dict[str, Any], target: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = self.head.loss(out["out"], target, mask, self.kind, scale)
        if "aux" in out:
            loss = loss + self.aux_weight * self.head.loss(out["aux"], target, mask, self.kind, scale)
        return loss
