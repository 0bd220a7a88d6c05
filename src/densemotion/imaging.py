"""Image sizes and resizing, shared by the pictures (viz) and the clips (acquire).

A leaf module (OpenCV and NumPy only): what needs an image resized imports this, not the
picture code. Sizes are (H, W); frame sizes for video encoding (W, H, a bound on the longest
side) are :func:`densemotion.video.bounded_size`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def fit_box(size: Sequence[int], box: Sequence[int]) -> tuple[int, int]:
    """(H, W) of an image of ``size`` (H, W) enlarged or shrunk to just fit ``box`` (H, W), aspect kept."""
    (h, w), (bh, bw) = (int(size[0]), int(size[1])), box
    s = min(bh / h, bw / w)
    return max(1, round(h * s)), max(1, round(w * s))


def fit_image(image: np.ndarray, size: Sequence[int], nearest: bool = False) -> np.ndarray:
    """``image`` (H, W, C) resized to ``size`` (H, W): area-averaged when shrinking, linear when
    enlarging, nearest on request (grid cells stay crisp); unchanged when already that size."""
    h, w = image.shape[:2]
    ph, pw = int(size[0]), int(size[1])
    if (h, w) == (ph, pw):
        return np.ascontiguousarray(image)
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if ph <= h and pw <= w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (pw, ph), interpolation=interp)
