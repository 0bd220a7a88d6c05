"""All-pairs correlation between a window's anchor features and each frame's, sampled near a flow.

The pyramid is built once per window; each refinement samples (2r+1)^2 values per level around
where the current flow points. Follows the published ``CorrBlock`` (including its sample order:
the x offset varies along the slower axis of each (2r+1) x (2r+1) patch).

Shape legend: N = B*S anchor/frame pairs, C feature channels, H x W the feature map (1/8 of the
padded frame), P = H * W, L pyramid levels, r radius, K = L (2r+1)^2 sampled values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class CorrPyramid:
    """Correlation volumes of every anchor pixel with every pixel of the frame, at L scales."""

    def __init__(self, fmap1: Tensor, fmap2: Tensor, levels: int, radius: int) -> None:
        """fmap1, fmap2 (N, C, H, W): anchor features repeated per frame, and the frames' features."""
        self.levels, self.radius = levels, radius
        n, c, h, w = fmap1.shape
        query = fmap1.reshape(n, c, h * w).transpose(1, 2)  # (N, P, C)
        self.volumes: list[Tensor] = []  # level l: (N * P, 1, H / 2^l, W / 2^l)
        for level in range(levels):
            if level > 0:
                fmap2 = F.interpolate(fmap2, scale_factor=0.5, mode="area")  # (N, C, H/2^l, W/2^l)
            h2, w2 = fmap2.shape[-2:]
            corr = torch.matmul(query, fmap2.reshape(n, c, h2 * w2)) / math.sqrt(c)  # (N, P, P_l)
            self.volumes.append(corr.reshape(n * h * w, 1, h2, w2))

    def __call__(self, coords: Tensor) -> Tensor:
        """coords (N, 2, H, W) x, y in feature pixels -> samples (N, K, H, W)."""
        r = self.radius
        n, _, h, w = coords.shape
        offsets = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)  # (2r+1,)
        # (2r+1, 2r+1, 2): entry [a, b] adds offsets[a] to x and offsets[b] to y
        delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)
        centres = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)  # (N*P, 1, 1, 2)
        out = []
        for level, volume in enumerate(self.volumes):
            points = centres / 2**level + delta  # (N*P, 2r+1, 2r+1, 2)
            out.append(_sample(volume, points).reshape(n, h, w, -1))  # (N, H, W, (2r+1)^2)
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()  # (N, K, H, W)


def _sample(volume: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples of volume (M, 1, h, w) at points (M, a, b, 2) x, y in its pixels (pixel
    centres at integers, clamped at the border) -> (M, 1, a, b)."""
    h, w = volume.shape[-2:]
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=points.device, dtype=points.dtype)
    grid = points * scale - 1  # [-1, 1], align_corners convention
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
