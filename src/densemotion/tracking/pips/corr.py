"""Correlation lookups of PIPs: the published full volume, and an equivalent one that samples features.

For every track and frame, PIPs looks up the correlation of the track's feature with the frame's
feature map in a 7 x 7 window (offsets -3..3) around the track's position, at 4 pyramid levels.

- :class:`VolumeLookup` does it the published way: a full correlation volume (S, N, Hl, Wl)
  per level, sampled with ``grid_sample``; in naive mode it also builds the full-resolution
  score maps the published forward pass makes for its training loss. Memory grows with N x H x W.
- :class:`SampledLookup` gives the same numbers without any volume: the 7 x 7 window has integer
  offsets, so all 49 samples share one fractional position and are a bilinear interpolation of
  the 8 x 8 block of map locations around it; the correlation of the track feature with that
  block is 64 dot products. Memory per track does not depend on the frame size.

Shapes: N points, S frames of the window, C channels, T frames whose features are kept.
Coordinates are (x, y) in feature-map units of level 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CORR_DIVISOR = 11.313708305358887  # sqrt(128) as the float32 number the published code divides by
LEVELS = 4
RADIUS = 3
_BLOCK = 2 * RADIUS + 2  # 8: map locations per side that a 7-sample bilinear window touches
_PAD = _BLOCK  # zero border kept around each level: a clamped block is then exact or all zero


def build_pyramid(fmaps: Tensor) -> list[Tensor]:
    """(T, C, H, W) -> LEVELS maps; each next level is a 2 x 2 average pool (stride 2) of the one before."""
    levels = [fmaps]
    for _ in range(LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def sample_border(fmap_hwc: Tensor, xy: Tensor) -> Tensor:
    """Bilinear sample of a (H, W, C) map at xy (N, 2) -> (N, C), as the published track-feature sampler.

    Weights come from the unclamped floor and ceil; indices are clamped to the map, so points
    outside it replicate the border (no zero padding).
    """
    H, W = fmap_hwc.shape[:2]
    x, y = xy[:, 0], xy[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    xi0, xi1 = x0.clamp(0, W - 1).long(), x1.clamp(0, W - 1).long()
    yi0, yi1 = y0.clamp(0, H - 1).long(), y1.clamp(0, H - 1).long()
    w00 = ((x1 - x) * (y1 - y)).unsqueeze(1)
    w01 = ((x - x0) * (y1 - y)).unsqueeze(1)
    w10 = ((x1 - x) * (y - y0)).unsqueeze(1)
    w11 = ((x - x0) * (y - y0)).unsqueeze(1)
    return w00 * fmap_hwc[yi0, xi0] + w01 * fmap_hwc[yi0, xi1] + w10 * fmap_hwc[yi1, xi0] + w11 * fmap_hwc[yi1, xi1]


class CorrLookup:
    """What the refinement needs from the window's feature maps."""

    score_maps: list[Tensor]

    def frame0_feature(self, xy: Tensor) -> Tensor:
        """xy (N, 2) in frame 0 -> track features (N, C)."""
        raise NotImplementedError

    def __call__(self, feats: Tensor, coords: Tensor) -> Tensor:
        """feats (S, N, C) per-frame track features, coords (S, N, 2) -> correlations (S, N, 196)."""
        raise NotImplementedError


class VolumeLookup(CorrLookup):
    """The published lookup over full correlation volumes (all points at once in naive mode).

    fmaps: (S, C, H8, W8) the window's feature maps. With ``score_maps`` each call also builds
    the (S, N, H8, W8) sum of all levels' volumes resized to level 0, kept for every iteration,
    as the published forward pass does for its training loss.
    """

    def __init__(self, fmaps: Tensor, score_maps: bool = False) -> None:
        self.pyramid = build_pyramid(fmaps)
        self.keep_score_maps = score_maps
        self.score_maps = []
        self.frame0 = fmaps[0].permute(1, 2, 0)  # (H8, W8, C)

    def frame0_feature(self, xy: Tensor) -> Tensor:
        return sample_border(self.frame0, xy)

    def __call__(self, feats: Tensor, coords: Tensor) -> Tensor:
        S, N, C = feats.shape
        f, c = feats, coords
        offsets = torch.arange(-RADIUS, RADIUS + 1, dtype=coords.dtype, device=coords.device)  # (7,)
        H8, W8 = self.pyramid[0].shape[-2:]
        outs, score = [], None
        for i, fmap in enumerate(self.pyramid):
            Hl, Wl = fmap.shape[-2:]
            vol = torch.matmul(f, fmap.reshape(S, C, Hl * Wl)) / CORR_DIVISOR  # (S, N, Hl * Wl)
            vol = vol.view(S * N, 1, Hl, Wl)
            if self.keep_score_maps:
                up = F.interpolate(vol.view(S, N, Hl, Wl), (H8, W8), mode="bilinear", align_corners=True)
                score = up if score is None else score + up
            pos = c / 2**i
            gx = (pos[..., 0, None, None] + offsets[:, None]).expand(S, N, 7, 7)  # x offset on dim 2
            gy = (pos[..., 1, None, None] + offsets[None, :]).expand(S, N, 7, 7)  # y offset on dim 3
            grid = torch.stack([2 * gx / (Wl - 1) - 1, 2 * gy / (Hl - 1) - 1], dim=-1).view(S * N, 7, 7, 2)
            sampled = F.grid_sample(vol, grid.to(vol.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
            outs.append(sampled.view(S, N, 49))
        if score is not None:
            self.score_maps.append(score)
        return torch.cat(outs, dim=-1)  # (S, N, 196)


class FeaturePyramid:
    """Feature pyramids of T frames, channels-last with a zero border, for :class:`SampledLookup`.

    Built once per clip (or window) and shared by every chunk of points and every window that
    uses those frames. Level l is kept as a flat (T * Hp * Wp, C) table, Hp = Hl + 2 * pad, in
    the dtype of ``fmaps`` (bf16 in bf16 mode: the lookup's dot products are then bf16).
    """

    def __init__(self, fmaps: Tensor) -> None:
        self.num_frames, self.channels = fmaps.shape[:2]
        self.size = tuple(fmaps.shape[-2:])  # (H8, W8) of level 0
        self.tables: list[tuple[Tensor, int, int]] = []
        for fmap in build_pyramid(fmaps):
            T, C, Hl, Wl = fmap.shape
            padded = fmap.new_zeros(T, Hl + 2 * _PAD, Wl + 2 * _PAD, C)
            padded[:, _PAD : _PAD + Hl, _PAD : _PAD + Wl] = fmap.permute(0, 2, 3, 1)
            self.tables.append((padded.view(-1, C), Hl, Wl))

    def frame_map(self, t: int) -> Tensor:
        """Level-0 map of frame t as a (H8, W8, C) view."""
        table, H, W = self.tables[0]
        padded = table.view(self.num_frames, H + 2 * _PAD, W + 2 * _PAD, self.channels)
        return padded[t, _PAD : _PAD + H, _PAD : _PAD + W]


class SampledLookup(CorrLookup):
    """The lookup by sampling features of a :class:`FeaturePyramid`: no correlation volume.

    frame_ids: the S frames of the pyramid that make the window (a frame may repeat: padding).
    """

    def __init__(self, pyramid: FeaturePyramid, frame_ids: list[int]) -> None:
        self.pyramid = pyramid
        self.frame_ids = frame_ids
        self.score_maps = []

    def frame0_feature(self, xy: Tensor) -> Tensor:
        return sample_border(self.pyramid.frame_map(self.frame_ids[0]), xy)

    def __call__(self, feats: Tensor, coords: Tensor) -> Tensor:
        S, N, C = feats.shape
        device = coords.device
        fids = torch.as_tensor(self.frame_ids, device=device).view(S, 1)
        outs = []
        for i, (table, Hl, Wl) in enumerate(self.pyramid.tables):
            Hp, Wp = Hl + 2 * _PAD, Wl + 2 * _PAD
            pos = torch.nan_to_num(coords / 2**i)  # (S, N, 2)
            floor = torch.floor(pos)
            frac = (pos - floor).unsqueeze(-1).unsqueeze(-1)  # (S, N, 2, 1, 1)
            # top-left of the 8 x 8 block in padded indices; far-off blocks clamp onto the zero border
            bx = (floor[..., 0] - RADIUS).clamp(-_PAD, Wl).long() + _PAD
            by = (floor[..., 1] - RADIUS).clamp(-_PAD, Hl).long() + _PAD
            corner = (fids * Hp + by) * Wp + bx  # (S, N) flat index of the block's top-left
            # each block row is 8 neighbouring locations, i.e. 8 * C contiguous numbers of the table
            rows = table.as_strided((table.shape[0] - _BLOCK + 1, _BLOCK * C), (C, 1))
            f = feats.reshape(S * N, C, 1).to(table.dtype)  # a bf16 pyramid: bf16 dot products
            dots = (
                torch.stack(  # one block row at a time: transient memory S * N * 8 * C
                    [torch.bmm(rows[(corner + r * Wp).view(-1)].view(S * N, _BLOCK, C), f) for r in range(_BLOCK)],
                    dim=1,
                )
                .view(S, N, _BLOCK, _BLOCK)
                .to(feats.dtype)
                / CORR_DIVISOR
            )  # (S, N, 8 y, 8 x)
            fx, fy = frac[:, :, 0], frac[:, :, 1]
            upper = dots[..., :-1, :-1] * (1 - fx) + dots[..., :-1, 1:] * fx  # (S, N, 7 y, 7 x)
            lower = dots[..., 1:, :-1] * (1 - fx) + dots[..., 1:, 1:] * fx
            window = upper * (1 - fy) + lower * fy
            outs.append(window.transpose(-1, -2).reshape(S, N, 49))  # x offset slowest, y fastest
        return torch.cat(outs, dim=-1)
