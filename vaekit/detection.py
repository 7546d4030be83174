r"""From masks to boxes and back: the geometry of a detect-then-segment pipeline.

A detector says *where* each object is, as a box; a segmenter says *which pixels* it covers. This
module converts between the two and carries pixels between the canvas and one small crop per box:

- :func:`boxes_from_masks`: the tightest box around each instance of an instance map;
- :func:`mask_from_boxes`: the pixels inside any box (what a detector alone can claim as a mask);
- :func:`crop_and_resize`: each box's contents, resampled to a fixed square size for a network;
- :func:`paste_masks`: each crop's mask resampled back into its box on the canvas.

Boxes are ``(top, left, bottom, right)`` integer pixel coordinates, bottom and right exclusive (the box
``(t, l, b, r)`` holds rows ``t..b-1`` and columns ``l..r-1``), laid out ``(batch, max_items, 4)`` as
:class:`vaekit.scenes.SegmentationScenes` stores them: a row of ``-1`` is an absent item.

Resampling is bilinear, with pixel centres aligned: output pixel :math:`i` of a crop of side :math:`S`
reads the box at row

.. math::

   y_i = t + (i + \tfrac12)\,\frac{h}{S} - \tfrac12, \qquad h = b - t,

clamped to the box's first and last rows, and likewise for columns (so a crop sees only its box's
pixels, as RoIAlign's sampling does). Bilinear resampling is linear in the pixels: one crop is
:math:`R\,X\,C^\top` with interpolation matrices :math:`R` (rows) and :math:`C` (columns), and pasting
uses the same construction the other way. When the box is as large as the crop (scale 1), :math:`R`
and :math:`C` are identity blocks and a crop pasted back restores its pixels exactly. Binary masks are
resampled as numbers and thresholded at :math:`\tfrac12`.

References:
  He, Gkioxari, Dollár & Girshick, *Mask R-CNN*, ICCV 2017 (RoIAlign; masks predicted per box, then
  resized into the box and thresholded at 0.5).
"""

from __future__ import annotations

import numbers

import numpy as np

ABSENT = -1
"""The value of every coordinate of an absent box."""


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _size_pair(name: str, size) -> tuple[int, int]:
    """``size`` as (height, width): an int is a square."""
    pair = (size, size) if isinstance(size, numbers.Integral) and not isinstance(size, bool) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_positive_int(s) for s in pair)):
        raise ValueError(f"{name} must be an integer >= 1 (a square) or (height, width); got {size!r}")
    return int(pair[0]), int(pair[1])


def _boxes(boxes, height: int, width: int, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(batch, max_items, 4)`` int64 boxes and the ``(batch, max_items)`` mask of present ones."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes must be integers of shape (batch, max_items, 4), (top, left, bottom, right); got "
                         f"shape {boxes.shape} of dtype {boxes.dtype}")
    if batch is not None and boxes.shape[0] != batch:
        raise ValueError(f"boxes must have one row of boxes per image ({batch}); got {boxes.shape[0]}")
    boxes = boxes.astype(np.int64)
    present = np.any(boxes != ABSENT, axis=-1)
    top, left, bottom, right = np.moveaxis(boxes, -1, 0)
    valid = (0 <= top) & (top < bottom) & (bottom <= height) & (0 <= left) & (left < right) & (right <= width)
    if np.any(present & ~valid):
        index = tuple(int(i) for i in np.argwhere(present & ~valid)[0])
        raise ValueError(f"boxes must be rows of -1 (absent) or hold 0 <= top < bottom <= {height} and "
                         f"0 <= left < right <= {width}; boxes[{index[0]}, {index[1]}] is "
                         f"{boxes[index].tolist()}")
    return boxes, present


def boxes_from_masks(instances, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The tightest box around each instance, and the instance's number of pixels.

    Instance :math:`k \ge 1` of image :math:`n` goes to row :math:`k - 1`:

    .. math::

       \text{box}_{nk} = \big(\min_{p \in I_{nk}} \text{row}_p,\ \min_{p \in I_{nk}} \text{col}_p,\
                              \max_{p \in I_{nk}} \text{row}_p + 1,\ \max_{p \in I_{nk}} \text{col}_p + 1\big),

    :math:`I_{nk}` the pixels labelled :math:`k`. An instance with no pixel (absent, or hidden behind the
    others) gets a row of ``-1`` and a count of 0.

    Args:
      instances: instance maps ``(batch, height, width)`` of integers: 0 background, ``k`` the k-th item.
      max_items: the number of rows per image (``>=`` the largest label).

    Returns:
      ``(boxes, pixel_counts)``: int32 ``(batch, max_items, 4)`` boxes ``(top, left, bottom, right)``
      (bottom and right exclusive) and int64 ``(batch, max_items)`` pixel counts, so that
      ``pixel_counts / box area`` is how much of its box an object fills.

    Example:
      >>> instances = np.array([[[0, 1, 1, 0], [0, 1, 0, 0], [2, 0, 0, 0]]])
      >>> boxes, counts = boxes_from_masks(instances, 3)
      >>> boxes[0].tolist(), counts[0].tolist()
      ([[0, 1, 2, 3], [2, 0, 3, 1], [-1, -1, -1, -1]], [3, 1, 0])
    """
    instances = np.asarray(instances)
    if instances.ndim != 3 or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"instances must be integer instance maps of shape (batch, height, width); got shape "
                         f"{instances.shape} of dtype {instances.dtype}")
    if not _is_positive_int(max_items):
        raise ValueError(f"max_items must be an integer >= 1; got {max_items!r}")
    if instances.size and (instances.min() < 0 or instances.max() > max_items):
        raise ValueError(f"instances must hold labels 0 (background) to max_items = {max_items}; got values from "
                         f"{instances.min()} to {instances.max()}")
    labels = np.arange(1, max_items + 1)
    members = instances[:, None] == labels[None, :, None, None]       # (batch, max_items, height, width)
    rows, columns = members.any(axis=3), members.any(axis=2)
    counts = members.sum(axis=(2, 3), dtype=np.int64)
    height, width = instances.shape[1:]
    boxes = np.stack([rows.argmax(axis=2), columns.argmax(axis=2),
                      height - rows[..., ::-1].argmax(axis=2), width - columns[..., ::-1].argmax(axis=2)], axis=-1)
    return np.where(counts[..., None] > 0, boxes, ABSENT).astype(np.int32), counts


def mask_from_boxes(boxes, size) -> np.ndarray:
    r"""The pixels inside any of an image's boxes: :math:`M_{hw} = \bigvee_k [t_k \le h < b_k]\,[l_k \le w < r_k]`.

    This is the best mask a detector can give without a segmenter: its IoU against the true mask is
    how much of its boxes the objects fill.

    Args:
      boxes: ``(batch, max_items, 4)`` integer boxes, rows of ``-1`` absent.
      size: the canvas, ``(height, width)`` or an int for a square.

    Returns:
      ``bool`` ``(batch, height, width)``.

    Example:
      >>> mask_from_boxes(np.array([[[0, 1, 2, 3], [-1, -1, -1, -1]]]), 4)[0].astype(int)
      array([[0, 1, 1, 0],
             [0, 1, 1, 0],
             [0, 0, 0, 0],
             [0, 0, 0, 0]])
    """
    height, width = _size_pair("size", size)
    boxes, present = _boxes(boxes, height, width)
    top, left, bottom, right = (side[..., None] for side in np.moveaxis(boxes, -1, 0))
    in_rows = (np.arange(height) >= top) & (np.arange(height) < bottom) & present[..., None]
    in_columns = (np.arange(width) >= left) & (np.arange(width) < right)
    return np.any(in_rows[..., :, None] & in_columns[..., None, :], axis=1)


def _linear_weights(position: np.ndarray, length: int) -> np.ndarray:
    """``(..., n)`` fractional indices in ``[0, length - 1]`` -> ``(..., n, length)`` linear interpolation weights."""
    below = np.floor(position)
    fraction = (position - below)[..., None]
    below = below.astype(np.int64)[..., None]
    above = np.minimum(below + 1, length - 1)
    grid = np.arange(length)
    return (1.0 - fraction) * (grid == below) + fraction * (grid == above)


def _crop_matrix(start: np.ndarray, extent: np.ndarray, size: int, length: int) -> np.ndarray:
    """``(K, size, length)``: crop pixel i of each box reads the box at ``start + (i + 1/2) extent / size - 1/2``."""
    start, extent = start[:, None].astype(np.float64), extent[:, None].astype(np.float64)
    position = start + (np.arange(size) + 0.5) * extent / size - 0.5
    return _linear_weights(np.clip(position, start, start + extent - 1), length)


def _paste_matrix(start: np.ndarray, extent: np.ndarray, size: int, length: int) -> np.ndarray:
    """``(K, length, size)``: canvas pixel j inside a box reads its crop at ``(j - start + 1/2) size/extent - 1/2``."""
    start, extent = start[:, None].astype(np.float64), extent[:, None].astype(np.float64)
    canvas = np.arange(length)
    position = (canvas - start + 0.5) * size / extent - 0.5
    inside = (canvas >= start) & (canvas < start + extent)
    return _linear_weights(np.clip(position, 0, size - 1), size) * inside[..., None]


def _pixels(name: str, values) -> tuple[np.ndarray, bool]:
    """``values`` as floating point, and whether they were binary masks (resampled, then thresholded)."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values.astype(np.float32), True
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"{name} must be floating point (images, probabilities) or bool (masks); got dtype "
                         f"{values.dtype}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite")
    return values, False


def crop_and_resize(images, boxes, size: int) -> np.ndarray:
    r"""One square crop per present box, its contents resampled bilinearly to ``size`` × ``size``.

    Crop :math:`k` of image :math:`n` is :math:`R_k X_n C_k^\top` channel by channel, with the
    interpolation matrices of the module docstring: a crop sees its box's pixels only.

    Args:
      images: ``(batch, height, width, channels)`` images, or ``(batch, height, width)`` masks: floating
        point, or ``bool`` (resampled as 0/1, then thresholded at 1/2).
      boxes: ``(batch, max_items, 4)`` integer boxes, rows of ``-1`` absent.
      size: the crops' side in pixels.

    Returns:
      ``(K, size, size[, channels])``, K the number of present boxes, in the order of the image, then of
      the row (``np.argwhere`` of the present rows); floating point, or ``bool`` for masks.

    Example:
      >>> image = np.arange(16.0).reshape(1, 4, 4, 1)
      >>> crop_and_resize(image, np.array([[[1, 1, 3, 3]]]), 2)[0, ..., 0]    # scale 1: the pixels
      array([[ 5.,  6.],
             [ 9., 10.]])
    """
    values, binary = _pixels("images", images)
    if values.ndim not in (3, 4):
        raise ValueError(f"images must be (batch, height, width, channels) or (batch, height, width); got shape "
                         f"{values.shape}")
    if not _is_positive_int(size):
        raise ValueError(f"size must be an integer >= 1; got {size!r}")
    height, width = values.shape[1:3]
    boxes, present = _boxes(boxes, height, width, batch=values.shape[0])
    owner, _ = np.nonzero(present)
    top, left, bottom, right = np.moveaxis(boxes[present], -1, 0)
    rows = _crop_matrix(top, bottom - top, size, height).astype(values.dtype)
    columns = _crop_matrix(left, right - left, size, width).astype(values.dtype)
    channels = values if values.ndim == 4 else values[..., None]
    crops = np.einsum("ksh,khwc,ktw->kstc", rows, channels[owner], columns, optimize=True)
    crops = crops if values.ndim == 4 else crops[..., 0]
    return crops >= 0.5 if binary else crops


def paste_masks(crops, boxes, canvas_size) -> np.ndarray:
    r"""Each crop resampled bilinearly into its box on the canvas; where boxes overlap, the larger value wins.

    Pasted crop :math:`k` is :math:`P_k\,m_k\,Q_k^\top`, zero outside its box; image :math:`n`'s canvas
    is the pixel-wise maximum over its crops (for binary masks: the union). The inverse of
    :func:`crop_and_resize` at scale 1, exactly.

    Args:
      crops: ``(K, size, size)`` masks, one per present box in the order of :func:`crop_and_resize`:
        probabilities (floating point) or ``bool`` (resampled as 0/1, then thresholded at 1/2).
      boxes: the ``(batch, max_items, 4)`` boxes the crops came from.
      canvas_size: ``(height, width)`` of the canvas, or an int for a square.

    Returns:
      ``(batch, height, width)``: probabilities (0 outside every box), or ``bool`` for binary crops.

    Example:
      >>> crop = np.ones((1, 2, 2), bool)
      >>> paste_masks(crop, np.array([[[1, 0, 2, 4]]]), (3, 4)).astype(int)[0]   # squeezed into a 1x4 box
      array([[0, 0, 0, 0],
             [1, 1, 1, 1],
             [0, 0, 0, 0]])
    """
    values, binary = _pixels("crops", crops)
    if values.ndim != 3 or values.shape[1] != values.shape[2]:
        raise ValueError(f"crops must be square masks (K, size, size); got shape {values.shape}")
    height, width = _size_pair("canvas_size", canvas_size)
    boxes, present = _boxes(boxes, height, width)
    if present.sum() != len(values):
        raise ValueError(f"crops must hold one mask per present box ({int(present.sum())}); got {len(values)}")
    owner, _ = np.nonzero(present)
    top, left, bottom, right = np.moveaxis(boxes[present], -1, 0)
    size = values.shape[1]
    rows = _paste_matrix(top, bottom - top, size, height).astype(values.dtype)
    columns = _paste_matrix(left, right - left, size, width).astype(values.dtype)
    pasted = np.einsum("khs,kst,kwt->khw", rows, values, columns, optimize=True)
    canvas = np.zeros((boxes.shape[0], height, width), values.dtype)
    np.maximum.at(canvas, owner, pasted)
    return canvas >= 0.5 if binary else canvas
