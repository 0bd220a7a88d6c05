import numpy as np
import pytest

from densemotion.tracking import grid


def test_grid_shape_and_points_follow_the_contract():
    shape = grid.grid_shape((20, 30), grid_stride=4, margin=2)
    assert shape == (4, 6)
    pts = grid.grid_points(shape, 4, 2).reshape(4, 6, 2)
    assert pts.dtype == np.float32
    # (i, j) -> x = m + (j + .5) g - .5, y = m + (i + .5) g - .5
    assert pts[0, 0].tolist() == [3.5, 3.5]
    assert pts[2, 5].tolist() == [2 + 5.5 * 4 - 0.5, 2 + 2.5 * 4 - 0.5]


def test_every_pixel_grid_is_the_pixel_centres():
    pts = grid.grid_points(grid.grid_shape((3, 5), 1, 0), 1, 0)
    assert pts[:5, 0].tolist() == [0, 1, 2, 3, 4] and pts[5].tolist() == [0, 1]


def test_grid_point_is_the_centre_of_its_downsized_block():
    # a frame that is its own x coordinate: the block average is the grid point's x
    h, w, g, m = 16, 24, 4, 2
    xs = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()
    shape = grid.grid_shape((h, w), g, m)
    small = grid.downsize_to_grid(xs, shape, g, m)
    pts = grid.grid_points(shape, g, m).reshape(*shape, 2)
    assert small.shape == (*shape, 3)
    assert np.allclose(small[..., 0], pts[..., 0], atol=0.5)


def test_frames_smaller_than_margin_are_refused():
    with pytest.raises(grid.GridError, match="too small"):
        grid.grid_shape((10, 10), grid_stride=4, margin=4)


def test_window_starts_skip_windows_past_the_end():
    starts, skipped = grid.window_starts(20, window=8, stride=8)
    assert starts.tolist() == [0, 8] and skipped == [16]
    starts, skipped = grid.window_starts(20, window=8, stride=4)
    assert starts.tolist() == [0, 4, 8, 12] and skipped == [16]
    assert grid.window_starts(16, 8, 8)[1] == []


def test_window_longer_than_video_is_an_error():
    with pytest.raises(grid.GridError, match="fewer than one window"):
        grid.window_starts(5, window=8, stride=8)


def test_resize_frames_area():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[:, :4] = 200
    out = grid.resize_frames(frames, (4, 4))
    assert out.shape == (2, 4, 4, 3) and out[0, 0, 0, 0] == 200 and out[0, 3, 0, 0] == 0
    assert grid.resize_frames(frames, None) is frames


def _old_readers(meta: dict, to_size: tuple[int, int]) -> dict:
    """What the readers of a store's meta computed by hand before the Grid: kept literally."""
    from densemotion.metrics import rescale_points, size_ratio

    points = grid.grid_points(tuple(meta["grid_shape"]), int(meta["grid_stride"]), int(meta["margin"]))
    th, tw = meta["tracking_size"]
    g, margin = int(meta["grid_stride"]), int(meta["margin"])
    hg, wg = meta["grid_shape"]
    covered = np.zeros((th, tw), bool)
    covered[margin : margin + hg * g, margin : margin + wg * g] = True
    return {
        "points": points,
        "points_at": rescale_points(points, size_ratio(to_size, meta["tracking_size"])),
        "accuracy_points_at": rescale_points(points.astype(np.float64), size_ratio(to_size, meta["tracking_size"])),
        "frame_scale": size_ratio(meta["frame_size"], meta["tracking_size"]),
        "covered": covered,
        "origin": (margin, margin),
    }


@pytest.mark.parametrize(
    ("size", "g", "m", "to_size"), [((20, 30), 4, 2, (48, 64)), ((48, 80), 8, 0, (31, 57)), ((9, 9), 1, 3, (9, 9))]
)
def test_grid_helpers_match_what_the_readers_computed_by_hand(size, g, m, to_size):
    g_ = grid.Grid.of(size, g, m)
    meta = {"tracking_size": list(size), "grid_stride": g, "margin": m, "grid_shape": list(grid.grid_shape(size, g, m))}
    meta["frame_size"] = list(to_size)
    old = _old_readers(meta, to_size)
    assert g_.shape == tuple(meta["grid_shape"]) and g_.count == len(old["points"])
    assert g_.points().dtype == np.float32 and np.array_equal(g_.points(), old["points"])
    at = g_.points_at(to_size)
    assert (
        at.dtype == np.float64
        and np.array_equal(at, old["points_at"])
        and np.array_equal(at, old["accuracy_points_at"])
    )
    assert g_.scale_to(to_size) == old["frame_scale"]
    mask = np.zeros(size, bool)
    mask[g_.covered] = True
    assert np.array_equal(mask, old["covered"]) and g_.origin == old["origin"]
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert np.array_equal(g_.downsize(frame), grid.downsize_to_grid(frame, g_.shape, g, m))


def test_a_grid_is_always_the_grid_of_its_size():
    assert grid.Grid((4, 6), 4, 2, (20, 30)) == grid.Grid.of((20, 30), 4, 2)
    with pytest.raises(grid.GridError, match=r"grid shape \[4, 5\] is not the \[4, 6\] grid of 20x30 frames"):
        grid.Grid((4, 5), 4, 2, (20, 30))
    with pytest.raises(grid.GridError, match="too small"):
        grid.Grid.of((10, 10), 4, 4)
