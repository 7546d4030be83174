"""Segmentation scenes and ambiguous scenes: what each array means, how they agree, and what a threshold can do."""

import functools
import gzip
import re
import struct

import numpy as np
import pytest
from scipy import ndimage

from vaekit import datasets, scenes
from vaekit.datasets import DatasetError
from vaekit.scenes import AmbiguousScenes, SegmentationScenes, ambiguous_scenes, segmentation_scenes


@functools.cache
def cached_scenes(num_scenes: int, split: str = "test", seed: int = 0, **kwargs) -> SegmentationScenes:
    return segmentation_scenes(num_scenes, split, seed=seed, **kwargs)


@functools.cache
def cached_ambiguous(num_scenes: int, split: str = "test", seed: int = 0, **kwargs) -> AmbiguousScenes:
    return ambiguous_scenes(num_scenes, split, seed=seed, **kwargs)


def write_idx(path, magic: int, array: np.ndarray) -> None:
    """Writes ``array`` (uint8) as a gzip-compressed IDX file, the format the kit ships."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fashion_test_files(data_dir, *, images: np.ndarray, labels: np.ndarray) -> None:
    write_idx(data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", datasets.IMAGES_MAGIC, images)
    write_idx(data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", datasets.LABELS_MAGIC, labels)


# Synthetic items whose grey level tells their label: a 22 x 22 block at LEVELS[label] / 255
# inside a ring at 25 / 255, just below ITEM_THRESHOLD (25.5 / 255), so never part of an item.
LEVELS = np.arange(10) * 19 + 60
RING = 25
BLOCK = slice(3, 25)


def synthetic_items(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """10,000 items (a Fashion-MNIST test split), label i % 10: ``"block"`` items or ``"dot"`` items.

    A dot item is one pixel, at (14, 14), so that the labelled pixels of a scene count its items.
    """
    labels = (np.arange(10_000) % 10).astype(np.uint8)
    images = np.zeros((10_000, 28, 28), np.uint8)
    if kind == "block":
        images[:, 1:27, 1:27] = RING
        images[:, BLOCK, BLOCK] = LEVELS[labels][:, None, None]
    else:
        images[:, 14, 14] = LEVELS[labels]
    return images, labels


@pytest.fixture(scope="module")
def synthetic_dirs(tmp_path_factory):
    dirs = {}
    for kind in ("block", "dot"):
        dirs[kind] = tmp_path_factory.mktemp(kind)
        images, labels = synthetic_items(kind)
        fashion_test_files(dirs[kind], images=images, labels=labels)
    return dirs


def luminance(images: np.ndarray) -> np.ndarray:
    return images[..., 0] if images.shape[-1] == 1 else images @ scenes.LUMINANCE


def best_threshold_iou(images: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Per image, the foreground IoU of the best single threshold on the luminance, either side taken as foreground.

    An oracle: it picks the threshold knowing the answer, so no thresholding method can do better.
    """
    n = images.shape[0]
    values = luminance(images).reshape(n, -1)
    order = np.argsort(values, axis=1, kind="stable")
    values = np.take_along_axis(values, order, axis=1)
    truth = np.take_along_axis(foreground.reshape(n, -1), order, axis=1)
    pixels, total = values.shape[1], truth.sum(axis=1, keepdims=True)
    below = np.concatenate([np.zeros((n, 1), int), np.cumsum(truth, axis=1)], axis=1)  # foreground among the k darkest
    k = np.arange(pixels + 1)
    brighter = (total - below) / np.maximum(pixels - k + below, 1)  # foreground = all but the k darkest
    darker = below / np.maximum(k + total - below, 1)  # foreground = the k darkest
    # A threshold cannot cut between two equal values.
    cut = np.ones((n, pixels + 1), bool)
    cut[:, 1:-1] = values[:, 1:] != values[:, :-1]
    return np.where(cut, np.maximum(brighter, darker), 0.0).max(axis=1)


# --- segmentation scenes: shapes, classes, splits --------------------------------------------------


def test_scenes_have_their_documented_shapes_types_and_classes():
    data = cached_scenes(16)
    assert len(data) == 16
    assert data.images.shape == (16, 64, 64, 3) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    for name in ("masks", "instances"):
        array = getattr(data, name)
        assert array.shape == (16, 64, 64) and array.dtype == np.int32, name
    assert data.boxes.shape == (16, 3, 4) and data.boxes.dtype == np.int32
    assert data.box_classes.shape == (16, 3) and data.box_classes.dtype == np.int32
    assert data.classes == ("background", *datasets.FASHION_MNIST_CLASSES) == scenes.SEGMENTATION_CLASSES
    assert (data.split, data.seed, data.background) == ("test", 0, "texture")
    images, masks = data.arrays
    assert images is data.images and masks is data.masks
    assert data.foreground.dtype == bool
    np.testing.assert_array_equal(data.foreground, data.masks > 0)
    grey = cached_scenes(3, size=28, colour=False)
    assert grey.images.shape == (3, 28, 28, 1) and grey.masks.shape == (3, 28, 28)
    assert cached_scenes(3, size=41, items_per_scene=(2, 5)).boxes.shape == (3, 5, 4)


def test_mnist_scenes_are_labelled_with_digits():
    data = cached_scenes(64, source="mnist")
    assert data.classes == ("background", *"0123456789")
    assert set(np.unique(data.masks)) == set(range(11)), "64 scenes hold every digit"


def test_the_vaekit_namespace_keeps_its_scene_names():
    import vaekit as vk

    assert vk.segmentation_scenes is segmentation_scenes and vk.SegmentationScenes is SegmentationScenes


def plain_scenes_as_before(num_scenes, split, *, seed, size, items_per_scene):
    """The kit's earlier scenes, item by item: grey Fashion-MNIST items on a black canvas."""
    items = datasets.load("fashion-mnist", split)
    rng = np.random.default_rng(seed)
    counts = rng.integers(items_per_scene[0], items_per_scene[1] + 1, size=num_scenes)
    chosen = rng.integers(0, len(items), size=int(counts.sum()))
    corners = rng.integers(0, size - 28 + 1, size=(int(counts.sum()), 2))
    images = np.zeros((num_scenes, size, size), np.float32)
    masks = np.zeros((num_scenes, size, size), np.int32)
    for scene, index, (top, left) in zip(np.repeat(np.arange(num_scenes), counts), chosen, corners):
        item = items.images[index, :, :, 0]
        inside = item > scenes.ITEM_THRESHOLD
        window = (scene, slice(top, top + 28), slice(left, left + 28))
        images[window] = np.where(inside, item, images[window])
        masks[window] = np.where(inside, items.labels[index] + 1, masks[window])
    return images[..., None], masks


@pytest.mark.parametrize("split", ["test", "train"])
def test_grey_scenes_on_black_are_the_earlier_plain_scenes(split):
    data = segmentation_scenes(40, split, seed=3, size=48, items_per_scene=(1, 4), background="black", colour=False)
    images, masks = plain_scenes_as_before(40, split, seed=3, size=48, items_per_scene=(1, 4))
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.masks, masks)


def test_the_seed_places_the_same_items_whatever_the_background_and_colour():
    reference = cached_scenes(32)
    for background in scenes.BACKGROUNDS:
        for colour in (True, False):
            other = cached_scenes(32, background=background, colour=colour)
            for name in ("masks", "instances", "boxes", "box_classes"):
                np.testing.assert_array_equal(getattr(other, name), getattr(reference, name), err_msg=name)
    black = cached_scenes(32, background="black")
    np.testing.assert_array_equal(black.images[reference.foreground], reference.images[reference.foreground])


def test_scenes_are_a_function_of_the_seed():
    first, again = segmentation_scenes(16, "test", seed=7), segmentation_scenes(16, "test", seed=7)
    for field in dataclass_arrays(first):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    other = segmentation_scenes(16, "test", seed=8)
    assert other.seed == 8 and np.mean(other.masks != first.masks) > 0.05
    assert np.mean(np.abs(other.images - first.images)) > 0.1, "new backgrounds too"
    assert np.mean(cached_scenes(64, "train", seed=3).masks != cached_scenes(64, "test", seed=3).masks) > 0.05


def dataclass_arrays(data) -> list[str]:
    return [name for name, value in vars(data).items() if isinstance(value, np.ndarray)]


def test_each_split_uses_its_own_items(tmp_path):
    # A synthetic MNIST whose first 8,000 digits (the training split) are labelled 0-4, the last 2,000 5-9:
    # every item of a training scene has class 1..5, every item of a test scene 6..10.
    images = np.zeros((10_000, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = 200
    labels = np.concatenate([np.arange(8_000) % 5, 5 + np.arange(2_000) % 5]).astype(np.uint8)
    write_idx(tmp_path / "mnist-10k" / "images-idx3-ubyte.gz", datasets.IMAGES_MAGIC, images)
    write_idx(tmp_path / "mnist-10k" / "labels-idx1-ubyte.gz", datasets.LABELS_MAGIC, labels)
    train = segmentation_scenes(100, "train", source="mnist", data_dir=tmp_path)
    test = segmentation_scenes(100, "test", source="mnist", data_dir=tmp_path)
    assert set(np.unique(train.masks)) == {0, 1, 2, 3, 4, 5}
    assert set(np.unique(test.masks)) == {0, 6, 7, 8, 9, 10}


def test_scenes_read_their_items_from_the_data_dir(tmp_path):
    missing = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(DatasetError, match=re.escape(str(missing)) + ".*file not found"):
        segmentation_scenes(4, "test", data_dir=tmp_path)
    with pytest.raises(DatasetError, match=re.escape(str(missing)) + ".*file not found"):
        ambiguous_scenes(4, "test", data_dir=tmp_path)


# --- masks, instances and boxes agree ---------------------------------------------------------------


@pytest.mark.parametrize("background", scenes.BACKGROUNDS)
def test_masks_instances_and_boxes_describe_the_same_visible_pixels(background):
    data = cached_scenes(200, "train", seed=5, size=48, items_per_scene=(1, 4), background=background)
    assert data.instances.min() == 0 and data.instances.max() == 4
    np.testing.assert_array_equal(data.masks == 0, data.instances == 0)
    for scene in range(len(data)):
        instances, masks = data.instances[scene], data.masks[scene]
        for slot in range(4):
            rows, cols = np.nonzero(instances == slot + 1)
            box, box_class = data.boxes[scene, slot], data.box_classes[scene, slot]
            if len(rows) == 0:  # no such item, or wholly hidden
                assert box.tolist() == [-1, -1, -1, -1] and box_class == 0
                continue
            # The box encloses exactly the visible pixels: each of its four sides touches one.
            assert box.tolist() == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
            # All pixels of one instance carry the class of its box.
            assert set(np.unique(masks[rows, cols])) == {box_class} and box_class >= 1


def test_a_wholly_hidden_item_has_no_box(synthetic_dirs):
    # 28 x 28 canvases: every block item lands at the same place, so the second hides the first entirely.
    data = segmentation_scenes(20, "test", size=28, items_per_scene=(2, 2), data_dir=synthetic_dirs["block"])
    assert np.all(data.boxes[:, 0] == -1) and np.all(data.box_classes[:, 0] == 0)
    assert np.all(data.boxes[:, 1] == [3, 3, 25, 25])
    np.testing.assert_array_equal(data.box_classes[:, 1], data.masks[:, 14, 14])
    assert set(np.unique(data.instances)) == {0, 2}


def test_each_labelled_pixel_shows_an_item_of_its_class_and_faint_pixels_are_background(synthetic_dirs):
    data = segmentation_scenes(200, "test", seed=1, size=48, items_per_scene=(2, 5), background="black",
                               colour=False, data_dir=synthetic_dirs["block"])
    images, masks = data.images[..., 0], data.masks
    # The grey level of every labelled pixel is that of an item of the mask's class, the top item
    # in image and mask alike; the faint rings were neither pasted nor labelled.
    np.testing.assert_array_equal(images[masks > 0], LEVELS[masks[masks > 0] - 1].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(images[masks == 0], 0.0)
    # Items overlap in 48 x 48 scenes (else the test above says little), and lie within 2 to 5 blocks.
    labelled = np.count_nonzero(masks.reshape(200, -1), axis=1)
    assert labelled.min() < 2 * 22 * 22 and labelled.max() <= 5 * 22 * 22


@pytest.mark.parametrize("background", scenes.BACKGROUNDS)
def test_a_colour_item_is_its_grey_image_tinted_with_a_drifting_colour(synthetic_dirs, background):
    data = segmentation_scenes(100, "test", seed=2, size=48, items_per_scene=(1, 3), background=background,
                               data_dir=synthetic_dirs["block"])
    s = scenes.ITEM_SHADING
    slopes = []
    for scene in range(len(data)):
        for instance in np.unique(data.instances[scene])[1:]:
            rows, cols = np.nonzero(data.instances[scene] == instance)
            level = LEVELS[data.masks[scene, rows[0], cols[0]] - 1] / 255
            # A block has one grey level g, so its pixels are the tint at that pixel times s + (1 - s) g,
            # and the tint moves linearly across the item: an affine function of row and column.
            tint = data.images[scene, rows, cols] / (s + (1 - s) * level)
            assert tint.min() >= 0 and tint.max() <= 1 + 1e-5
            design = np.stack([np.ones_like(rows), rows, cols], axis=1).astype(np.float64)
            coefficients, *_ = np.linalg.lstsq(design, tint, rcond=None)
            np.testing.assert_allclose(design @ coefficients, tint, atol=1e-5)
            slopes.append(np.abs(coefficients[1:]).max())
    assert np.median(slopes) > 0.005, "the tint drifts across most items"
    if background == "black":
        np.testing.assert_array_equal(data.images[~data.foreground], 0.0)


def test_one_item_lies_whole_inside_the_canvas(synthetic_dirs):
    size = 40
    data = segmentation_scenes(100, "test", seed=2, size=size, items_per_scene=(1, 1), data_dir=synthetic_dirs["block"])
    tops = []
    for mask, box in zip(data.masks, data.boxes[:, 0]):
        rows, cols = np.nonzero(mask)
        assert len(rows) == 22 * 22, "the whole block"
        assert (rows.max() - rows.min(), cols.max() - cols.min()) == (21, 21)
        assert len(np.unique(mask[mask > 0])) == 1
        assert box[2] - box[0] == box[3] - box[1] == 22
        tops.append((rows.min() - BLOCK.start, cols.min() - BLOCK.start))
    tops = np.array(tops)
    # Corners range over 0..size - 28, the whole range.
    assert tops.min() == 0 and tops.max() == size - 28


@pytest.mark.parametrize("items_per_scene", [(1, 3), (2, 4), (3, 3)])
def test_scenes_hold_between_the_fewest_and_the_most_items_uniformly(synthetic_dirs, items_per_scene):
    fewest, most = items_per_scene
    data = segmentation_scenes(300, "test", seed=0, size=96, items_per_scene=items_per_scene,
                               data_dir=synthetic_dirs["dot"])
    # Each dot item labels one pixel (two dots on one pixel are rare, and absent from these seeded scenes).
    counts = np.count_nonzero(data.masks.reshape(300, -1), axis=1)
    assert counts.min() == fewest and counts.max() == most
    np.testing.assert_array_equal(counts, np.count_nonzero(data.box_classes, axis=1))
    frequencies = np.bincount(counts, minlength=most + 1)[fewest:]
    expected = 300 / (most - fewest + 1)
    assert np.all(np.abs(frequencies - expected) < 5 * np.sqrt(expected)), f"not uniform: {frequencies.tolist()}"
    # The dot at (14, 14) of an item lands anywhere in 14..size - 14, never closer to the edge.
    rows, cols = np.nonzero(data.masks)[1:]
    assert rows.min() == cols.min() == 14 and rows.max() == cols.max() == 96 - 14


# --- what a threshold can do ------------------------------------------------------------------------


def test_a_threshold_finds_the_items_on_black_but_not_on_texture():
    for colour in (True, False):
        black = cached_scenes(100, background="black", colour=colour)
        np.testing.assert_array_equal(best_threshold_iou(black.images, black.foreground), 1.0)
        textured = cached_scenes(100, colour=colour)
        # Measured on 1,000 scenes: 0.33 in colour, 0.45 in grey (the oracle, the best any threshold can do).
        assert best_threshold_iou(textured.images, textured.foreground).mean() < 0.6


def test_textured_backgrounds_use_every_texture_and_the_items_brightness():
    data = cached_scenes(100)
    brightness = luminance(data.images)
    items, background = brightness[data.foreground], brightness[~data.foreground]
    # The middle half of the items' brightness lies inside the background's range, in most scenes' backgrounds too.
    low, high = np.percentile(items, [25, 75])
    assert np.percentile(background, 5) < low and high < np.percentile(background, 95)
    # Pixel noise everywhere on the background: neighbouring background pixels differ, item pixels far less.
    step = np.abs(np.diff(brightness, axis=2))
    both_background = ~data.foreground[:, :, 1:] & ~data.foreground[:, :, :-1]
    both_item = data.foreground[:, :, 1:] & data.foreground[:, :, :-1]
    assert step[both_background].mean() > 2 * step[both_item].mean()


# --- take and binary ------------------------------------------------------------------------------


def test_scenes_take_keeps_the_first_scenes_and_checks_n():
    data = cached_scenes(16)
    first = data.take(5)
    assert isinstance(first, SegmentationScenes) and len(first) == 5
    assert (first.split, first.seed, first.classes, first.background) == (data.split, data.seed, data.classes,
                                                                         data.background)
    for field in dataclass_arrays(data):
        np.testing.assert_array_equal(getattr(first, field), getattr(data, field)[:5], err_msg=field)
    assert len(data.take(16)) == 16
    for n in (0, -1, 17):
        with pytest.raises(DatasetError, match=re.escape(f"take: n must be in 1..16, got {n}")):
            data.take(n)


def test_binary_scenes_mark_every_item_pixel_as_object():
    data = cached_scenes(16)
    binary = data.binary()
    assert binary.classes == ("background", "object")
    assert binary.masks.dtype == np.int32
    np.testing.assert_array_equal(binary.masks, data.foreground.astype(np.int32))
    np.testing.assert_array_equal(binary.box_classes, (data.box_classes > 0).astype(np.int32))
    for field in ("images", "instances", "boxes"):
        np.testing.assert_array_equal(getattr(binary, field), getattr(data, field))
    np.testing.assert_array_equal(binary.foreground, data.foreground)
    assert binary.arrays[1] is binary.masks


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(num_scenes=0), "num_scenes must be an integer >= 1; got 0"),
        (dict(num_scenes=-4), "num_scenes must be an integer >= 1; got -4"),
        (dict(num_scenes=2.0), "num_scenes must be an integer >= 1; got 2.0"),
        (dict(num_scenes=True), "num_scenes must be an integer >= 1; got True"),
        (dict(split="validation"), "split must be one of 'train', 'test'; got 'validation'"),
        (dict(size=27), "size must be an integer >= 28 (the items are 28 x 28); got 27"),
        (dict(size=64.0), "size must be an integer >= 28 (the items are 28 x 28); got 64.0"),
        (dict(items_per_scene=(0, 2)), "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got (0, 2)"),
        (dict(items_per_scene=(3, 2)), "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got (3, 2)"),
        (dict(items_per_scene=(1, 2.5)),
         "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got (1, 2.5)"),
        (dict(items_per_scene=(True, 2)),
         "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got (True, 2)"),
        (dict(items_per_scene=3), "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got 3"),
        (dict(items_per_scene=(1, 2, 3)),
         "items_per_scene must be (fewest, most) with 1 <= fewest <= most; got (1, 2, 3)"),
        (dict(background="white"), "background must be one of 'texture', 'black'; got 'white'"),
        (dict(source="cifar"), "source must be one of 'fashion-mnist', 'mnist'; got 'cifar'"),
        (dict(colour=1), "colour must be True (RGB images) or False (grey images); got 1"),
        (dict(colour="rgb"), "colour must be True (RGB images) or False (grey images); got 'rgb'"),
    ],
)
def test_bad_scene_arguments_name_the_parameter_and_what_is_allowed(arguments, message):
    arguments = {"num_scenes": 4, **arguments}
    with pytest.raises(DatasetError, match=re.escape(message)):
        segmentation_scenes(**arguments)


# --- ambiguous scenes ---------------------------------------------------------------------------------


def test_ambiguous_scenes_have_their_documented_shapes_and_types():
    data = cached_ambiguous(12, num_annotators=5)
    assert len(data) == 12 and (data.split, data.seed) == ("test", 0)
    assert data.images.shape == (12, 32, 32, 3) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.modes.shape == (12, 4, 32, 32) and data.modes.dtype == bool
    assert data.mode_probabilities.shape == (12, 4) and data.mode_probabilities.dtype == np.float64
    assert data.annotations.shape == (12, 5, 32, 32) and data.annotations.dtype == bool
    images, masks = data.arrays
    assert images.shape == (60, 32, 32, 3) and masks.shape == (60, 32, 32) and masks.dtype == np.int32
    # Image-major: the five annotations of image 0 come first, each beside a copy of image 0.
    np.testing.assert_array_equal(images[:5], np.broadcast_to(data.images[0], (5, 32, 32, 3)))
    np.testing.assert_array_equal(masks[5:10], data.annotations[1])
    assert cached_ambiguous(2, size=48).images.shape == (2, 48, 48, 3)


def test_mode_probabilities_are_the_stated_products_and_sum_to_one():
    data = cached_ambiguous(2000)
    np.testing.assert_allclose(data.mode_probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    q = scenes.DILATED_OUTLINE_PROBABILITY
    allowed = {tuple(np.round([(1 - q) * (1 - p), q * (1 - p), (1 - q) * p, q * p], 12))
               for p in scenes.FAINT_MARK_PROBABILITIES}
    rows = {tuple(row) for row in np.round(data.mode_probabilities, 12)}
    assert rows == allowed, "each contrast level appears, and no other distribution"
    assert scenes.FAINT_MARK_PROBABILITIES == (0.0, 0.25, 0.5, 0.75)


def test_modes_are_tight_and_dilated_outlines_with_and_without_the_faint_item():
    data = cached_ambiguous(300)
    tight, dilated, tight_faint, dilated_faint = np.moveaxis(data.modes, 1, 0)
    square = np.ones((1, 3, 3), bool)
    np.testing.assert_array_equal(dilated, ndimage.binary_dilation(tight, structure=square))
    has_faint = data.mode_probabilities[:, 2] > 0
    assert 0 < has_faint.sum() < len(data)
    # The faint item: the same pixels in both modes that hold it, apart from the clear item even once dilated.
    faint = tight_faint & ~tight
    np.testing.assert_array_equal(dilated_faint & ~dilated, faint & ~dilated)
    np.testing.assert_array_equal(tight_faint[has_faint], (tight | faint)[has_faint])
    assert np.all(faint[has_faint].reshape(has_faint.sum(), -1).sum(axis=1) >= 10)
    # Without a faint item its two modes have probability 0 and are empty.
    assert not data.modes[~has_faint][:, 2:].any()
    # Every mode of positive probability is a distinct, non-empty mask.
    for modes, probabilities in zip(data.modes, data.mode_probabilities):
        live = modes[probabilities > 0].reshape(-1, 32 * 32)
        assert live.any(axis=1).all() and len(np.unique(live, axis=0)) == len(live)


def test_every_image_is_ambiguous_so_one_mask_cannot_match_the_annotations():
    data = cached_ambiguous(300)
    modes, pi = data.modes.reshape(300, 4, -1), data.mode_probabilities
    intersection = np.einsum("nap,nbp->nab", modes.astype(int), modes.astype(int))
    sizes = modes.sum(axis=-1)
    union = sizes[:, :, None] + sizes[:, None, :] - intersection
    distance = 1 - intersection / np.maximum(union, 1)
    expected = np.einsum("na,nab,nb->n", pi, distance, pi)
    # E d(Y, Y') > 0: two annotators disagree on a typical image, which no single mask reproduces.
    assert expected.min() > 0.05


def test_annotations_are_modes_drawn_with_their_probabilities():
    data = cached_ambiguous(4000, num_annotators=4)
    n, a = data.annotations.shape[:2]
    flat_modes = data.modes.reshape(n, 4, -1)
    matches = np.all(data.annotations.reshape(n, a, 1, -1) == flat_modes[:, None], axis=-1)  # (n, a, 4)
    # Every annotation is one mode, and padding modes (probability 0) are never drawn.
    assert np.all(matches.any(axis=-1))
    picked = matches.argmax(axis=-1)
    assert np.all(np.take_along_axis(data.mode_probabilities, picked, axis=1) > 0)
    # For each distribution, each mode is drawn as often as its probability says: within 4.5 binomial standard
    # deviations (a false alarm about once in 150,000 comparisons).
    for row in np.unique(data.mode_probabilities, axis=0):
        same = np.all(data.mode_probabilities == row, axis=1)
        draws = picked[same].ravel()
        counts = np.bincount(draws, minlength=4)
        expected = len(draws) * row
        tolerance = 4.5 * np.sqrt(len(draws) * row * (1 - row))
        assert np.all(np.abs(counts - expected) <= tolerance), (row, counts, expected)
    # Annotators draw independently: all four agree as often as sum_k pi_k^4 says.
    agree = np.all(picked == picked[:, :1], axis=1)
    chance = (data.mode_probabilities ** 4).sum(axis=1)
    assert abs(agree.sum() - chance.sum()) <= 4.5 * np.sqrt((chance * (1 - chance)).sum())


def test_the_faint_item_shows_its_contrast_in_the_image():
    data = cached_ambiguous(2000)
    tight, dilated = data.modes[:, 0], data.modes[:, 1]
    faint = data.modes[:, 2] & ~tight
    ring = ndimage.binary_dilation(faint, structure=np.ones((1, 5, 5), bool)) & ~faint & ~dilated
    brightness = luminance(data.images)
    step = np.array([brightness[i][faint[i]].mean() - brightness[i][ring[i]].mean()
                     for i in range(len(data)) if faint[i].any()])
    p = data.mode_probabilities[:, 2] + data.mode_probabilities[:, 3]
    levels = p[faint.reshape(len(data), -1).any(axis=1)]
    means = [step[levels == level].mean() for level in scenes.FAINT_MARK_PROBABILITIES[1:]]
    # The more likely the mark, the brighter the faint item stands out; the clear item stands out most.
    assert 0 < means[0] < means[1] < means[2]
    clear_ring = ndimage.binary_dilation(dilated, structure=np.ones((1, 5, 5), bool)) & ~dilated & ~data.modes[:, 3]
    clear = np.mean([brightness[i][tight[i]].mean() - brightness[i][clear_ring[i]].mean() for i in range(len(data))])
    assert clear > 1.5 * means[2]


def test_ambiguous_scenes_are_a_function_of_the_seed_and_annotators_leave_images_alone():
    first = cached_ambiguous(50, seed=4)
    again = ambiguous_scenes(50, "test", seed=4)
    for field in dataclass_arrays(first):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field), err_msg=field)
    more = ambiguous_scenes(50, "test", seed=4, num_annotators=9)
    for field in ("images", "modes", "mode_probabilities"):
        np.testing.assert_array_equal(getattr(more, field), getattr(first, field), err_msg=field)
    other = ambiguous_scenes(50, "test", seed=5)
    assert np.mean(other.modes != first.modes) > 0.02
    train = ambiguous_scenes(50, "train", seed=4)
    assert train.split == "train" and np.mean(train.modes != first.modes) > 0.02


def test_ambiguous_take_keeps_the_first_images():
    data = cached_ambiguous(12, num_annotators=5)
    first = data.take(3)
    assert isinstance(first, AmbiguousScenes) and len(first) == 3 and (first.split, first.seed) == ("test", 0)
    for field in dataclass_arrays(data):
        np.testing.assert_array_equal(getattr(first, field), getattr(data, field)[:3], err_msg=field)
    with pytest.raises(DatasetError, match=re.escape("take: n must be in 1..12, got 13")):
        data.take(13)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(num_scenes=0), "num_scenes must be an integer >= 1; got 0"),
        (dict(split="val"), "split must be one of 'train', 'test'; got 'val'"),
        (dict(size=27), "size must be an integer >= 28 (two 14 x 14 items side by side); got 27"),
        (dict(size=32.0), "size must be an integer >= 28 (two 14 x 14 items side by side); got 32.0"),
        (dict(num_annotators=0), "num_annotators must be an integer >= 1; got 0"),
        (dict(num_annotators=2.5), "num_annotators must be an integer >= 1; got 2.5"),
    ],
)
def test_bad_ambiguous_arguments_name_the_parameter(arguments, message):
    arguments = {"num_scenes": 4, **arguments}
    with pytest.raises(DatasetError, match=re.escape(message)):
        ambiguous_scenes(**arguments)
