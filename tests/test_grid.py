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
