"""AllTracker (Harley et al., 2025): dense flow from a window's first frame to every other frame.

Our own implementation of the published network (``aharley/alltracker``, ``nets/alltracker.py``,
default ``Net(16)``): module names and shapes follow its checkpoint key for key (235 parameter
tensors and the ``time_emb`` buffer), so the published ``alltracker.pth`` loads with
``strict=True``. Dtype- and device-generic: every tensor made here takes the input's dtype and
device; the float32 casts of the published code are left out, so a float64 run is float64 all
through (tests/test_alltracker_model.py compares both precisions with reference outputs).

Inference over a clip (:meth:`AllTrackerNet.forward_sliding`): windows of S = 16 frames that
advance by S / 2, each refined from the previous window's estimates; a clip shorter than a
window is padded by repeating its last frame. Frames are padded to multiples of 64 (replicate).
Memory: each frame is encoded once (the padding reuses the last frame's features), a few frames
per call, and the correlation volumes, which grow with the square of the frame's pixels, can be
bounded (``corr.py``).

Shape legend: B clips, T frames of the clip, S frames of a window, C = 2 D feature channels
(D = 128 flow features + D context), H x W the (padded) frame, H8 x W8 = H / 8 x W / 8.
Flows are (dx, dy) in pixels from the clip's first frame; visconf are (visibility, confidence)
probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densemotion.tracking.alltracker.blocks import ConvNeXtEncoder, UpdateBlock
from densemotion.tracking.alltracker.corr import CorrPyramid

WINDOW = 16  # S: frames per window of the published model
PAD_MULTIPLE = 64  # frames are padded to multiples of this
# and to at least this: 5 pyramid levels halve the 1/8 feature map 4 times (the published code
# fails on smaller frames; at or above it the padding is the published one)
MIN_SIDE = 128
MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation of the ConvNeXt encoder
STD = (0.229, 0.224, 0.225)


def sincos_table(dim: int, length: int) -> Tensor:
    """(1, length, dim) float64: sin of position x frequency in the first half, cos in the second;
    frequencies 1 / 10000^(2i / dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))  # (dim/2,)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]  # (length, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[None]


class Padder:
    """Replicate-pads (..., H, W) to multiples of 64 (at least 128), split evenly on both sides,
    and undoes it."""

    def __init__(self, h: int, w: int) -> None:
        pad_h, pad_w = (max(-n % PAD_MULTIPLE, MIN_SIDE - n) for n in (h, w))
        self.pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # left, right, top, bottom
        self.h, self.w = h, w
        self.shape8 = ((h + pad_h) // 8, (w + pad_w) // 8)  # the feature map's H8, W8

    def pad(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H + pad_h, W + pad_w)
        return F.pad(x, self.pads, mode="replicate")

    def unpad(self, x: Tensor) -> Tensor:  # (..., H + pad_h, W + pad_w) -> (..., H, W)
        left, _, top, _ = self.pads
        return x[..., top : top + self.h, left : left + self.w]


def sliding_window_starts(frames: int, window: int, stride: int) -> list[int]:
    """First frame of each window: 0, stride, ... until a window reaches the clip's end."""
    starts = [0]
    while starts[-1] + window < frames:
        starts.append(starts[-1] + stride)
    return starts


def upsample_convex(x8: Tensor, mask: Tensor) -> Tensor:
    """x8 (N, 2, h, w) at 1/8, mask (N, 9 * 64, h, w) -> (N, 2, 8h, 8w): each fine pixel a softmax-
    weighted mix of its coarse pixel's 3x3 neighbourhood, values scaled by 8."""
    n, c, h, w = x8.shape
    weights = torch.softmax(mask.reshape(n, 1, 9, 8, 8, h, w), dim=2)  # (N, 1, 9, 8, 8, h, w)
    patches = F.unfold(8 * x8, (3, 3), padding=1).reshape(n, c, 9, 1, 1, h, w)  # (N, 2, 9, 1, 1, h, w)
    up = (weights * patches).sum(dim=2)  # (N, 2, 8, 8, h, w): sub-row, sub-column, row, column
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, c, 8 * h, 8 * w)


def _head(dim: int, out: int) -> nn.Sequential:
    """3x3 conv to 2 dim, ReLU, 3x3 conv to ``out`` (keys 0 and 2)."""
    return nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * dim, out, 3, padding=1))


class AllTrackerNet(nn.Module):
    """The published default AllTracker network (``Net(16)``: ConvNeXt encoder, attention updates)."""

    def __init__(
        self, seqlen: int = WINDOW, dim: int = 128, corr_levels: int = 5, corr_radius: int = 4, num_blocks: int = 3
    ) -> None:
        super().__init__()
        self.seqlen, self.dim = seqlen, dim
        self.corr_levels, self.corr_radius = corr_levels, corr_radius
        self.cnn = ConvNeXtEncoder()
        self.dot_conv = nn.Conv2d(384, 2 * dim, 1)  # (N, 384, H8, W8) -> (N, C, H8, W8)
        self.upsample_weight = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * dim, 64 * 9, 1)
        )
        self.flow_head = _head(dim, 2)
        self.visconf_head = _head(dim, 2)
        self.update_block = UpdateBlock(corr_levels * (2 * corr_radius + 1) ** 2, num_blocks, dim)
        # (1, S, D); kept for the checkpoint's sake: forward uses the float64 table at the run's dtype
        self.register_buffer("time_emb", sincos_table(dim, seqlen).float())

    def time_embedding(self, frames: int, like: Tensor) -> Tensor:
        """(1, frames, D) in like's dtype and device: the table for a full window, its row 1 for a
        single pair, else the table linearly resampled to ``frames``."""
        table = sincos_table(self.dim, self.seqlen)  # (1, S, D) float64
        if frames == 1:
            table = table[:, 1:2]
        elif frames != self.seqlen:
            table = F.interpolate(table.permute(0, 2, 1), size=frames, mode="linear").permute(0, 2, 1)
        return table.to(device=like.device, dtype=like.dtype)

    def encode(self, images: Tensor) -> Tensor:
        """Normalised, padded images (N, 3, H, W) -> features (N, C, H8, W8)."""
        return self.dot_conv(self.cnn(images))

    def forward_window(
        self,
        anchor: Tensor,
        fmaps: Tensor,
        flows8: Tensor,
        visconfs8: Tensor,
        iters: int,
        corr_max_bytes: int | None = None,
        batch: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Refine one window ``iters`` times.

        anchor (B, C, H8, W8) the first frame's features, fmaps (B, S, C, H8, W8) the window's,
        flows8 and visconfs8 (B*S, 2, H8, W8) the starting flow and visibility logits.
        ``corr_max_bytes`` bounds the correlation volumes (:class:`CorrPyramid`), ``batch`` the
        frames upsampled at once (None: all).
        Returns flows and visconf logits at full padded resolution (B*S, 2, H, W), and the
        refined flows8, visconfs8 (B*S, 2, H8, W8).
        """
        b, s, c, h8, w8 = fmaps.shape
        fmap1 = anchor[:, None].expand(b, s, c, h8, w8).reshape(b * s, c, h8, w8)  # (B*S, C, H8, W8)
        corr_fn = CorrPyramid(
            fmap1, fmaps.reshape(b * s, c, h8, w8), self.corr_levels, self.corr_radius, corr_max_bytes
        )
        ys, xs = torch.meshgrid(
            torch.arange(h8, device=fmaps.device, dtype=fmaps.dtype),
            torch.arange(w8, device=fmaps.device, dtype=fmaps.dtype),
            indexing="ij",
        )
        coords0 = torch.stack([xs, ys])[None]  # (1, 2, H8, W8) x, y of each feature pixel
        flowfeat, ctxfeat = fmap1.split([self.dim, self.dim], dim=1)  # (B*S, D, H8, W8) each
        time = self.time_embedding(s, ctxfeat).reshape(1, s, self.dim, 1, 1).expand(b, s, self.dim, 1, 1)
        ctxfeat = ctxfeat + time.reshape(b * s, self.dim, 1, 1)
        for _ in range(iters):
            corr = corr_fn(coords0 + flows8)  # (B*S, K, H8, W8)
            flowfeat = self.update_block(flowfeat, ctxfeat, visconfs8, corr, flows8, s)
            flows8 = flows8 + self.flow_head(flowfeat)
            visconfs8 = visconfs8 + self.visconf_head(flowfeat)
        flows_up, visconfs_up = [], []  # the 576-channel mask is the largest map: a few frames at a time
        step = batch or b * s
        for i in range(0, b * s, step):
            mask = 0.25 * self.upsample_weight(flowfeat[i : i + step])  # (n, 576, H8, W8)
            flows_up.append(upsample_convex(flows8[i : i + step], mask))
            visconfs_up.append(upsample_convex(visconfs8[i : i + step], mask))
        return torch.cat(flows_up), torch.cat(visconfs_up), flows8, visconfs8

    def _encode_frames(self, images: Tensor, first: int, last: int, padder: Padder, batch: int) -> Tensor:
        """Features (B, last - first, C, H8, W8) of frames first..last - 1 of images (B, T, 3, H, W),
        those past the clip's end being its last frame; each frame encoded once, ``batch`` at a time."""
        b, t, _, h, w = images.shape
        mean = torch.tensor(MEAN, device=images.device, dtype=images.dtype).reshape(1, 3, 1, 1)
        std = torch.tensor(STD, device=images.device, dtype=images.dtype).reshape(1, 3, 1, 1)
        index = torch.arange(first, last).clamp(max=t - 1)  # (n,)
        unique, inverse = torch.unique(index, return_inverse=True)
        feats = []
        for part in unique.split(batch):
            normed = (images[:, part].reshape(-1, 3, h, w) / 255.0 - mean) / std  # (B * n, 3, H, W)
            feats.append(self.encode(padder.pad(normed)).reshape(b, len(part), -1, *padder.shape8))
        return torch.cat(feats, dim=1)[:, inverse.to(images.device)]

    def forward_sliding(
        self,
        images: Tensor,
        iters: int = 4,
        out_device: torch.device | str | None = None,
        corr_max_bytes: int | None = None,
        batch: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """images (B, T, 3, H, W) in [0, 255], T >= 2 -> flows (B, T, 2, H, W) from frame 0 and
        visconf (B, T, 2, H, W) in [0, 1], on ``out_device`` (default: the images').

        Two frames are padded to a window like any short clip (the published code switches to a
        one-pair "flow mode" there instead; our tracker wants frame 0's own estimate as well).
        Each frame is encoded once, ``batch`` frames at a time (None: a window's at once); the
        padding repeats the last frame's features. ``corr_max_bytes``: see :meth:`forward_window`.
        """
        b, t, _, h, w = images.shape
        if t < 2:
            raise ValueError(f"AllTracker needs at least 2 frames, got {t}")
        out_device = images.device if out_device is None else out_device
        padder = Padder(h, w)
        s, stride = self.seqlen, self.seqlen // 2
        batch = batch or s

        def encode(first: int, last: int) -> Tensor:
            return self._encode_frames(images, first, last, padder, batch)

        starts = sliding_window_starts(t, s, stride)
        total = starts[-1] + s
        flows = torch.zeros((b, total, 2, h, w), device=out_device, dtype=images.dtype)
        visconfs = torch.zeros_like(flows)
        h8, w8 = padder.shape8
        filled = 0
        for k, start in enumerate(starts):
            if k == 0:
                fmaps = encode(0, s)  # (B, S, C, H8, W8)
                anchor = fmaps[:, 0]  # (B, C, H8, W8)
                flows8 = torch.zeros((b, s, 2, h8, w8), device=fmaps.device, dtype=fmaps.dtype)
                visconfs8 = torch.zeros_like(flows8)
            else:  # keep the overlap; new frames start from the last estimate
                fmaps = torch.cat([fmaps[:, stride:], encode(start + s - stride, start + s)], dim=1)
                flows8 = torch.cat([flows8[:, stride:], flows8[:, -1:].expand(-1, stride, -1, -1, -1)], dim=1)
                visconfs8 = torch.cat([visconfs8[:, stride:], visconfs8[:, -1:].expand(-1, stride, -1, -1, -1)], dim=1)
            flow_up, vis_up, f8, v8 = self.forward_window(
                anchor,
                fmaps,
                flows8.reshape(b * s, 2, h8, w8),
                visconfs8.reshape(b * s, 2, h8, w8),
                iters,
                corr_max_bytes,
                batch,
            )
            flows8, visconfs8 = f8.reshape(b, s, 2, h8, w8), v8.reshape(b, s, 2, h8, w8)
            new = start + s - filled  # frames of this window not yet written
            flows[:, filled : start + s] = padder.unpad(flow_up).reshape(b, s, 2, h, w)[:, s - new :].to(out_device)
            visconfs[:, filled : start + s] = (
                torch.sigmoid(padder.unpad(vis_up)).reshape(b, s, 2, h, w)[:, s - new :].to(out_device)
            )
            filled = start + s
        return flows[:, :t], visconfs[:, :t]
