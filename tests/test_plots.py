"""Image grids: each image lands in its row and column; bad input names the parameter."""

import matplotlib
import numpy as np
import pytest

from vaekit import plots

matplotlib.use("Agg")


def test_each_image_lands_in_its_row_and_column():
    images = np.stack([np.full((2, 3, 1), i, np.float32) for i in range(7)])
    grid = plots.image_grid(images, cols=3)
    assert grid.shape == (2 * 2, 3 * 3)  # the seventh image does not fill a row: left out
    for i in range(6):
        row, col = divmod(i, 3)
        assert np.all(grid[2 * row: 2 * row + 2, 3 * col: 3 * col + 3] == i)


def test_show_images_draws_one_panel_per_title(monkeypatch):
    shown = []
    monkeypatch.setattr(plots.plt, "show", lambda: shown.append(len(plots.plt.gcf().axes)))
    plots.show_images({"a": np.zeros((4, 28, 28, 1)), "b": np.ones((4, 28, 28, 1))}, cols=2)
    assert shown == [2]
    plots.plt.close("all")


@pytest.mark.parametrize("images, cols, message", [
    (np.zeros((4, 28, 28)), 2, r"images must be \(n, height, width, 1\); got shape \(4, 28, 28\)"),
    (np.zeros((4, 28, 28, 1)), 5, r"cols must be an integer in \[1, 4\]"),
])
def test_bad_input_names_the_parameter(images, cols, message):
    with pytest.raises(ValueError, match=message):
        plots.image_grid(images, cols)
