"""All-pairs correlation between a window's anchor features and each frame's, sampled near a flow.

Each refinement samples (2r+1)^2 values per level around where the current flow points. Follows
the published ``CorrBlock`` (including its sample order: the x offset varies along the slower
axis of each (2r+1) x (2r+1) patch).

The published code holds every level's volume for the whole window: N P^2 (1 + 1/4 + ...)
values, which grows with the square of the frame's pixels (~1.2 GB at 360x640 in float32). Given
a ``max_bytes`` that the volumes would exceed, :class:`CorrPyramid` keeps only the features and
computes the volumes of a few anchor pixels at a time at each lookup: the same values (up to the
summation order of the matrix products), memory bounded by ``max_bytes``, at the price of one
product per refinement instead of one per window.

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

    def __init__(self, fmap1: Tensor, fmap2: Tensor, levels: int, radius: int, max_bytes: int | None = None) -> None:
        """fmap1, fmap2 (N, C, H, W): anchor features repeated per frame, and the frames' features.

        ``max_bytes``: the most the volumes may hold at once (None: no bound, all precomputed).
        """
        self.radius = radius
        n, c, h, w = fmap1.shape
        self.query = fmap1.reshape(n, c, h * w).transpose(1, 2)  # (N, P, C)
        self.targets: list[Tensor] = []  # level l: (N, C, H / 2^l, W / 2^l)
        for level in range(levels):
            if level > 0:
                fmap2 = F.interpolate(fmap2, scale_factor=0.5, mode="area")
            self.targets.append(fmap2)
        per_anchor = n * sum(t.shape[-2] * t.shape[-1] for t in self.targets) * fmap1.element_size()
        fits = max_bytes is None or per_anchor * h * w <= max_bytes
        # anchor pixels whose volumes are computed together (all of them: computed once, here)
        self.chunk = h * w if fits else max(1, int(max_bytes or 0) // per_anchor)
        self.volumes = self._volumes(slice(None)) if fits else None

    def _volumes(self, anchors: slice) -> list[Tensor]:
        """Every level's volume for some anchor pixels: level l (N * p, 1, H / 2^l, W / 2^l)."""
        query = self.query[:, anchors]  # (N, p, C)
        out = []
        for target in self.targets:
            n, c, h2, w2 = target.shape
            corr = torch.matmul(query, target.reshape(n, c, h2 * w2)) / math.sqrt(c)  # (N, p, P_l)
            out.append(corr.reshape(-1, 1, h2, w2))
        return out

    def __call__(self, coords: Tensor) -> Tensor:
        """coords (N, 2, H, W) x, y in feature pixels -> samples (N, K, H, W)."""
        r = self.radius
        n, _, h, w = coords.shape
        offsets = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)  # (2r+1,)
        # (2r+1, 2r+1, 2): entry [a, b] adds offsets[a] to x and offsets[b] to y
        delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)
        centres = coords.permute(0, 2, 3, 1).reshape(n, h * w, 1, 1, 2)  # (N, P, 1, 1, 2)
        patch = (2 * r + 1) ** 2
        pieces = []
        for start in range(0, h * w, self.chunk):
            anchors = slice(start, start + self.chunk)
            volumes = self.volumes if self.volumes is not None else self._volumes(anchors)
            at = centres[:, anchors].reshape(-1, 1, 1, 2)  # (N * p, 1, 1, 2)
            samples = [_sample(v, at / 2**level + delta).reshape(n, -1, patch) for level, v in enumerate(volumes)]
            pieces.append(torch.cat(samples, dim=-1))  # (N, p, K)
        return torch.cat(pieces, dim=1).reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()  # (N, K, H, W)


def _sample(volume: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples of volume (M, 1, h, w) at points (M, a, b, 2) x, y in its pixels (pixel
    centres at integers, clamped at the border) -> (M, 1, a, b)."""
    h, w = volume.shape[-2:]
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=points.device, dtype=points.dtype)
    grid = points * scale - 1  # [-1, 1], align_corners convention
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
