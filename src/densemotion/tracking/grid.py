"""Dense query grids and window start frames for the trajectories stage.

The grid has spacing ``g`` pixels of the tracking resolution inside a ``margin``; grid point
(i, j) is the centre of the g x g block whose area average is pixel (i, j) of the first frame
downsized by g, so x = margin + (j + 0.5) * g - 0.5, y = margin + (i + 0.5) * g - 0.5.
:class:`Grid` is one such grid (shape, stride, margin and the tracking size it lies in) with the
sums made on it: its points, their scale to the frames' own size, the area its blocks cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from densemotion.errors import DensemotionError
from densemotion.metrics import rescale_points, size_ratio


class GridError(DensemotionError):
    """Frames too small for the requested grid, or a window longer than the video."""


def grid_shape(size_hw: tuple[int, int], grid_stride: int, margin: int) -> tuple[int, int]:
    """(Hg, Wg): how many whole g x g blocks fit inside the margin of an (H, W) frame."""
    h, w = size_hw
    if grid_stride < 1 or margin < 0:
        raise GridError(f"grid_stride must be >= 1 and margin >= 0 (got {grid_stride}, {margin})")
    inner_h, inner_w = h - 2 * margin, w - 2 * margin
    if inner_h < grid_stride or inner_w < grid_stride:
        raise GridError(
            f"frames of {h}x{w} are too small for margin {margin} and grid_stride {grid_stride}: "
            f"need at least {2 * margin + grid_stride}x{2 * margin + grid_stride} pixels"
        )
    return inner_h // grid_stride, inner_w // grid_stride


def grid_points(shape: tuple[int, int], grid_stride: int, margin: int) -> np.ndarray:
    """(Hg*Wg, 2) float32 (x, y) of the grid points, row-major (i outer, j inner)."""
    hg, wg = shape
    offset = margin + 0.5 * grid_stride - 0.5
    xs = offset + grid_stride * np.arange(wg, dtype=np.float64)
    ys = offset + grid_stride * np.arange(hg, dtype=np.float64)
    xx, yy = np.meshgrid(xs, ys)  # (Hg, Wg) each
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def downsize_to_grid(frame: np.ndarray, shape: tuple[int, int], grid_stride: int, margin: int) -> np.ndarray:
    """(Hg, Wg, 3) uint8: the grid's area of ``frame`` averaged over each g x g block."""
    hg, wg = shape
    crop = frame[margin : margin + hg * grid_stride, margin : margin + wg * grid_stride]
    if grid_stride == 1:
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (wg, hg), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Grid:
    """A query grid: ``shape`` (Hg, Wg) blocks of ``stride`` (g) px inside a ``margin`` (m) of
    frames of ``size`` (H, W), the tracking resolution; always :func:`grid_shape` of the other
    three (a Grid that is not is refused on creation). Make one with :meth:`of`."""

    shape: tuple[int, int]  # (Hg, Wg)
    stride: int  # g, px of the tracking resolution
    margin: int  # m, px left out on every side
    size: tuple[int, int]  # (H, W) tracking resolution

    def __post_init__(self) -> None:
        want = grid_shape(self.size, self.stride, self.margin)
        if tuple(self.shape) != want:
            raise GridError(
                f"grid shape {list(self.shape)} is not the {list(want)} grid of {self.size[0]}x{self.size[1]} "
                f"frames, grid_stride {self.stride} and margin {self.margin}"
            )

    @classmethod
    def of(cls, size_hw: tuple[int, int], grid_stride: int, margin: int) -> Grid:
        """The grid of (H, W) frames at ``grid_stride`` inside ``margin`` (GridError: too small)."""
        size = (int(size_hw[0]), int(size_hw[1]))
        return cls(grid_shape(size, grid_stride, margin), grid_stride, margin, size)

    @property
    def count(self) -> int:
        """Hg * Wg: the number of grid points."""
        return self.shape[0] * self.shape[1]

    @property
    def origin(self) -> tuple[int, int]:
        """(y, x) tracking px of the first block's top-left corner."""
        return self.margin, self.margin

    @property
    def covered(self) -> tuple[slice, slice]:
        """(rows, columns) of the tracking-size frame its Hg x Wg blocks cover."""
        (hg, wg), g, m = self.shape, self.stride, self.margin
        return slice(m, m + hg * g), slice(m, m + wg * g)

    def points(self) -> np.ndarray:
        """(Hg*Wg, 2) float32 (x, y) of the grid points in tracking px, row-major (:func:`grid_points`)."""
        return grid_points(self.shape, self.stride, self.margin)

    def scale_to(self, size_hw: tuple[int, int]) -> tuple[float, float]:
        """(sx, sy): px of frames of ``size_hw`` (H, W) per tracking px (e.g. the frames archive's
        own size: the frame scale that errors are reported at)."""
        return size_ratio(size_hw, self.size)

    def points_at(self, size_hw: tuple[int, int]) -> np.ndarray:
        """(Hg*Wg, 2) float64 (x, y) of the grid points in px of frames of ``size_hw`` (H, W), by the
        resize rule x -> (x + 0.5) * s - 0.5."""
        return rescale_points(self.points(), self.scale_to(size_hw))

    def downsize(self, frame: np.ndarray) -> np.ndarray:
        """(Hg, Wg, 3) uint8: a tracking-size ``frame`` averaged over each block (:func:`downsize_to_grid`)."""
        return downsize_to_grid(frame, self.shape, self.stride, self.margin)


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int] | None) -> np.ndarray:
    """(S, H, W, 3) -> (S, h, w, 3) with area interpolation; unchanged when already that size."""
    if size_hw is None or tuple(frames.shape[1:3]) == tuple(size_hw):
        return frames
    h, w = size_hw
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def window_starts(num_frames: int, window: int, stride: int) -> tuple[np.ndarray, list[int]]:
    """Start frames of the windows that fit, and the starts skipped because they run past the end.

    Windows begin at 0, stride, 2 * stride, ...; one starting at s covers s .. s + window - 1.
    """
    if window < 2 or stride < 1:
        raise GridError(f"window must be >= 2 and stride >= 1 (got {window}, {stride})")
    if num_frames < window:
        raise GridError(f"the video has {num_frames} frames, fewer than one window of {window}")
    all_starts = np.arange(0, num_frames, stride, dtype=np.int64)
    fits = all_starts + window <= num_frames
    return all_starts[fits], [int(s) for s in all_starts[~fits]]
