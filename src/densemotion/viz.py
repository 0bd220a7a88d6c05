"""Pictures of motion: the colour wheel, trajectory overlays, PNG and GIF writers.

Colour wheel: hue is the direction of a displacement (0 deg = +x, to the right, red; +90 deg =
+y, downwards in the image), saturation its magnitude relative to ``max_mag``; zero motion is
white.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densemotion.atomic import atomic_path


def flow_to_color(disp: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """(H, W, 2) x, y displacement -> (H, W, 3) uint8 RGB on the colour wheel.

    ``max_mag`` (pixels) maps to full saturation; None uses the largest finite magnitude in
    ``disp``. Larger magnitudes saturate; non-finite displacements are drawn white.
    """
    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim != 3 or disp.shape[2] != 2:
        raise ValueError(f"flow_to_color: expected (H, W, 2) displacements, got shape {disp.shape}")
    dx, dy = disp[..., 0], disp[..., 1]
    finite = np.isfinite(dx) & np.isfinite(dy)
    dx, dy = np.where(finite, dx, 0), np.where(finite, dy, 0)
    mag = np.hypot(dx, dy)
    if max_mag is None:
        max_mag = float(mag.max()) if mag.size else 0.0
    if not max_mag > 0:
        max_mag = 1.0
    hsv = np.empty(disp.shape[:2] + (3,), dtype=np.float32)
    hsv[..., 0] = np.degrees(np.arctan2(dy, dx)) % 360.0  # OpenCV float HSV: hue in degrees
    hsv[..., 1] = np.minimum(mag / max_mag, 1.0)
    hsv[..., 2] = 1.0
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def color_wheel(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 legend: the colour of each displacement inside a unit disc."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    disp = np.stack([(xx - c) / c, (yy - c) / c], axis=-1)
    img = flow_to_color(disp, max_mag=1.0)
    img[np.hypot(disp[..., 0], disp[..., 1]) > 1.0] = 255
    return img


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_gif(path: str | Path, frames: list[np.ndarray], fps: float = 4.0) -> None:
    """Write (H, W, 3) uint8 RGB frames as a looping animated GIF, atomically."""
    from PIL import Image

    if not frames:
        raise ValueError(f"{path}: no frames to write")
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(round(1000 / fps)),
            loop=0,
        )


def _scale_for(width: int, min_width: int = 448) -> int:
    """Integer upscaling that makes small frames readable (1 for frames already wide enough)."""
    return max(1, -(-min_width // max(width, 1)))


def _upscale(image: np.ndarray, scale: int, nearest: bool = False) -> np.ndarray:
    if scale == 1:
        return image
    h, w = image.shape[:2]
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(image, (w * scale, h * scale), interpolation=interp)


def direction_colors(tracks: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """(N, 3) uint8 colour-wheel colour of each track's end-point displacement; tracks (T, N, 2)."""
    disp = (tracks[-1] - tracks[0])[None].astype(np.float32)  # (1, N, 2)
    if max_mag is None:
        mags = np.hypot(disp[..., 0], disp[..., 1])
        max_mag = max(float(np.percentile(mags, 99)) if mags.size else 0.0, 1.0)
    colors = flow_to_color(disp, max_mag)[0]
    return (colors * 0.8).astype(np.uint8)  # darker than the wheel so that pale colours still show


def draw_trajectories(
    frame: np.ndarray,
    tracks: np.ndarray,
    vis: np.ndarray,
    t: int,
    colors: np.ndarray,
    tail: int = 4,
    scale: int = 1,
) -> np.ndarray:
    """Frame with each point's path up to frame ``t`` drawn over it, older segments fainter.

    frame (H, W, 3) uint8; tracks (T, N, 2) xy in frame pixels; vis (T, N) in [0, 1]; colors
    (N, 3) uint8. Segments are drawn while both ends are visible; a point's position at ``t`` is a
    filled dot when visible, an open circle when not. ``scale`` upscales the picture first.
    """
    canvas = _upscale(frame, scale).astype(np.float32)
    fixed = np.rint(((tracks + 0.5) * scale - 0.5) * 16).astype(np.int64)  # cv2 shift=4: 1/16 px
    seen = np.asarray(vis) >= 0.5
    thickness = max(1, scale // 2)
    for u in range(max(1, t - tail + 1), t + 1):  # oldest segment first
        layer = canvas.copy()
        for n in np.flatnonzero(seen[u] & seen[u - 1]).tolist():
            color = tuple(int(c) for c in colors[n])
            cv2.line(layer, tuple(fixed[u - 1, n]), tuple(fixed[u, n]), color, thickness, cv2.LINE_AA, shift=4)
        alpha = (tail - (t - u)) / tail  # 1 for the newest segment
        canvas = alpha * layer + (1 - alpha) * canvas
    for n in range(tracks.shape[1]):
        color = tuple(int(c) for c in colors[n])
        filled = -1 if seen[t, n] else max(1, scale // 3)
        cv2.circle(canvas, tuple(fixed[t, n]), max(1, scale) * 16, color, filled, cv2.LINE_AA, shift=4)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def flow_picture(
    frame0: np.ndarray, disp: np.ndarray, vis: np.ndarray, origin: tuple[int, int], cell: int, scale: int = 1
) -> np.ndarray:
    """Frame 0 beside the colour-wheel image of the end-point displacement, with a legend.

    frame0 (H, W, 3); disp (Hg, Wg, 2) and vis (Hg, Wg) of the grid whose cells are ``cell`` px
    wide starting at ``origin`` (y, x) in the frame. Points hidden at the end are drawn half grey.
    """
    h, w = frame0.shape[:2]
    hg, wg = disp.shape[:2]
    mags = np.hypot(disp[..., 0], disp[..., 1])[vis >= 0.5]
    max_mag = max(float(np.percentile(mags, 99)) if mags.size else 0.0, 1.0)
    colors = flow_to_color(disp, max_mag).astype(np.float32)
    colors[vis < 0.5] = 0.5 * colors[vis < 0.5] + 0.5 * 128
    flow = np.full((h, w, 3), 255, np.uint8)
    y0, x0 = origin
    flow[y0 : y0 + hg * cell, x0 : x0 + wg * cell] = _upscale(colors.astype(np.uint8), cell, nearest=True)
    left, right = _upscale(frame0, scale), _upscale(flow, scale, nearest=True)
    legend = color_wheel(max(16, min(64, right.shape[0] // 4)))
    right[2 : 2 + legend.shape[0], 2 : 2 + legend.shape[1]] = legend
    cv2.putText(
        right, f"{max_mag:.1f} px", (4, legend.shape[0] + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
    )
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _thin_grid(shape: tuple[int, int], max_tracks: int) -> np.ndarray:
    """Flat indices of every k-th grid point in both directions, about ``max_tracks`` of them."""
    hg, wg = shape
    step = max(1, int(np.ceil(np.sqrt(hg * wg / max(max_tracks, 1)))))
    ii, jj = np.meshgrid(np.arange(step // 2, hg, step), np.arange(step // 2, wg, step), indexing="ij")
    return (ii * wg + jj).ravel()


def window_pictures(
    store, k: int, frames: np.ndarray | None = None, max_tracks: int = 600, tail: int = 4
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Pictures of window ``k`` of a trajectory store -> (still, animation frames, flow picture).

    ``frames`` (T, H, W, 3) at the store's tracking size; None draws over the stored frame 0
    (grid resolution, blown up) instead. ``still`` is the last frame with full trails.
    """
    meta = store.meta
    th, tw = meta["tracking_size"]
    g, margin = int(meta["grid_stride"]), int(meta["margin"])
    hg, wg = meta["grid_shape"]
    w = store.window(k)
    if frames is None:
        background = np.zeros((th, tw, 3), np.uint8)
        background[margin : margin + hg * g, margin : margin + wg * g] = _upscale(w["frame0"], g)
        frames = np.broadcast_to(background, (w["disp"].shape[0], th, tw, 3))
    pick = _thin_grid((hg, wg), max_tracks)
    points = store.grid_points()[pick]  # (n, 2)
    tracks = w["disp"].reshape(len(w["disp"]), -1, 2)[:, pick] + points  # (T, n, 2)
    vis = w["vis"].reshape(len(w["vis"]), -1)[:, pick]  # (T, n)
    colors = direction_colors(tracks)
    scale = _scale_for(tw)
    last = len(tracks) - 1
    animation = [draw_trajectories(frames[t], tracks, vis, t, colors, tail, scale) for t in range(last + 1)]
    still = draw_trajectories(frames[last], tracks, vis, last, colors, tail=last, scale=scale)
    flow = flow_picture(np.asarray(frames[0]), w["disp"][-1], w["vis"][-1], (margin, margin), g, scale)
    return still, animation, flow
