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

- ``initialise(conv, steps)``: anything beyond the zero init of the last conv (a spread that
  breaks the hypotheses' symmetry);
- ``hypotheses(prediction)``: (B, M, K, 2, Hg, Wg) px and their probabilities (B, M, Hg, Wg), for
  best-of-M scores (M = 1 for a single estimate); ``nll`` and ``inside``: the likelihood of a
  displacement and whether it lies in the region of a probability level, or None for a head
  without a density.

Training, evaluation and pictures read the prediction only through these. Heads:
:class:`PointHead` (one displacement), :class:`LaplaceHead` (a location and a scale),
:class:`HypothesesHead` (M fields and their probabilities).

Letters: B batch, K predicted steps, M hypotheses, C raw channels, Hg x Wg grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

LOSSES = ("epe", "l1")


class MotionHead(Protocol):
    """What a head provides (see the module docstring)."""

    name: str
    selects_by: str  # the history key whose lowest value picks the kept epoch

    def channels(self, steps: int) -> int: ...

    def detached_from(self, steps: int) -> int | None:
        """The first raw channel whose loss does not reach the net's features (None: every one does)."""
        ...

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> Any: ...

    def point(self, prediction: Any) -> torch.Tensor: ...
    def point_decoder(self, steps: int) -> nn.Module: ...
    def initialise(self, conv: nn.Conv2d, steps: int) -> None: ...
    def hypotheses(self, prediction: Any) -> tuple[torch.Tensor, torch.Tensor]: ...
    def nll(self, prediction: Any, target: torch.Tensor) -> torch.Tensor | None: ...
    def inside(self, prediction: Any, target: torch.Tensor, level: float) -> torch.Tensor | None: ...

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
    selects_by = "val/epe_px"  # the best epoch: the lowest validation EPE

    def detached_from(self, steps: int) -> int | None:
        return None

    def channels(self, steps: int) -> int:
        return 2 * steps

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> torch.Tensor:
        """raw (B, 2K, Hg, Wg) -> (B, K, 2, Hg, Wg) px."""
        return decode_point(raw, steps, disp_scale)

    def point(self, prediction: torch.Tensor) -> torch.Tensor:
        return prediction

    def point_decoder(self, steps: int) -> nn.Module:
        return PointDecoder(steps)

    def initialise(self, conv: nn.Conv2d, steps: int) -> None:
        """Nothing beyond the model's zero init: the untrained net predicts zero motion."""

    def hypotheses(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One hypothesis, certain: (B, 1, K, 2, Hg, Wg), probabilities (B, 1, Hg, Wg)."""
        return prediction[:, None], prediction.new_ones((prediction.shape[0], 1, *prediction.shape[3:]))

    def nll(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        return None  # a point has no likelihood

    def inside(self, prediction: torch.Tensor, target: torch.Tensor, level: float) -> torch.Tensor | None:
        return None

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
        """raw (B, 2K[ + more], Hg, Wg) -> (B, K, 2, Hg, Wg) px: the first 2K channels (a Laplace head's locations)."""
        return decode_point(raw[:, : 2 * self.steps], self.steps, disp_scale)


def point_error(diff: torch.Tensor, kind: str, dim: int = 2) -> torch.Tensor:
    """``train.loss`` of each point: differences with their (x, y) along ``dim`` -> that dim gone.
    ``epe``: sqrt(dx^2 + dy^2) (an eps keeps the gradient finite at 0); ``l1``: |dx| + |dy|."""
    if kind == "epe":
        return torch.sqrt((diff * diff).sum(dim=dim) + 1e-8)
    if kind == "l1":
        return diff.abs().sum(dim=dim)
    raise ValueError(f"train.loss: unknown loss {kind!r} ({' or '.join(LOSSES)})")


def masked_mean(diff: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean per-point loss of differences diff (B, K, 2, Hg, Wg) over the points of mask (B, K, Hg, Wg)."""
    return (point_error(diff, kind) * mask).sum() / mask.sum().clamp(min=1)


# --- laplace: a location and a scale per pixel and step ------------------------------------

LOG_SCALE_BOUND = 7.0  # the scale is disp_scale * exp(7 tanh(gain raw / 7)): bounded, and disp_scale at init
# the log-scale is SCALE_GAIN x its raw channels: only the 1x1 motion conv learns the scale (it reads
# the features detached), and Adam moves each weight about lr a step, too slow by itself to carry the
# log-scale the ~3 nats from the training RMS to the residuals' scale in a few hundred steps (on the
# sample: 99.99% of true displacements inside the 80% region with gain 1, 87% with 8)
SCALE_GAIN = 8.0


def laplace_radius(level: float) -> float:
    """s with P((|dx| + |dy|) / b <= s) = ``level`` for independent Laplace(0, b) axes: the sum of
    two unit exponentials is Gamma(2, 1), whose CDF 1 - exp(-s) (1 + s) is solved by bisection."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"a coverage level is in (0, 1), got {level}")
    lo, hi = 0.0, 64.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 1.0 - math.exp(-mid) * (1.0 + mid) < level else (lo, mid)
    return 0.5 * (lo + hi)


class LaplaceHead:
    """Per pixel and step a location (x, y) and one scale b, independent Laplace axes: the model says
    where it does not know. The location is trained as the point head's (``train.loss``), the scale
    by the negative log-likelihood of the tracker's displacement given it, 2 log(2b) + (|dx - x| +
    |dy - y|) / b nats per point (:meth:`loss` says why the split), read from the net's features
    detached (:meth:`detached_from`: the scale's loss trains its own weights of the motion conv,
    never the features the location needs). The location is the point estimate; the region of
    level p is the L1 ball of radius :func:`laplace_radius` (p) b around it (calibration). Raw
    channels: 2K locations, then K log-scales (x SCALE_GAIN); zero init gives zero motion and b =
    disp_scale (the training RMS)."""

    name = "laplace"
    # the best epoch: its own validation loss, location and scale (by EPE alone, where nothing beats
    # zero, the untrained epoch 1 is kept, and with it an untrained scale: 99% coverage on real clips)
    selects_by = "val/loss_px"

    def channels(self, steps: int) -> int:
        return 3 * steps

    def detached_from(self, steps: int) -> int | None:
        """The log-scales (channels 2K on) read the features detached: the locations alone shape them."""
        return 2 * steps

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """raw (B, 3K, Hg, Wg) -> {"loc": (B, K, 2, Hg, Wg) px, "scale": (B, K, Hg, Wg) px}."""
        loc = decode_point(raw[:, : 2 * steps], steps, disp_scale)
        log_scale = LOG_SCALE_BOUND * torch.tanh(SCALE_GAIN * raw[:, 2 * steps :].float() / LOG_SCALE_BOUND)
        return {"loc": loc, "scale": disp_scale * torch.exp(log_scale)}

    def point(self, prediction: dict[str, torch.Tensor]) -> torch.Tensor:
        return prediction["loc"]

    def point_decoder(self, steps: int) -> nn.Module:
        return PointDecoder(steps)  # the locations are the first 2K channels, decoded as the point head's

    def initialise(self, conv: nn.Conv2d, steps: int) -> None:
        """Nothing beyond zero: zero motion, unit log-scale offset."""

    def hypotheses(self, prediction: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return PointHead().hypotheses(prediction["loc"])

    def nll(self, prediction: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """(B, K, Hg, Wg) nats per point of ``target`` (B, K, 2, Hg, Wg) px."""
        b = prediction["scale"].float()
        return 2.0 * torch.log(2.0 * b) + point_error(target - prediction["loc"].float(), "l1") / b

    def inside(self, prediction: dict[str, torch.Tensor], target: torch.Tensor, level: float) -> torch.Tensor:
        """(B, K, Hg, Wg) bool: ``target`` inside the region of probability ``level``."""
        l1 = point_error(target - prediction["loc"].float(), "l1")
        return l1 <= laplace_radius(level) * prediction["scale"].float()

    def loss(
        self,
        prediction: dict[str, torch.Tensor],
        target: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The location's ``kind`` loss as the point head's, plus the mean NLL of the scale given the
        location (detached there) over the visible points (mask (B, K, Hg, Wg)). With the NLL alone
        the net can buy a low loss on hard points with a large scale instead of a better location (on
        the sample: 1.15 px EPE against the point head's 0.64); split so, but with the scale's
        gradient reaching the features, 0.74; with the features detached for the scale as well
        (:class:`~densemotion.model.MotionConv`), 0.64: the location learns what the point head
        learns and the scale is the maximum-likelihood one for its residuals."""
        located = PointHead().loss(prediction["loc"], target, mask, kind, scale)
        nll = self.nll({"loc": prediction["loc"].detach(), "scale": prediction["scale"]}, target)
        return located + (nll * mask).sum() / mask.sum().clamp(min=1)


# --- hypotheses: M motion fields and their probabilities ------------------------------------

HYPOTHESIS_SPREAD = 0.5  # raw units (x disp_scale, the training RMS, px): the initial hypotheses' circle
WTA_EPSILON = 0.05  # relaxed winner-takes-all: the losers share this weight
CE_WEIGHT = 0.5  # weight of the cross-entropy that teaches the probabilities which hypothesis wins


class HypothesesHead:
    """M motion fields per pixel (each K steps) and their probabilities: several futures where a
    still does not say which. Trained by relaxed winner-takes-all on ``train.loss`` (each point's
    best hypothesis gets weight 1 - eps, the others eps / (M - 1); Rupprecht et al. 2017) plus a
    cross-entropy teaching the probabilities which one wins. Raw channels: M x 2K motions, then M
    logits. The point estimate is the probability-weighted mean; zero init with the hypotheses'
    biases set around a circle (:data:`HYPOTHESIS_SPREAD`) breaks their symmetry and keeps that
    mean zero: the untrained net is still the zero-motion baseline."""

    name = "hypotheses"
    selects_by = "val/loss_px"  # its point estimate (a mean of futures) may by design not beat zero

    def __init__(self, count: int = 4) -> None:
        if count < 2:
            raise ValueError(f"model.hypotheses: at least 2, got {count}")
        self.count = count

    def channels(self, steps: int) -> int:
        return self.count * 2 * steps + self.count

    def detached_from(self, steps: int) -> int | None:
        return None

    def decode(self, raw: torch.Tensor, steps: int, disp_scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """raw (B, M 2K + M, Hg, Wg) -> {"hyps": (B, M, K, 2, Hg, Wg) px, "logits": (B, M, Hg, Wg)}."""
        hyps, logits = decode_hypotheses(raw, steps, self.count, disp_scale)
        return {"hyps": hyps, "logits": logits}

    def point(self, prediction: dict[str, torch.Tensor]) -> torch.Tensor:
        return weighted_mean(prediction["hyps"], prediction["logits"])

    def point_decoder(self, steps: int) -> nn.Module:
        return HypothesesPointDecoder(steps, self.count)

    def initialise(self, conv: nn.Conv2d, steps: int) -> None:
        """The hypotheses' biases at every step: with M >= 3 the first at zero (it wins the still
        points, which are most of a video, exactly) and the others HYPOTHESIS_SPREAD away around a
        circle, (cos, sin) of 2 pi j / (M - 1), where each wins the movers of its direction; with
        M = 2 both on the circle. Their mean is zero either way."""
        assert conv.bias is not None
        ring = list(range(self.count)) if self.count == 2 else list(range(1, self.count))
        with torch.no_grad():
            for j, m in enumerate(ring):
                angle = 2 * math.pi * j / len(ring)
                for k in range(steps):
                    conv.bias[(m * steps + k) * 2] = HYPOTHESIS_SPREAD * math.cos(angle)
                    conv.bias[(m * steps + k) * 2 + 1] = HYPOTHESIS_SPREAD * math.sin(angle)

    def hypotheses(self, prediction: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return prediction["hyps"], torch.softmax(prediction["logits"].float(), dim=1)

    def nll(self, prediction: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor | None:
        return None  # hypotheses without scales have no density

    def inside(self, prediction: dict[str, torch.Tensor], target: torch.Tensor, level: float) -> torch.Tensor | None:
        return None

    def loss(
        self,
        prediction: dict[str, torch.Tensor],
        target: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Relaxed WTA over the points with a visible step, plus CE_WEIGHT x the winner's cross-entropy."""
        hyps, logits = prediction["hyps"].float(), prediction["logits"].float()  # (B, M, K, 2, H, W), (B, M, H, W)
        diff = hyps - target[:, None]
        if scale is not None:
            diff = diff * scale[:, None, None, :, None, None]
        per_step = point_error(diff, kind, dim=3)  # (B, M, K, H, W)
        weight = mask[:, None].float()  # (B, 1, K, H, W)
        seen = mask.sum(dim=1)  # (B, H, W) visible steps per point
        per_point = (per_step * weight).sum(dim=2) / seen[:, None].clamp(min=1)  # (B, M, H, W)
        winner = per_point.detach().argmin(dim=1)  # (B, H, W)
        m = self.count
        share = torch.full_like(per_point, WTA_EPSILON / (m - 1))
        share.scatter_(1, winner[:, None], 1.0 - WTA_EPSILON)
        points = (seen > 0).float()
        wta = ((share * per_point).sum(dim=1) * points).sum() / points.sum().clamp(min=1)
        ce = torch.nn.functional.cross_entropy(logits, winner, reduction="none")  # (B, H, W)
        return wta + CE_WEIGHT * (ce * points).sum() / points.sum().clamp(min=1)


def decode_hypotheses(
    raw: torch.Tensor, steps: int, count: int, disp_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hypotheses head's decoding: raw (B, M 2K + M, Hg, Wg) -> hyps (B, M, K, 2, Hg, Wg) px,
    logits (B, M, Hg, Wg). Plain tensor code, so that its point decoder scripts and exports."""
    b, h, w = raw.shape[0], raw.shape[2], raw.shape[3]
    n = count * 2 * steps
    return (raw[:, :n] * disp_scale).view(b, count, steps, 2, h, w), raw[:, n:]


def weighted_mean(hyps: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_m softmax(logits)_m hyps_m: (B, M, K, 2, H, W), (B, M, H, W) -> (B, K, 2, H, W)."""
    probs = torch.softmax(logits.float(), dim=1).to(hyps.dtype)
    return (hyps * probs[:, :, None, None]).sum(dim=1)


class HypothesesPointDecoder(nn.Module):
    """The hypotheses head's point estimate from raw output, for TorchScript and ONNX."""

    def __init__(self, steps: int, count: int) -> None:
        super().__init__()
        self.steps = steps
        self.count = count

    def forward(self, raw: torch.Tensor, disp_scale: torch.Tensor) -> torch.Tensor:
        """raw (B, M 2K + M, Hg, Wg) -> (B, K, 2, Hg, Wg) px."""
        hyps, logits = decode_hypotheses(raw, self.steps, self.count, disp_scale)
        return weighted_mean(hyps, logits)


HEAD_NAMES = ("point", "laplace", "hypotheses")


def get_head(name: str = "point", hypotheses: int = 4) -> MotionHead:
    """The head called ``name`` (``hypotheses``: M, for the hypotheses head)."""
    if name == "point":
        return PointHead()
    if name == "laplace":
        return LaplaceHead()
    if name == "hypotheses":
        return HypothesesHead(hypotheses)
    raise ValueError(f"unknown motion head {name!r}; available: {', '.join(HEAD_NAMES)}")


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
