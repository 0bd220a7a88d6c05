"""Pictures of motion: the standard flow colour wheel, trajectory overlays, PNG and GIF writers.

Colours are the standard optical-flow wheel (Baker et al., Middlebury; torchvision's
``flow_to_image``): hue is the direction of a displacement (+x, to the right: red; +y,
downwards in the image: yellow; -x: cyan; -y: violet), saturation its magnitude relative to
``max_mag``; zero motion is white.
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
    import torch
    from torchvision.utils import flow_to_image

    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim != 3 or disp.shape[2] != 2:
        raise ValueError(f"flow_to_color: expected (H, W, 2) displacements, got shape {disp.shape}")
    h, w = disp.shape[:2]
    flat = np.where(np.isfinite(disp), disp, 0.0).reshape(-1, 2)
    mag = np.hypot(flat[:, 0], flat[:, 1])
    if max_mag is None:
        max_mag = float(mag.max()) if mag.size else 0.0
    if not max_mag > 0:
        max_mag = 1.0
    flat = flat * np.minimum(1.0, max_mag / np.maximum(mag, 1e-12))[:, None]  # saturate beyond max_mag
    # flow_to_image scales by the largest magnitude it is given: one extra point of exactly max_mag
    flow = np.concatenate([flat, [[max_mag, 0.0]]]).T[:, None, :]  # (2, 1, H * W + 1)
    rgb = flow_to_image(torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)))  # (3, 1, H * W + 1)
    return np.ascontiguousarray(rgb[:, 0, :-1].T.numpy()).reshape(h, w, 3)


def color_wheel(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 legend: the colour of each displacement inside a unit disc."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    disp = np.stack([(xx - c) / c, (yy - c) / c], axis=-1)
    img = flow_to_color(disp, max_mag=1.0)
    img[np.hypot(disp[..., 0], disp[..., 1]) > 1.0] = 255
    return img


def motion_scale(disp: np.ndarray, visible: np.ndarray) -> float:
    """The magnitude (px) drawn fully saturated: the 99th percentile of the visible points' motion."""
    mags = np.hypot(disp[..., 0], disp[..., 1])[np.asarray(visible, bool) & np.isfinite(disp).all(axis=-1)]
    top = float(np.percentile(mags, 99)) if mags.size else 0.0
    return top if top > 0 else 1.0


def motion_image(disp: np.ndarray, visible: np.ndarray, max_mag: float) -> np.ndarray:
    """(Hg, Wg, 3) uint8 colour of each grid point's displacement; points not visible half grey."""
    colors = flow_to_color(disp, max_mag).astype(np.float32)
    hidden = ~np.asarray(visible, bool)
    colors[hidden] = 0.5 * colors[hidden] + 0.5 * 128
    return colors.astype(np.uint8)


def motion_picture(
    frame: np.ndarray,
    motions: list[tuple[np.ndarray, np.ndarray]],
    *,
    cell: int = 1,
    origin: tuple[int, int] = (0, 0),
    scale: int = 1,
) -> np.ndarray:
    """The one flow picture: frame | a colour image per motion | colour-wheel legend.

    frame (H, W, 3) uint8; motions: (disp (Hg, Wg, 2) px, visible (Hg, Wg) bool) of a grid whose
    cells are ``cell`` px wide starting at ``origin`` (y, x) in the frame. All motions share the
    first one's colour scale (:func:`motion_scale`), printed under the wheel. ``scale`` enlarges
    the whole picture (nearest for the motions).
    """
    h, w = frame.shape[:2]
    max_mag = motion_scale(*motions[0])
    y0, x0 = origin
    panels = [_upscale(frame, scale)]
    for disp, visible in motions:
        hg, wg = disp.shape[:2]
        canvas = np.full((h, w, 3), 255, np.uint8)
        canvas[y0 : y0 + hg * cell, x0 : x0 + wg * cell] = _upscale(motion_image(disp, visible, max_mag), cell, True)
        panels.append(_upscale(canvas, scale, nearest=True))
    side = panels[0].shape[0]
    labelled = side >= 32  # room for the magnitude under the wheel
    wheel = color_wheel(min(64, side - 14) if labelled else side)
    legend = np.full((side, max(wheel.shape[1], 48 if labelled else 0), 3), 255, np.uint8)
    legend[: wheel.shape[0], : wheel.shape[1]] = wheel
    if labelled:
        cv2.putText(legend, f"{max_mag:.1f} px", (2, wheel.shape[0] + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    gap = np.full((side, 4, 3), 255, np.uint8)
    parts = [p for panel in [*panels, legend] for p in (panel, gap)][:-1]
    return np.concatenate(parts, axis=1)


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


TRACK_SHADE = 0.8  # tracks are drawn darker than the wheel so that pale colours still show


def track_scale(tracks: np.ndarray) -> float:
    """The end-point displacement (px) drawn in full colour: the 99th percentile, at least 1 px."""
    disp = tracks[-1] - tracks[0]  # (N, 2)
    mags = np.hypot(disp[:, 0], disp[:, 1])
    return max(float(np.percentile(mags, 99)) if mags.size else 0.0, 1.0)


def direction_colors(tracks: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """(N, 3) uint8 colour-wheel colour of each track's end-point displacement; tracks (S, N, 2)."""
    disp = (tracks[-1] - tracks[0])[None].astype(np.float32)  # (1, N, 2)
    colors = flow_to_color(disp, track_scale(tracks) if max_mag is None else max_mag)[0]
    return (colors * TRACK_SHADE).astype(np.uint8)


def track_legend(height: int, max_mag: float) -> np.ndarray:
    """(height, W, 3) panel that reads a track picture: the colour wheel of the tracks' direction,
    the magnitude drawn in full colour, and what the dots and circles mean."""
    wheel = (color_wheel(min(64, max(16, height // 3))).astype(np.float32) * TRACK_SHADE).astype(np.uint8)
    wheel[color_wheel(wheel.shape[0]).min(axis=-1) == 255] = 255  # keep the background white
    lines = ["direction of", "motion", f"{max_mag:.1f} px: full", "dot: visible", "ring: hidden"]
    panel = np.full((height, max(wheel.shape[1], 92), 3), 255, np.uint8)
    panel[: wheel.shape[0], : wheel.shape[1]] = wheel[: min(height, wheel.shape[0])]
    y = wheel.shape[0] + 12
    for line in lines:
        if y > height - 2:
            break
        cv2.putText(panel, line, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        y += 12
    return panel


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

    frame (H, W, 3) uint8; tracks (S, N, 2) xy in frame pixels; vis (S, N) in [0, 1]; colors
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

    ``frames`` (S, H, W, 3) at the store's tracking size; None draws over the stored frame 0
    (grid resolution, blown up) instead. ``still`` is the last frame with full trails; it and the
    animation frames carry a legend on the right (:func:`track_legend`).
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
    tracks = w["disp"].reshape(len(w["disp"]), -1, 2)[:, pick] + points  # (S, n, 2)
    vis = w["vis"].reshape(len(w["vis"]), -1)[:, pick]  # (S, n)
    max_mag = track_scale(tracks)
    colors = direction_colors(tracks, max_mag)
    scale = _scale_for(tw)
    last = len(tracks) - 1
    legend = track_legend(th * scale, max_mag)

    def with_legend(picture: np.ndarray) -> np.ndarray:
        return np.concatenate([picture, np.full((picture.shape[0], 4, 3), 255, np.uint8), legend], axis=1)

    animation = [
        with_legend(draw_trajectories(frames[t], tracks, vis, t, colors, tail, scale)) for t in range(last + 1)
    ]
    still = with_legend(draw_trajectories(frames[last], tracks, vis, last, colors, tail=last, scale=scale))
    flow = motion_picture(
        np.asarray(frames[0]), [(w["disp"][-1], w["visible"][-1])], cell=g, origin=(margin, margin), scale=scale
    )
    return still, animation, flow
