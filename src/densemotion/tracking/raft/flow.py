"""torchvision's RAFT as a flow provider for the shared chainer: the ``raft`` tracker's code.

A window of S frames gives 2 (S - 1) image pairs, (t, t+1) forward and (t+1, t) backward, run
through the network in one batch (or batches of ``batch_pairs``). RAFT wants sides that are
multiples of 8 (and, for its 4-level correlation pyramid, at least 128 px): frames are padded at
the bottom and right by repeating their edge, so pixel coordinates are unchanged, and the flow
is cropped back to the frame. Chaining and visibility are ``tracking/flowchain.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from densemotion.runtime import autocast_dtype, autocast_to, to_device
from densemotion.tracking.base import weights_file_name
from densemotion.tracking.flowchain import ChainChecks, PairFlow, chain_flows, check_inputs
from densemotion.tracking.raft import WEIGHTS
from densemotion.tracking.weights import CheckpointError

if TYPE_CHECKING:
    from torchvision.models.optical_flow import RAFT

    from densemotion.tracking.raft import RaftParams

MULTIPLE = 8  # RAFT's feature maps are 1/8 of the frame
MIN_SIDE = 128  # torchvision: feature maps (1/8) of >= 16 px, which the 4-level pyramid halves 3 times


def padded_size(h: int, w: int) -> tuple[int, int]:
    """The (H, W) RAFT is run at: each side rounded up to a multiple of 8, at least 128."""
    up = lambda n: max(-(-n // MULTIPLE) * MULTIPLE, MIN_SIDE)
    return up(h), up(w)


def to_input(frames: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """(S, H, W, 3) uint8 RGB -> (S, 3, Hp, Wp) float32 in [-1, 1] (torchvision's RAFT transform),
    edge-padded at the bottom and right to :func:`padded_size`."""
    x = to_device(frames, device).permute(0, 3, 1, 2).float()  # (S, 3, H, W)
    x = x / 127.5 - 1.0
    h, w = x.shape[-2:]
    hp, wp = padded_size(h, w)
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    return x.contiguous()


class RaftFlow:
    """Forward and backward RAFT flows of every consecutive pair of a window."""

    def __init__(
        self,
        net: RAFT,
        num_flow_updates: int = 12,
        batch_pairs: int | None = None,
        amp_dtype: torch.dtype | None = None,
    ):
        self.net = net
        self.device = next(net.parameters()).device
        self.num_flow_updates = num_flow_updates
        self.batch_pairs = batch_pairs
        self.amp_dtype = amp_dtype  # runtime.autocast_dtype: None is float32

    @torch.inference_mode()
    def pairs(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Flow first -> second: (B, 3, Hp, Wp) each -> (B, 2, Hp, Wp) float32 (x, y) in pixels."""
        step = self.batch_pairs or len(first)
        out = []
        for lo in range(0, len(first), step):
            with autocast_to(self.device, self.amp_dtype):
                # RAFT returns one flow per update; the last is the refined one
                flow = self.net(first[lo : lo + step], second[lo : lo + step], self.num_flow_updates)[-1]
            out.append(flow.float())
        return torch.cat(out)

    def window_flows(self, frames: np.ndarray) -> list[PairFlow]:
        """The S - 1 pair flows of frames (S, H, W, 3) uint8 RGB, cropped back to (H, W)."""
        return self.windows_flows(frames[None])[0]

    def windows_flows(self, frames: np.ndarray) -> list[list[PairFlow]]:
        """Per window, the S - 1 pair flows of frames (B, S, H, W, 3) uint8 RGB, cropped back to
        (H, W): the B x 2 (S - 1) pairs go through the network together (``batch_pairs`` at a time)."""
        b, s, h, w = frames.shape[:4]
        x = to_input(frames.reshape(b * s, h, w, 3), self.device).reshape(b, s, 3, *padded_size(h, w))
        first = torch.cat([x[:, :-1], x[:, 1:]], dim=1).flatten(0, 1)  # (B 2 (S-1), 3, Hp, Wp): per window
        second = torch.cat([x[:, 1:], x[:, :-1]], dim=1).flatten(0, 1)  # forward pairs, then backward
        flow = self.pairs(first, second)[:, :, :h, :w].cpu().numpy().reshape(b, 2 * (s - 1), 2, h, w)
        planes = lambda f: (np.ascontiguousarray(f[0]), np.ascontiguousarray(f[1]))
        return [[PairFlow(planes(f[t]), planes(f[s - 1 + t])) for t in range(s - 1)] for f in flow]


class RaftTracker:
    """Chained RAFT flow with the shared forward-backward and photometric visibility."""

    name = "raft"

    def __init__(self, flow: RaftFlow, checks: ChainChecks):
        self.flow = flow
        self.checks = checks

    @property
    def device(self) -> torch.device:
        return self.flow.device

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (S, H, W, 3) uint8 RGB, queries (N, 2) xy -> tracks (S, N, 2), vis (S, N) float32."""
        frames, queries = check_inputs(frames, queries, self.name)
        return chain_flows(frames, queries, self.flow.window_flows(frames), self.checks)

    def track_windows(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (B, S, H, W, 3) uint8 RGB, queries (N, 2) -> tracks (B, S, N, 2), vis (B, S, N):
        the flows of all B windows in one batch, each window then chained as :meth:`track` does
        (memory: ``batch_pairs`` pairs per network call, whatever B)."""
        checked = [check_inputs(window, queries, self.name) for window in frames]
        flows = self.flow.windows_flows(np.stack([window for window, _ in checked]))
        each = [chain_flows(w, q, f, self.checks) for (w, q), f in zip(checked, flows, strict=True)]
        return np.stack([t for t, _ in each]), np.stack([v for _, v in each])


def weights_path(folder: str | Path, model: str, name: str | None = None) -> Path:
    """The weights file in ``folder``: ``name`` (a plain file name: see weights_file_name), or
    torchvision's file name for ``model``."""
    if name is not None:
        try:
            name = weights_file_name(name, "raft")
        except ValueError as err:
            raise CheckpointError(f"trajectories.raft.weights: {err}") from None
    return Path(folder) / (name if name is not None else WEIGHTS[model].file_name)


def make(p: RaftParams, device: str, folder: Path) -> RaftTracker:
    """Build the tracker from ``trajectories.raft`` on a resolved ``device``; weights from ``folder``."""
    net = WEIGHTS[p.model].load(weights_path(folder, p.model, p.weights), device)
    amp_dtype = autocast_dtype(p.autocast, device, "trajectories.raft.autocast")
    flow = RaftFlow(net, p.num_flow_updates, p.batch_pairs, amp_dtype)
    return RaftTracker(flow, ChainChecks(p.fb_threshold, p.fb_relative, p.photo_threshold, tracker="raft"))
