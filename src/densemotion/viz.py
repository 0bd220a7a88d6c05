"""Pictures of motion: the standard flow colour wheel, trajectory overlays, PNG and GIF writers.

Colours are the standard optical-flow wheel (Baker et al., Middlebury; torchvision's
``flow_to_image``): hue is the direction of a displacement (+x, to the right: red; +y,
downwards in the image: yellow; -x: cyan; -y: violet), saturation its magnitude relative to
``max_mag``; zero motion is white. A motion picture's ``max_mag`` is a high percentile of the
tracker's motion (:data:`SCALE_PERCENTILE`), not its largest: a few wild points must not wash
every panel out to white.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from densemotion.atomic import atomic_path
from densemotion.imaging import fit_box, fit_image
from densemotion.metrics import VISIBLE_PROB

if TYPE_CHECKING:
    from densemotion.tracking.grid import Grid


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


# The magnitude drawn in full colour: this percentile of the visible points' motion (larger
# saturates). The 99th is stretched to a tracker's outliers once they are 1 % of the points (real
# footage: full colour = 110 px, every panel white); the 95th holds up to 5 %, and a moving object
# smaller than that is drawn saturated, its direction still read from its hue.
SCALE_PERCENTILE = 95
MIN_FULL_COLOUR_PX = 0.5  # px at frame scale: the floor, so that a still window's jitter stays pale


def motion_scale(disp: np.ndarray, visible: np.ndarray, floor: float = 0.0) -> float:
    """The magnitude (px) drawn fully saturated: a high percentile (:data:`SCALE_PERCENTILE`) of
    the visible points' motion, at least ``floor`` (px), and 1 px where both are 0."""
    mags = np.hypot(disp[..., 0], disp[..., 1])[np.asarray(visible, bool) & np.isfinite(disp).all(axis=-1)]
    top = max(float(np.percentile(mags, SCALE_PERCENTILE)) if mags.size else 0.0, floor)
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
    titles: Sequence[str] = (),
    cell: int = 1,
    origin: tuple[int, int] = (0, 0),
    extent: Sequence[int] | None = None,
    panel: Sequence[int] | None = None,
    px_scale: float = 1.0,
    scale_name: str = "tracker",
    unit: str = "px at frame scale",
    arrows: bool = False,
    scale_of: int = 1,
) -> np.ndarray:
    """The one flow picture: frame | a colour image per motion | colour-wheel legend, each under a
    title (``arrows``: and, before the legend, the first motion as arrows over the frame,
    :func:`arrows_panel`). ``scale_of``: how many of the first motions set the shared colour scale
    (1: the first; a prediction's hypotheses pool theirs, so that none saturates).

    frame (H, W, 3) uint8 at any resolution; motions: (disp (Hg, Wg, 2) px, visible (Hg, Wg) bool)
    of a grid whose cells are ``cell`` px wide from ``origin`` (y, x) in a frame of ``extent``
    (H, W) px, the grid's own pixels (default: the frame's size). Every panel is ``panel`` (H, W)
    px (default: the frame's size): the frame resized by :func:`fit_image`, the motions by nearest
    so that grid cells stay visible. ``titles``: the frame's, then one per motion (missing ones
    read "frame" and "motion"). All motions share the first one's colour scale
    (:func:`motion_scale`, at least :data:`MIN_FULL_COLOUR_PX` frame px); the key prints it times
    ``px_scale`` (frame px per grid px) and what it is of (``scale_name``: the first motion).
    """
    size = _pair(frame.shape[:2] if panel is None else panel)
    grid_extent = _pair(frame.shape[:2] if extent is None else extent)
    reference = motions[:scale_of]  # whose motion sets the shared colour scale (the first; or all hypotheses)
    pooled = (
        np.concatenate([d.reshape(-1, 2) for d, _ in reference]),
        np.concatenate([v.ravel() for _, v in reference]),
    )
    max_mag = motion_scale(*pooled, floor=MIN_FULL_COLOUR_PX / px_scale)
    panels = [fit_image(frame, size)]
    for disp, visible in motions:
        panels.append(_motion_panel(motion_image(disp, visible, max_mag), size, grid_extent, cell, origin))
    names = panel_titles(titles, motions, max_mag, px_scale)
    if arrows:
        drawn, gain = arrows_panel(panels[0], motions[0][0], grid_extent, cell, origin, max_mag)
        panels.append(drawn)
        names.insert(len(names) - 1, f"arrows (lengths x{gain:.2g})" if abs(gain - 1) > 0.05 else "arrows (to scale)")
    panels.append(flow_legend(size[0], size[1], max_mag * px_scale, scale_name, unit))
    return side_by_side(with_titles(panels, names))


ARROW_SPACING = 28  # px of a panel between arrows


def arrows_panel(
    frame: np.ndarray,
    disp: np.ndarray,
    extent: tuple[int, int],
    cell: int,
    origin: tuple[int, int],
    max_mag: float,
) -> tuple[np.ndarray, float]:
    """(panel, gain): ``frame`` (a panel, (H, W, 3)) with an arrow every :data:`ARROW_SPACING` px
    from the grid point there along its displacement (disp (Hg, Wg, 2) px of a frame of ``extent``
    (H, W), cells ``cell`` px from ``origin`` (y, x)), in its flow colour with a dark edge. Lengths
    are multiplied by ``gain`` so that ``max_mag`` spans most of the spacing (never shortened)."""
    ph, pw = frame.shape[:2]
    sy, sx = ph / extent[0], pw / extent[1]  # panel px per frame px
    gain = max(1.0, 0.8 * ARROW_SPACING / max(max_mag * max(sx, sy), 1e-6))
    colors = flow_to_color(disp, max_mag)
    canvas = (0.6 * frame.astype(np.float32) + 0.4 * 255).astype(np.uint8)  # paler, so that arrows show
    hg, wg = disp.shape[:2]
    step_i = max(1, round(ARROW_SPACING / (cell * sy)))
    step_j = max(1, round(ARROW_SPACING / (cell * sx)))
    for i in range(step_i // 2, hg, step_i):
        for j in range(step_j // 2, wg, step_j):
            dx, dy = disp[i, j]
            if not (np.isfinite(dx) and np.isfinite(dy)):
                continue
            x0, y0 = (origin[1] + (j + 0.5) * cell) * sx, (origin[0] + (i + 0.5) * cell) * sy
            start = (round(x0 * 16), round(y0 * 16))  # cv2 shift=4: 1/16 px
            end = (round((x0 + gain * dx * sx) * 16), round((y0 + gain * dy * sy) * 16))
            color = tuple(int(c * 0.8) for c in colors[i, j])
            cv2.arrowedLine(canvas, start, end, (40, 40, 40), 3, cv2.LINE_AA, shift=4, tipLength=0.3)
            cv2.arrowedLine(canvas, start, end, color, 1, cv2.LINE_AA, shift=4, tipLength=0.3)
    return canvas, gain


FAINT = 0.1  # a motion whose own percentile is under this share of the scale is drawn nearly white


def panel_titles(
    titles: Sequence[str], motions: list[tuple[np.ndarray, np.ndarray]], max_mag: float, px_scale: float
) -> list[str]:
    """:func:`motion_picture`'s titles: the given ones (missing ones read "frame", "motion"), and
    a motion after the first that is faint at the shared scale ``max_mag`` says so, so that a
    white panel (a model that predicts about zero) reads as that and not as a broken picture."""
    defaults = ["frame", *["motion"] * len(motions)]
    names = [*titles[: len(defaults)], *defaults[len(titles) :], "colour key"]
    for i, (disp, visible) in enumerate(motions[1:], start=2):
        own = motion_scale(disp, visible)
        if own < FAINT * max_mag:
            names[i] += f": nearly no motion ({SCALE_PERCENTILE}th pct {own * px_scale:.2g} px)"
    return names


def _pair(size: Sequence[int]) -> tuple[int, int]:
    return int(size[0]), int(size[1])


def _motion_panel(
    colors: np.ndarray, size: tuple[int, int], extent: tuple[int, int], cell: int, origin: tuple[int, int]
) -> np.ndarray:
    """(H, W, 3) white panel of ``size`` with the grid's colours (Hg, Wg, 3) where the grid lies in
    a frame of ``extent`` (cells ``cell`` px from ``origin`` (y, x)), enlarged by nearest."""
    (ph, pw), (eh, ew) = size, extent
    hg, wg = colors.shape[:2]
    y0, x0 = round(origin[0] * ph / eh), round(origin[1] * pw / ew)
    y1, x1 = min(ph, round((origin[0] + hg * cell) * ph / eh)), min(pw, round((origin[1] + wg * cell) * pw / ew))
    canvas = np.full((ph, pw, 3), 255, np.uint8)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = fit_image(colors, (y1 - y0, x1 - x0), nearest=True)
    return canvas


MAX_WHEEL = 200  # px: a larger colour wheel reads no better


def key_lines(max_mag: float, scale_name: str = "tracker", unit: str = "px at frame scale") -> list[str]:
    """The colour key's text: the magnitude in full colour, its ``unit`` (its last word wraps to the
    next line), and what the scale is of."""
    first, _, rest = unit.rpartition(" ") if unit.count(" ") >= 2 else (unit, "", "")
    pct = f"{rest} ({SCALE_PERCENTILE}th pct".lstrip()
    return ["full colour =", f"{_px(max_mag)} {first}", pct, f"of {scale_name})"]


def flow_legend(
    height: int, max_side: int, max_mag: float, scale_name: str = "tracker", unit: str = "px at frame scale"
) -> np.ndarray:
    """(height, W, 3) key to the motion panels: the colour wheel, as large as the height leaves
    beside the text and at most ``max_side`` (and :data:`MAX_WHEEL`), over the magnitude drawn in
    full colour (:func:`key_lines`: "full colour = N px at frame scale (95th pct of tracker)"). W is
    the wheel's or the text's width, whichever is wider."""
    lines = key_lines(max_mag, scale_name, unit)
    text_h = len(lines) * LINE_HEIGHT + 4
    if height - text_h < 32:  # too low for the text under a readable wheel: the wheel alone
        lines, text_h = [], 0
    side = max(1, min(height - text_h, max_side, MAX_WHEEL))
    width = max([side, *(_text_width(line) + 4 for line in lines)])
    legend = np.full((height, width, 3), 255, np.uint8)
    x0 = (width - side) // 2
    legend[:side, x0 : x0 + side] = color_wheel(side)
    legend[side:] = text_block(lines, width, height - side)
    return legend


def _px(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# --- layout: panel sizes, titles, text ------------------------------------------------------

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.45  # titles and labels: about 7 px per character
LINE_HEIGHT = 16  # px per line of text at TEXT_SCALE
GAP = 4  # white px between panels


def _text_width(text: str, scale: float = TEXT_SCALE) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def wrap_text(text: str, width: int, scale: float = TEXT_SCALE) -> list[str]:
    """``text`` in lines no wider than ``width`` px, broken after spaces and underscores (inside a
    word only where the word is longer than a line)."""
    lines: list[str] = []
    line = ""
    for piece in (p for p in re.findall(r"[^ _]*[ _]?", text) if p):
        if line and _text_width((line + piece).rstrip(), scale) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
        while len(line) > 1 and _text_width(line.rstrip(), scale) > width:  # a word longer than a line
            cut = _fitting(line, width, scale)
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _fitting(text: str, width: int, scale: float) -> int:
    """How many leading characters of ``text`` fit in ``width`` px (at least one)."""
    n = 1
    while n < len(text) and _text_width(text[: n + 1], scale) <= width:
        n += 1
    return n


def text_block(lines: Sequence[str], width: int, height: int, centre: bool = False) -> np.ndarray:
    """(height, width, 3) white block with ``lines`` in dark text from the top; lines that do not fit are left out."""
    block = np.full((height, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        baseline = (i + 1) * LINE_HEIGHT - 4
        if baseline + 3 > height:
            break
        x = max(0, (width - _text_width(line)) // 2) if centre else 2
        cv2.putText(block, line, (x, baseline), FONT, TEXT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return block


def with_titles(panels: Sequence[np.ndarray], titles: Sequence[str]) -> list[np.ndarray]:
    """Each panel under its title, wrapped to the panel's width; every title strip as high as the tallest."""
    wrapped = [wrap_text(t, p.shape[1] - 4) for p, t in zip(panels, titles, strict=True)]
    height = max(len(lines) for lines in wrapped) * LINE_HEIGHT + 4
    strips = [text_block(lines, p.shape[1], height, centre=True) for p, lines in zip(panels, wrapped, strict=True)]
    return [np.concatenate([strip, p]) for strip, p in zip(strips, panels, strict=True)]


def side_by_side(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Panels of one height in a row, :data:`GAP` white px apart."""
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


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
    stroke: int | None = None,
) -> np.ndarray:
    """Frame with each point's path up to frame ``t`` drawn over it, older segments fainter.

    frame (H, W, 3) uint8; tracks (S, N, 2) xy in frame pixels; vis (S, N) in [0, 1]; colors
    (N, 3) uint8. Segments are drawn while both ends are visible; a point's position at ``t`` is a
    filled dot when visible, an open circle when not. ``scale`` upscales the picture first;
    ``stroke`` (px) is the lines' thickness and the dots' radius (default: from ``scale``).
    """
    canvas = _upscale(frame, scale).astype(np.float32)
    fixed = np.rint(((tracks + 0.5) * scale - 0.5) * 16).astype(np.int64)  # cv2 shift=4: 1/16 px
    seen = np.asarray(vis) >= VISIBLE_PROB
    thickness = max(1, scale // 2) if stroke is None else stroke
    radius = max(1, scale) if stroke is None else stroke
    for u in range(max(1, t - tail + 1), t + 1):  # oldest segment first
        layer = canvas.copy()
        for n in np.flatnonzero(seen[u] & seen[u - 1]).tolist():
            color = tuple(int(c) for c in colors[n])
            cv2.line(layer, tuple(fixed[u - 1, n]), tuple(fixed[u, n]), color, thickness, cv2.LINE_AA, shift=4)
        alpha = (tail - (t - u)) / tail  # 1 for the newest segment
        canvas = alpha * layer + (1 - alpha) * canvas
    for n in range(tracks.shape[1]):
        color = tuple(int(c) for c in colors[n])
        filled = -1 if seen[t, n] else max(1, radius // 3)
        cv2.circle(canvas, tuple(fixed[t, n]), radius * 16, color, filled, cv2.LINE_AA, shift=4)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _thin_grid(shape: tuple[int, int], max_tracks: int) -> np.ndarray:
    """Flat indices of every k-th grid point in both directions, about ``max_tracks`` of them."""
    hg, wg = shape
    step = max(1, int(np.ceil(np.sqrt(hg * wg / max(max_tracks, 1)))))
    ii, jj = np.meshgrid(np.arange(step // 2, hg, step), np.arange(step // 2, wg, step), indexing="ij")
    return (ii * wg + jj).ravel()


def grid_frame(grid: Grid, frame0: np.ndarray) -> np.ndarray:
    """(H, W, 3) at the tracking size of a store's ``grid``: its grid-resolution frame ``frame0``
    (Hg, Wg, 3) blown up over the grid, black margins; what there is to draw on without frames."""
    background = np.zeros((*grid.size, 3), np.uint8)
    background[grid.covered] = _upscale(frame0, grid.stride)
    return background


def _window_tracks(store, w: dict, max_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """(tracks (S, n, 2) xy tracking px, vis (S, n)) of about ``max_tracks`` grid points of window ``w``."""
    grid = store.info.grid
    pick = _thin_grid(grid.shape, max_tracks)
    points = grid.points()[pick]  # (n, 2)
    tracks = w["disp"].reshape(len(w["disp"]), -1, 2)[:, pick] + points
    return tracks, w["vis"].reshape(len(w["vis"]), -1)[:, pick]


def window_pictures(
    store, k: int, frames: np.ndarray | None = None, max_tracks: int = 600, tail: int = 4
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Pictures of window ``k`` of a trajectory store -> (still, animation frames, flow picture).

    ``frames`` (S, H, W, 3) at the store's tracking size; None draws over the stored frame 0
    (grid resolution, blown up) instead. ``still`` is the last frame with full trails; it and the
    animation frames carry a legend on the right (:func:`track_legend`). The flow picture is
    :func:`motion_picture` of the tracker's motion to the last frame, panels as large as the still.
    """
    info = store.info
    grid = info.grid
    th, tw = grid.size
    w = store.window(k)
    if frames is None:
        frames = np.broadcast_to(grid_frame(grid, w["frame0"]), (w["disp"].shape[0], th, tw, 3))
    tracks, vis = _window_tracks(store, w, max_tracks)  # (S, n, 2), (S, n)
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
    start = w["start"]
    flow = motion_picture(
        np.asarray(frames[0]),
        [(w["disp"][-1], w["visible"][-1])],
        titles=[f"frame {start}", f"tracker ({info.tracker}): motion to frame {start + last}"],
        cell=grid.stride,
        origin=grid.origin,
        extent=grid.size,
        panel=(th * scale, tw * scale),
        px_scale=float(np.mean(info.frame_scale)),
    )
    return still, animation, flow


def tracks_thumbnail(store, k: int, frame: np.ndarray | None, size: Sequence[int], max_tracks: int = 100) -> np.ndarray:
    """(H, W, 3) of ``size`` (H, W): window ``k``'s whole tracks over ``frame``, its last frame at
    any resolution (None: the stored grid-resolution frame 0), a contact sheet's cell."""
    from densemotion.metrics import rescale_points

    w = store.window(k)
    grid = store.info.grid
    th, tw = grid.size
    tracks, vis = _window_tracks(store, w, max_tracks)
    shown = rescale_points(tracks, (size[1] / tw, size[0] / th)).astype(np.float32)  # (S, n, 2) thumbnail px
    background = fit_image(grid_frame(grid, w["frame0"]) if frame is None else frame, size)
    last = len(tracks) - 1
    return draw_trajectories(background, shown, vis, last, direction_colors(tracks), tail=max(last, 1), stroke=2)


SHEET_BOX = (180, 240)  # (H, W) every contact-sheet thumbnail is fitted into
SHEET_GAP = 12  # white px between cells


def sheet_columns(count: int) -> int:
    """Cells per row of a contact sheet of ``count``: about square, at least 3 (or ``count``), at most 8."""
    return max(1, min(count, 8, max(3, math.ceil(math.sqrt(count)))))


def contact_sheet(cells: Sequence[tuple[np.ndarray, Sequence[str]]], title: str) -> np.ndarray:
    """Thumbnails (each fitting :data:`SHEET_BOX`) with their label lines under them, in a grid of
    :func:`sheet_columns` columns under ``title``: every video at a glance.

    Each cell is a box as wide as SHEET_BOX and as high as the tallest thumbnail, its thumbnail
    bottom-aligned and centred, then the labels (wrapped to the box's width; every label block as
    high as the tallest). Row r, column c starts at y = header + r * (cell height + SHEET_GAP),
    x = SHEET_GAP + c * (box width + SHEET_GAP).
    """
    if not cells:
        raise ValueError("contact_sheet: no thumbnails to lay out")
    bh, bw = max(min(t.shape[0], SHEET_BOX[0]) for t, _ in cells), SHEET_BOX[1]  # no row taller than its thumbnails
    labels = [[part for line in lines for part in wrap_text(line, bw - 4)] for _, lines in cells]
    label_h = max(len(lines) for lines in labels) * LINE_HEIGHT + 4
    columns = sheet_columns(len(cells))
    rows = -(-len(cells) // columns)
    width = SHEET_GAP + columns * (bw + SHEET_GAP)
    header = wrap_text(title, width - 4)
    header_h = len(header) * LINE_HEIGHT + 8
    cell_h = bh + label_h
    sheet = np.full((header_h + rows * (cell_h + SHEET_GAP), width, 3), 255, np.uint8)
    sheet[:header_h] = text_block(header, width, header_h)
    for i, ((thumb, _), lines) in enumerate(zip(cells, labels, strict=True)):
        y, x = header_h + (i // columns) * (cell_h + SHEET_GAP), SHEET_GAP + (i % columns) * (bw + SHEET_GAP)
        h, w = min(thumb.shape[0], bh), min(thumb.shape[1], bw)
        sheet[y + bh - h : y + bh, x + (bw - w) // 2 : x + (bw - w) // 2 + w] = thumb[:h, :w]
        sheet[y + bh : y + cell_h, x : x + bw] = text_block(lines, bw, label_h, centre=True)
    return sheet


def scale_panel(scale: np.ndarray, height: int, side: int) -> np.ndarray:
    """(height, W, 3): a head's uncertainty, its scale b (Hg, Wg) px, as a heat map (viridis; dark:
    sure, bright: unsure) of longest side ``side`` under a title giving the brightest value."""
    h, w = scale.shape
    top = float(np.percentile(scale, 99)) or 1.0
    levels = np.clip(scale / top * 255, 0, 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    heat = fit_image(heat, fit_box((h, w), (side, side)), nearest=True)
    titled = with_titles([heat], [f"uncertainty b, bright = {top:.2g} px"])[0]
    canvas = np.full((max(height, titled.shape[0]), titled.shape[1], 3), 255, np.uint8)
    canvas[: titled.shape[0]] = titled
    return canvas[:height] if canvas.shape[0] > height else canvas
