"""The published PIPs network (Harley et al., ECCV 2022); what it matches: ``docs/pips.md``.

Module names and parameter shapes follow the published checkpoint key for key (200 tensors),
so ``model-000200000.pth`` loads with ``strict=True``. The network works on one clip at a time
(no batch dimension): the engine batches points, never clips.

Shape legend: S frames of the window (8), N points, C feature channels (128),
H8 x W8 the feature map (input size // stride), D mixer width (512).
Coordinates inside the refinement are in feature-map units (pixels / stride).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densemotion.runtime import autocast_to
from densemotion.tracking.pips.corr import CorrLookup, FeaturePyramid, SampledLookup, VolumeLookup

WINDOW = 8  # S: frames per window; the weights are made for it
LATENT = 128  # C: track feature channels
MIXER_DIM = 512
MIXER_DEPTH = 12
EMBED_CHANNELS = 64  # sin/cos channels per embedded value (x, y, t)
CORR_CHANNELS = 4 * 49  # 4 pyramid levels x 7 x 7 window


class _ResidualBlock(nn.Module):
    """conv-norm-relu twice; a strided 1x1 conv + norm on the skip path when downsampling."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1 = nn.InstanceNorm2d(planes)
        self.norm2 = nn.InstanceNorm2d(planes)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), nn.InstanceNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


def _layer(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_ResidualBlock(in_planes, planes, stride), _ResidualBlock(planes, planes, 1))


class Encoder(nn.Module):
    """``fnet``: an image (B, 3, H, W) in [-1, 1] -> features (B, 128, H // stride, W // stride)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(64)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 96, 2)
        self.layer3 = _layer(96, 128, 2)
        self.layer4 = _layer(128, 128, 2)
        self.conv2 = nn.Conv2d(64 + 96 + 128 + 128, 2 * LATENT, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(2 * LATENT)
        self.conv3 = nn.Conv2d(2 * LATENT, LATENT, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(self.norm1(self.conv1(x)))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(F.interpolate(x, size, mode="bilinear", align_corners=True))
        x = F.relu(self.norm2(self.conv2(torch.cat(outs, dim=1))))
        return self.conv3(x)


class _PreNormResidual(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(self.norm(x))


def _feed_forward(dense: Callable[[int, int], nn.Module], dim: int, hidden: int) -> nn.Sequential:
    # indices 0 and 3 carry weights (keys fn.0, fn.3); 2 and 4 were dropout (p=0) when trained
    return nn.Sequential(dense(dim, hidden), nn.GELU(), nn.Identity(), dense(hidden, dim), nn.Identity())


def _token_conv(in_ch: int, out_ch: int) -> nn.Conv1d:
    return nn.Conv1d(in_ch, out_ch, kernel_size=1)


class _MeanOverTokens(nn.Module):
    def forward(self, x: Tensor) -> Tensor:  # (S, N, D) -> (N, D)
        return x.mean(dim=0)


class DeltaBlock(nn.Module):
    """MLP-Mixer over the S frames of each track -> per-frame coordinate and feature updates."""

    def __init__(self, S: int = WINDOW) -> None:
        super().__init__()
        self.S = S
        in_dim = LATENT + CORR_CHANNELS + 3 * EMBED_CHANNELS + 3
        blocks = [
            nn.Sequential(
                _PreNormResidual(MIXER_DIM, _feed_forward(_token_conv, S, 4 * S)),
                _PreNormResidual(MIXER_DIM, _feed_forward(nn.Linear, MIXER_DIM, 4 * MIXER_DIM)),
            )
            for _ in range(MIXER_DEPTH)
        ]
        self.to_delta = nn.Sequential(
            nn.Linear(in_dim, MIXER_DIM),
            *blocks,
            nn.LayerNorm(MIXER_DIM),
            _MeanOverTokens(),
            nn.Linear(MIXER_DIM, S * (LATENT + 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (S, N, 519) -> (S, N, 130): 2 coordinate + 128 feature update channels per frame.

        Works token-major (S, N, D) so that token mixing is one matrix product over all tracks,
        (4S, S) @ (S, N * D), instead of N tiny 1x1 convolutions; same numbers as the modules.
        Without autograd, GELUs and residual sums work in place (same numbers, fewer large
        allocations, each of which costs page faults on the CPU).
        """
        S, N = x.shape[:2]
        seq: Any = self.to_delta  # indexed by position: typed as Module by torch
        inplace = not torch.is_grad_enabled()
        x = seq[0](x)  # (S, N, D)
        for block in seq[1 : 1 + MIXER_DEPTH]:
            tokens, channels = block[0], block[1]
            x = _add(x, _mix_tokens(tokens.fn, tokens.norm(x), inplace), inplace)
            x = _add(x, _mix_channels(channels.fn, channels.norm(x), inplace), inplace)
        x = seq[1 + MIXER_DEPTH](x).mean(dim=0)  # LayerNorm, mean over the S tokens: (N, D)
        return seq[3 + MIXER_DEPTH](x).view(N, S, LATENT + 2).transpose(0, 1)


def _add(x: Tensor, y: Tensor, inplace: bool) -> Tensor:
    return x.add_(y) if inplace else x + y


def _gelu(h: Tensor, inplace: bool) -> Tensor:
    return torch.ops.aten.gelu_(h) if inplace else F.gelu(h)


def _mix_tokens(ff: Any, y: Tensor, inplace: bool = False) -> Tensor:
    """The token feed-forward (1x1 Conv1d S -> 4S, GELU, 4S -> S) applied to y (S, N, D)."""
    S, N, D = y.shape
    conv1, conv2 = ff[0], ff[3]
    h = torch.addmm(conv1.bias[:, None], conv1.weight[:, :, 0], y.reshape(S, N * D))  # (4S, N * D)
    h = torch.addmm(conv2.bias[:, None], conv2.weight[:, :, 0], _gelu(h, inplace))  # (S, N * D)
    return h.view(S, N, D)


def _mix_channels(ff: Any, y: Tensor, inplace: bool = False) -> Tensor:
    """The channel feed-forward (Linear D -> 4D, GELU, 4D -> D) applied to y (S, N, D)."""
    return ff[3](_gelu(ff[0](y), inplace))


def sincos_embedding(v: Tensor, channels: int = EMBED_CHANNELS) -> Tensor:
    """v (..., 3) -> (..., 3 * channels + 3): per value sin in even, cos in odd channels, then v."""
    # frequencies k * 1000 / channels, k = 0, 2, ...: exact in float32 as in the published code
    freqs = (torch.arange(0, channels, 2, dtype=torch.float32, device=v.device) * (1000.0 / channels)).to(v.dtype)
    phase = v.unsqueeze(-1) * freqs  # (..., 3, channels / 2)
    pe = torch.stack([torch.sin(phase), torch.cos(phase)], dim=-1)  # (..., 3, channels / 2, 2)
    return torch.cat([pe.flatten(-3), v], dim=-1)


def time_values(S: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """(S,) frame times 0..S: float32 numbers at any precision, as in the published code."""
    return torch.linspace(0, S, S, dtype=torch.float32, device=device).to(dtype)


@dataclass
class Mixer:
    """The modules of an iteration that may run in a lower precision, and that precision.

    ``dtype`` None runs them as they are; otherwise they run under autocast to ``dtype``
    (``precision.lower_mixer`` gives copies whose matmul weights are cast once, not per call).
    """

    delta_block: DeltaBlock
    ffeat_updater: nn.Module
    dtype: torch.dtype | None = None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return autocast_to(device, self.dtype)


@dataclass
class PipsOutput:
    trajs: list[Tensor]  # per iteration (S, N, 2) pixels of the input frames
    vis_logits: Tensor  # (S, N) after the last iteration
    feat0: Tensor  # (N, C) the frame-0 track feature used (given or sampled): chaining passes it on
    score_maps: list[Tensor] = field(default_factory=list)  # naive mode only: per iteration (S, N, H8, W8)


class PipsNet(nn.Module):
    """The published PIPs model. ``stride`` (4 or 8) sets the feature resolution; weights do not depend on it."""

    def __init__(self, stride: int = 4, S: int = WINDOW) -> None:
        super().__init__()
        self.S = S
        self.stride = stride
        self.fnet = Encoder(stride)
        self.delta_block = DeltaBlock(S)
        self.norm = nn.GroupNorm(1, LATENT)
        self.ffeat_updater = nn.Sequential(nn.Linear(LATENT, LATENT), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(LATENT, 1))

    def encode(self, rgbs: Tensor) -> Tensor:
        """rgbs (S, 3, H, W) floats in [0, 255] -> feature maps (S, C, H // stride, W // stride)."""
        return self.fnet(2 * (rgbs / 255.0) - 1.0)

    def refine(
        self,
        lookup: CorrLookup,
        xys: Tensor,
        iters: int,
        coords_init: Tensor | None = None,
        feat_init: Tensor | None = None,
        mixer: Mixer | None = None,
    ) -> PipsOutput:
        """Iteratively track ``xys`` (N, 2) pixels of frame 0 through the window behind ``lookup``.

        coords_init: optional (S, N, 2) pixels to start from (default: zero velocity at xys).
        feat_init: optional (N, C) frame-0 track feature (default: sampled at the start point).
        mixer: the Mixer and feature updater to use, maybe in a lower precision (default: this
        model's own, in its dtype). The lookup, norms, coordinates and visibility stay in the
        dtype of ``xys``.
        """
        S, st = self.S, self.stride
        mix = Mixer(self.delta_block, self.ffeat_updater) if mixer is None else mixer
        if coords_init is None:
            coords = (xys / st).unsqueeze(0).repeat(S, 1, 1)  # (S, N, 2) feature units
        else:
            coords = coords_init / st
        start = coords[0].clone()  # (N, 2) frame 0 stays at the query
        feat0 = lookup.frame0_feature(start) if feat_init is None else feat_init
        feats = feat0.unsqueeze(0).repeat(S, 1, 1)  # (S, N, C)
        times = time_values(S, coords.dtype, coords.device).view(S, 1, 1).expand(S, coords.shape[1], 1)
        out = PipsOutput(trajs=[], vis_logits=xys.new_empty(0), feat0=feat0)
        for _ in range(iters):
            corr = lookup(feats, coords)  # (S, N, 196)
            motion = torch.cat([coords - coords[:1], times], dim=2)  # (S, N, 3)
            x = torch.cat([feats, corr, sincos_embedding(motion)], dim=2)  # (S, N, 519)
            with mix.autocast(x.device):
                delta = mix.delta_block(x).to(x.dtype)  # (S, N, 130)
            normed = self.norm(delta[..., 2:].reshape(-1, LATENT))
            with mix.autocast(x.device):
                upd = mix.ffeat_updater(normed)
            feats = feats + upd.view(feats.shape).to(feats.dtype)
            coords = coords + delta[..., :2].to(coords.dtype)
            coords[0] = start
            out.trajs.append(coords * st)
        out.vis_logits = self.vis_predictor(feats).squeeze(-1)  # (S, N)
        out.score_maps = lookup.score_maps
        return out

    def forward(
        self,
        rgbs: Tensor,
        xys: Tensor,
        iters: int = 6,
        coords_init: Tensor | None = None,
        feat_init: Tensor | None = None,
        naive: bool = False,
    ) -> PipsOutput:
        """One window at once: rgbs (S, 3, H, W) in [0, 255], xys (N, 2) pixels of frame 0.

        ``naive=True`` works as the published forward pass does: full correlation volumes for
        all points at once plus the full-resolution score maps of every iteration (kept for
        the benchmark); otherwise the volume-free lookup of the dense engine.
        """
        fmaps = self.encode(rgbs)
        if naive:
            lookup: CorrLookup = VolumeLookup(fmaps, score_maps=True)
        else:
            lookup = SampledLookup(FeaturePyramid(fmaps), list(range(self.S)))
        return self.refine(lookup, xys, iters, coords_init, feat_init)
