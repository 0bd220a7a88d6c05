"""Shot-cut detection on the frames stage's stream of kept frames (no second pass over the video).

The encoding workers reduce each frame they store to 64 x 64 YCrCb block means
(:func:`block_means`); the frames stage scores each frame against the one before as they are
written (:class:`CutDetector`, :func:`cut_score`):

1. black bars (letterbox, pillarbox) dark in both frames are cut off;
2. both become blurred 32 x 32 thumbnails;
3. the score is the median over pixels of |dY| + |dCr| + |dCb| after the global shift, of up to
   1/8 of the frame each way, that lines them up best (pans, shake and zooms line up again),
   divided by the median deviation of the thumbnails from their mean colour: unitless, so it does
   not depend on how textured or bright the footage is.

Calibrated on pans, zooms, rolls, shake, flashes, moving objects and cuts made of a photograph,
the sample's scenes and the tests' textures, with and without H.264, with and without bars:

- within a shot: <= 0.25 for pans up to 1/8 of the frame per frame, zooms of 10 %/frame, rolls
  of 6 deg/frame, shake; ~0.4 for a +30-level flash or a whip pan of 1/5 of the frame per frame;
  ~0.1 for an object half the frame high crossing a still background fast (0.5-0.7 once
  letterbox bars make it fill the picture); fine textures at 720p: < 0.1;
- across a cut: 1-2 between unrelated shots; 0.7-0.9 for the same spot reframed (2x closer,
  or 1.5x closer and moved by a fifth), the hardest case.

The default ``frames.cut_threshold`` of 0.6 lies between the two: a missed cut puts tracks
across unrelated frames into the training set, while a false one only drops the windows around
motion too fast to track well anyway. A foreground filling most of the frame and sweeping across
it in a frame or two scores like a cut (~1.2); a jump cut that barely moves the camera scores
like motion, which does little harm: tracks across it still join views of one scene.
"""

from __future__ import annotations

import cv2
import numpy as np

from densemotion.video import Yuv420

GRID = 64  # frames are first reduced to GRID x GRID block means (YCrCb), whatever their aspect ratio
THUMB = 32  # ... and compared as THUMB x THUMB thumbnails: shifts are fractions of the frame
MAX_SHIFT = 4  # thumbnail pixels searched each way: 1/8 of the frame per frame
CANDIDATES = 3  # shifts of least squared difference whose median difference is taken
BLUR = 1.0  # Gaussian sigma in thumbnail pixels: sub-pixel motion then changes the thumbnail smoothly
BAR_LUMA = 24  # a border row or column of blocks all darker than this (of 255) is a black bar
CONTRAST_FLOOR = 12.0  # Y + Cr + Cb levels: near-flat frames (black, fades) are not divided by ~0


def block_means(frame: np.ndarray | Yuv420) -> np.ndarray:
    """(H, W, 3) uint8 RGB or full-range YUV 4:2:0 planes -> (GRID, GRID, 3) uint8 Y, Cr, Cb block means.

    What the encoding workers hand on for each frame. Means of whole blocks of a centred crop:
    OpenCV's area resize is ~10x faster for whole-number factors, and area means (unlike point
    sampling) do not alias fine moving textures into a flicker that reads as a cut. The crop
    drops under 1/5 of the rows and columns, under 1/9 from 512 pixels on; small frames are used whole.
    """
    if isinstance(frame, Yuv420):  # chroma is half-size: its block means at half the grid, doubled
        chroma = [_whole_blocks(p, GRID // 2) for p in (frame.v, frame.u)]
        chroma = [cv2.resize(c, (GRID, GRID), interpolation=cv2.INTER_NEAREST) for c in chroma]
        return np.dstack([_whole_blocks(frame.y, GRID), *chroma])
    return cv2.cvtColor(_whole_blocks(frame, GRID), cv2.COLOR_RGB2YCrCb)


def _whole_blocks(image: np.ndarray, grid: int) -> np.ndarray:
    h, w = image.shape[:2]
    fy, fx = h // grid, w // grid
    if min(fy, fx) >= 4:
        y0, x0 = (h - fy * grid) // 2, (w - fx * grid) // 2
        image = image[y0 : y0 + fy * grid, x0 : x0 + fx * grid]
    return cv2.resize(image, (grid, grid), interpolation=cv2.INTER_AREA)


def _active(dark: np.ndarray) -> tuple[int, int]:
    """(first, stop) of the rows between leading and trailing black bars, given which rows are
    dark; all of them when the bars would leave under a quarter (a dark frame, not a letterbox)."""
    lit = np.flatnonzero(~dark)
    if len(lit) == 0 or lit[-1] + 1 - lit[0] < len(dark) // 4:
        return 0, len(dark)
    return int(lit[0]), int(lit[-1]) + 1


def _region(prev: np.ndarray, cur: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the block grid both frames are compared on: black bars (letterbox,
    pillarbox) dark in both are cut off, since static bars would hold the frames in place and
    hide a cut as well as a pan behind them."""
    dark = np.asarray((prev[..., 0] < BAR_LUMA) & (cur[..., 0] < BAR_LUMA))  # (GRID, GRID)
    return (*_active(np.all(dark, axis=1)), *_active(np.all(dark, axis=0)))


def _median_l1(diff: np.ndarray) -> float:
    """Median over pixels of |Y| + |Cr| + |Cb| of a (h, w, 3) difference."""
    d = np.abs(diff)
    flat = (d[..., 0] + d[..., 1] + d[..., 2]).ravel()  # faster than .sum(axis=-1) at this size
    k = len(flat) // 2
    return float(np.partition(flat, k)[k])


def _thumbnail(means: np.ndarray, region: tuple[int, int, int, int]) -> tuple[np.ndarray, float]:
    """Block means -> (THUMB, THUMB, 3) float32 blurred thumbnail of ``region``, and its contrast
    (the median L1 deviation from its mean colour)."""
    y0, y1, x0, x1 = region
    small = cv2.resize(means[y0:y1, x0:x1], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    thumb = cv2.GaussianBlur(small.astype(np.float32), (0, 0), BLUR)
    return thumb, _median_l1(thumb - np.asarray(cv2.mean(thumb)[:3], np.float32))


def _score(prev: np.ndarray, prev_contrast: float, cur: np.ndarray, cur_contrast: float) -> float:
    r, side = MAX_SHIFT, 2 * MAX_SHIFT + 1
    centre = prev[r:-r, r:-r]  # (THUMB - 2r, THUMB - 2r, 3)
    ssd = cv2.matchTemplate(cur, centre, cv2.TM_SQDIFF).ravel()  # (side * side,): one per shift
    tried = {r * side + r, *np.argpartition(ssd, CANDIDATES)[:CANDIDATES].tolist()}  # no shift, best ones
    n = centre.shape[0]
    diff = min(_median_l1(cur[dy : dy + n, dx : dx + n] - centre) for dy, dx in (divmod(i, side) for i in tried))
    return diff / max(0.5 * (prev_contrast + cur_contrast), CONTRAST_FLOOR)


def cut_score(prev: np.ndarray, cur: np.ndarray) -> float:
    """How unlike two consecutive frames' block means are: 0.1-0.4 within a shot, 0.7-2 across a cut.

    The median over pixels of the absolute difference, over the median contrast: medians, so that
    an object moving fast over less than half the frame does not count. The least such median at
    the CANDIDATES shifts of least squared difference (one OpenCV call) and at no shift: a large
    moving object can draw the squared difference to its own shift, away from the background's.
    """
    region = _region(prev, cur)
    return _score(*_thumbnail(prev, region), *_thumbnail(cur, region))


class CutDetector:
    """Feed frames' block means in order; ``cuts`` lists the frames that start a new shot."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.cuts: list[int] = []
        self._count = 0
        self._prev: np.ndarray | None = None
        # the previous frame's thumbnail and contrast, reused while the region stays the same
        self._last: tuple[tuple[int, int, int, int], np.ndarray, float] | None = None

    def add(self, means: np.ndarray) -> None:
        """The next frame's :func:`block_means`; the same score as :func:`cut_score`, at half the work."""
        if self._prev is not None:
            region = _region(self._prev, means)
            if self._last is not None and self._last[0] == region:
                prev = self._last[1:]
            else:
                prev = _thumbnail(self._prev, region)
            cur = _thumbnail(means, region)
            if _score(*prev, *cur) > self.threshold:
                self.cuts.append(self._count)
            self._last = (region, *cur)
        self._prev = means
        self._count += 1
