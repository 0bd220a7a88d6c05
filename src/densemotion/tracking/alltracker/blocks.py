"""The building blocks of AllTracker: a ConvNeXt encoder and the temporal/spatial update block.

Module and attribute names follow the published checkpoint (``aharley/alltracker``,
``nets/blocks.py``), so its state_dict keys are ours; the code is our own.

Shape legend: B batch, S frames of the window, C channels, H x W a feature map,
P pixels of a feature map (H * W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6  # every LayerNorm of the model


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class _ToLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C): channels last for LayerNorm and Linear (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class _ToFirst(nn.Module):
    """(B, H, W, C) -> (B, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


class SpaceBlock(nn.Module):
    """A ConvNeXt block: 7x7 depthwise conv, LayerNorm, MLP (x4, exact GELU), scaled residual.

    ``block`` indices 0, 2, 3, 5 hold the parameters (as the published ``CNBlock2d``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),
            _ToLast(),
            nn.LayerNorm(dim, eps=LN_EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            _ToFirst(),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))  # (C, 1, 1)

    def forward(self, x: Tensor, frames: int | None = None) -> Tensor:  # (N, C, H, W) -> same
        return self.layer_scale * self.block(x) + x


class ConvNeXtEncoder(nn.Module):
    """An image (N, 3, H, W) -> features (N, 384, H / 8, W / 8): the first stages of ConvNeXt-tiny.

    ``features``: 0 stem (4x4 conv stride 4 + LayerNorm), 1 three blocks at 96 channels,
    2 LayerNorm + 2x2 conv stride 2 to 192, 3 three blocks, 4 LayerNorm + 3x3 conv with dilation 2
    (stride 1) to 384, 5 nine blocks at 384.
    """

    def __init__(self) -> None:
        super().__init__()

        def stage(dim: int, depth: int) -> nn.Sequential:
            return nn.Sequential(*[SpaceBlock(dim) for _ in range(depth)])

        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 96, kernel_size=4, stride=4), LayerNorm2d(96, eps=LN_EPS)),
            stage(96, 3),
            nn.Sequential(LayerNorm2d(96, eps=LN_EPS), nn.Conv2d(96, 192, kernel_size=2, stride=2)),
            stage(192, 3),
            nn.Sequential(LayerNorm2d(192, eps=LN_EPS), nn.Conv2d(192, 384, kernel_size=3, padding=2, dilation=2)),
            stage(384, 9),
        )

    def forward(self, x: Tensor) -> Tensor:  # (N, 3, H, W) -> (N, 384, H/8, W/8)
        return self.features(x)


class Mlp(nn.Module):
    """Linear, tanh-approximated GELU, Linear (a transformer's feed-forward)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Attention(nn.Module):
    """Multi-head self-attention with separate q and joint kv projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, C) -> (N, L, C)
        n, length, dim = x.shape
        k, v = self.to_kv(x).chunk(2, dim=-1)

        def split(t: Tensor) -> Tensor:  # (N, L, C) -> (N, heads, L, C / heads)
            return t.reshape(n, length, self.heads, dim // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.to_q(x)), split(k), split(v))  # (N, heads, L, C/heads)
        return self.to_out(y.transpose(1, 2).reshape(n, length, dim))


class AttnBlock(nn.Module):
    """Pre-norm transformer block (LayerNorms without affine parameters)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, C) -> (N, L, C)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimeBlock(nn.Module):
    """Attention along time, each pixel on its own, with a scaled residual (published ``CNBlock1d``)."""

    def __init__(self, dim: int, heads: int = 8) -> None:
        super().__init__()
        self.block = AttnBlock(dim, heads)
        self.layer_scale = nn.Parameter(torch.full((dim, 1), 1e-6))  # (C, 1)

    def forward(self, x: Tensor, frames: int | None = None) -> Tensor:  # (B*S, C, H, W) -> same
        assert frames is not None
        bs, c, h, w = x.shape
        b = bs // frames
        seq = x.reshape(b, frames, c, h * w).permute(0, 3, 2, 1).reshape(b * h * w, c, frames)  # (B*P, C, S)
        out = self.layer_scale * self.block(seq.transpose(1, 2)).transpose(1, 2) + seq  # (B*P, C, S)
        return out.reshape(b, h * w, c, frames).permute(0, 3, 2, 1).reshape(bs, c, h, w)


class MotionEncoder(nn.Module):
    """Correlation samples and the current flow -> motion features (dim channels, the flow last)."""

    def __init__(self, corr_channels: int, dim: int, flow_channels: int = 2) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channels, dim * 4, 1)
        self.convc2 = nn.Conv2d(dim * 4, dim + dim // 2, 3, padding=1)
        self.convf1 = nn.Conv2d(flow_channels, dim * 2, 5, padding=2)
        self.convf2 = nn.Conv2d(dim * 2, dim // 2, 3, padding=1)
        self.conv = nn.Conv2d(dim * 2, dim - flow_channels, 3, padding=1)

    def forward(self, flow: Tensor, corr: Tensor) -> Tensor:
        """flow (N, 2, H, W), corr (N, K, H, W) -> (N, dim, H, W)."""
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))  # (N, 3 dim / 2, H, W)
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))  # (N, dim / 2, H, W)
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))  # (N, dim - 2, H, W)
        return torch.cat([out, flow], dim=1)


class UpdateBlock(nn.Module):
    """Flow features, context, visibility logits, correlation and flow -> new flow features.

    Compress the inputs to ``dim`` channels, then alternate attention along time and ConvNeXt
    blocks in space (``num_blocks`` of each), then a 1x1 conv (published ``RelUpdateBlock``).
    """

    def __init__(self, corr_channels: int, num_blocks: int, dim: int) -> None:
        super().__init__()
        self.motion_encoder = MotionEncoder(corr_channels, dim)
        self.compressor = nn.Conv2d(3 * dim + 2, dim, 1)
        blocks: list[nn.Module] = []
        for _ in range(num_blocks):
            blocks += [TimeBlock(dim), SpaceBlock(dim)]
        self.refine = nn.ModuleList(blocks)
        self.final_conv = nn.Conv2d(dim, dim, 1)

    def forward(
        self, flowfeat: Tensor, ctxfeat: Tensor, visconf: Tensor, corr: Tensor, flow: Tensor, frames: int
    ) -> Tensor:
        """flowfeat, ctxfeat (B*S, D, H, W), visconf and flow (B*S, 2, H, W), corr (B*S, K, H, W)
        -> (B*S, D, H, W)."""
        motion = self.motion_encoder(flow, corr)  # (B*S, D, H, W)
        x = self.compressor(torch.cat([flowfeat, ctxfeat, motion, visconf], dim=1))
        for blk in self.refine:
            x = blk(x, frames)
        return self.final_conv(x)
