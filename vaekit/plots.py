"""Static figures for the chapters: batches of images as grids, side by side (matplotlib).

The dashboards (:mod:`vaekit.widgets`) redraw in place as sliders move; these draw a
picture once, for a cell's output.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """Images ``(n, height, width, 1)`` as one ``(rows * height, cols * width)`` picture, row by row.

    ``rows = n // cols``: images that do not fill a last row are left out.

    Example:
      >>> image_grid(np.arange(4.0).reshape(4, 1, 1, 1), cols=2)
      array([[0., 1.],
             [2., 3.]])
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"images must be (n, height, width, 1); got shape {images.shape}")
    if not isinstance(cols, int) or isinstance(cols, bool) or not 1 <= cols <= len(images):
        raise ValueError(f"cols must be an integer in [1, {len(images)}] (the number of images); got {cols!r}")
    n, height, width, _ = images.shape
    rows = n // cols
    grid = images[: rows * cols, ..., 0].reshape(rows, cols, height, width)
    return grid.transpose(0, 2, 1, 3).reshape(rows * height, cols * width)


def show_images(named_images: Mapping[str, np.ndarray], *, cols: int = 10, inches_per_image: float = 0.3) -> None:
    """Draws each entry of ``named_images`` (title → images in ``[0, 1]``) as a grid, side by side."""
    if not named_images:
        raise ValueError("named_images must hold at least one title -> images entry")
    grids = {title: image_grid(images, cols) for title, images in named_images.items()}
    rows = max(len(images) // cols for images in named_images.values())
    size = (len(grids) * cols * inches_per_image + 0.3, rows * inches_per_image + 0.35)
    _, axes = plt.subplots(1, len(grids), figsize=size, squeeze=False)
    for ax, (title, grid) in zip(axes[0], grids.items()):
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    plt.show()
