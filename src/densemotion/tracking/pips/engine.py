"""Dense PIPs inference: features once per frame, points in chunks, windows chained past 8 frames.

- Every frame is encoded once (the encoder sees one image at a time, so a frame's features do
  not depend on the window it is in) and kept as a :class:`FeaturePyramid`; every chunk of
  points and every window that uses the frame shares it.
- Points are refined ``chunk_size`` at a time with the feature-sampling correlation lookup: no
  (N, S, H, W) volume and no full-resolution score maps, so peak memory is the frames'
  features plus one chunk's activations, whatever the number of points (beyond the outputs).
- A clip shorter than the window is padded by repeating its last frame (as the published
  demo does); a longer one is tracked by chaining windows as the published chain demo does
  (docs/pips.md, "Chaining past 8 frames"), each point restarting on its own.

Shape legend: L frames of the clip, S = 8 frames of a window, N points, C = 128 channels.
Coordinates are (x, y) pixels of the given frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from densemotion.runtime import autocast_to, to_device
from densemotion.tracking.base import TrackerError
from densemotion.tracking.pips.corr import LEVELS, FeaturePyramid, SampledLookup
from densemotion.tracking.pips.model import PipsNet
from densemotion.tracking.pips.precision import Precision, lower_mixer

VIS_THRESHOLD = 0.9  # chaining: restart at the latest frame more surely visible than this
VIS_THRESHOLD_STEP = 0.02  # ... lowered by this while no frame qualifies
EARLIEST_RESTART = 2  # window index 1 is never a restart frame (the published chain demo)
ENCODE_BATCH = 8  # frames per encoder call


@dataclass
class TrackInfo:
    """How a clip was tracked: ``padded_frames`` > 0 marks a clip shorter than one window."""

    windows: int = 0  # window passes run (a pass covers every point that starts at that frame)
    padded_frames: int = 0  # frames added by repeating the last one, when the clip is shorter than S
    chained: bool = False


def min_frame_size(stride: int) -> int:
    """Smallest height and width PIPs accepts: the coarsest correlation level must be >= 2 x 2."""
    return 2 * stride * 2 ** (LEVELS - 1)


def restart_offsets(vis: np.ndarray) -> np.ndarray:
    """vis (S, N) visibility in [0, 1] of one window -> (N,) window index to restart each point at.

    The latest index in S-1 .. 2 whose visibility exceeds the threshold (0.9, lowered by 0.02
    until some index qualifies), as in the published chain demo.
    """
    S, N = vis.shape
    cand = vis[EARLIEST_RESTART:]  # (S - 2, N): rows are indices 2 .. S-1
    out = np.full(N, S - 1, dtype=np.int64)
    pending = np.ones(N, dtype=bool)
    thr = VIS_THRESHOLD
    while pending.any() and thr > -VIS_THRESHOLD_STEP:  # NaN visibility never qualifies: stops at S-1
        ok = cand[:, pending] > np.float32(thr)  # (S - 2, P)
        found = ok.any(axis=0)
        latest = (S - 1) - np.argmax(ok[::-1], axis=0)  # last qualifying index
        idx = np.flatnonzero(pending)
        out[idx[found]] = latest[found]
        pending[idx[found]] = False
        thr -= VIS_THRESHOLD_STEP
    return out


class PipsEngine:
    """Runs a loaded :class:`PipsNet` over clips of any length and any number of points."""

    def __init__(
        self,
        net: PipsNet,
        device: str | torch.device = "cpu",
        iters: int = 6,
        chunk_size: int = 1024,
        precision: Precision | None = None,
    ) -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.dtype = next(net.parameters()).dtype
        self.iters = iters
        self.chunk_size = chunk_size
        self.precision = precision or Precision()  # what runs in bf16/fp16 (precision.py)
        self.mixer = lower_mixer(self.net, self.precision.mixer)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> FeaturePyramid:
        """frames (T, H, W, 3) uint8 -> the frames' feature pyramids."""
        fmaps = []
        for i in range(0, len(frames), ENCODE_BATCH):
            rgbs = to_device(frames[i : i + ENCODE_BATCH], self.device)
            rgbs = rgbs.permute(0, 3, 1, 2).to(self.dtype)  # (b, 3, H, W)
            with autocast_to(self.device, self.precision.encoder):
                fmaps.append(self.net.encode(rgbs).to(self.precision.lookup or self.dtype))
        return FeaturePyramid(torch.cat(fmaps))

    @torch.inference_mode()
    def run_window(
        self,
        pyramid: FeaturePyramid,
        frame_ids: list[int],
        xy: torch.Tensor,
        feat_init: torch.Tensor | None = None,
        keep_feats: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Track xy (N, 2) from frame_ids[0] through the S frames ``frame_ids`` of ``pyramid``, by chunks.

        Returns tracks (S, N, 2) and visibility logits (S, N) on the CPU in float32, and, with
        ``keep_feats`` (chaining), the frame-0 track features (N, C) on the device.
        """
        N, S = len(xy), len(frame_ids)
        tracks = torch.empty(S, N, 2, dtype=torch.float32)
        logits = torch.empty(S, N, dtype=torch.float32)
        feats = torch.empty(N, pyramid.channels, dtype=self.dtype, device=self.device) if keep_feats else None
        lookup = SampledLookup(pyramid, frame_ids)
        for lo in range(0, N, self.chunk_size):
            hi = min(lo + self.chunk_size, N)
            f0 = None if feat_init is None else feat_init[lo:hi]
            out = self.net.refine(
                lookup, xy[lo:hi].to(self.device, self.dtype), self.iters, feat_init=f0, mixer=self.mixer
            )
            tracks[:, lo:hi] = out.trajs[-1].float().cpu()
            logits[:, lo:hi] = out.vis_logits.float().cpu()
            if feats is not None:
                feats[lo:hi] = out.feat0
        return tracks, logits, feats

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, TrackInfo]:
        """frames (L, H, W, 3) uint8, queries (N, 2) xy in frame 0 -> tracks (L, N, 2), vis (L, N), info."""
        check_inputs(frames, queries, self.net.stride)
        L, N, S = len(frames), len(queries), self.net.S
        info = TrackInfo(padded_frames=max(0, S - L), chained=L > S)
        tracks = np.empty((L, N, 2), dtype=np.float32)
        vis = np.empty((L, N), dtype=np.float32)
        tracks[0] = queries
        vis[0] = 1.0
        if N == 0:
            return tracks, vis, info
        pyramid = self.encode(frames)
        start = np.zeros(N, dtype=np.int64)  # each point's current window start
        active = np.ones(N, dtype=bool)
        feat0 = None  # (N, C) frame-0 track features, passed on to later windows
        while active.any():
            c = int(start[active].min())
            sel = np.flatnonzero(active & (start == c))
            real = min(S, L - c)
            frame_ids = [c + min(s, real - 1) for s in range(S)]  # past the end: repeat the last frame
            xy = torch.from_numpy(tracks[c, sel])
            init = None if feat0 is None else feat0[torch.from_numpy(sel).to(self.device)]
            first_of_chain = info.chained and feat0 is None
            win_tracks, win_logits, win_feats = self.run_window(pyramid, frame_ids, xy, init, keep_feats=first_of_chain)
            win_vis = torch.sigmoid(win_logits).numpy()
            tracks[c : c + real, sel] = win_tracks[:real].numpy()
            vis[c : c + real, sel] = win_vis[:real]
            info.windows += 1
            if L <= S:
                break
            if first_of_chain:  # every point starts at frame 0 in the first pass
                feat0 = win_feats
            start[sel] = c + restart_offsets(win_vis)
            active[sel] = start[sel] < L
        return tracks, vis, info


def check_inputs(frames: np.ndarray, queries: np.ndarray, stride: int) -> None:
    """Raise TrackerError for frames or query points PIPs cannot track."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise TrackerError(f"pips: frames must be a (L, H, W, 3) uint8 array, got {got}")
    L, H, W = frames.shape[:3]
    if L < 2:
        raise TrackerError(f"pips: need at least 2 frames to track, got {L}")
    least = min_frame_size(stride)
    if least > H or least > W:
        raise TrackerError(
            f"pips: frames of {W}x{H} are too small for stride {stride}: both sides must be at least "
            f"{least} px (the coarsest correlation level must be at least 2x2); "
            "raise trajectories.resolution or use trajectories.pips.stride 4"
        )
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[1] != 2:
        raise TrackerError(f"pips: queries must be an (N, 2) array of (x, y), got shape {q.shape}")
    inside = np.isfinite(q).all(axis=1) & (q[:, 0] >= -0.5) & (q[:, 0] <= W - 0.5)
    inside &= (q[:, 1] >= -0.5) & (q[:, 1] <= H - 0.5)
    if not inside.all():
        bad = np.flatnonzero(~inside)
        raise TrackerError(
            f"pips: {len(bad)} query point(s) outside the {W}x{H} frame, e.g. point {bad[0]} at {q[bad[0]].tolist()}"
        )
