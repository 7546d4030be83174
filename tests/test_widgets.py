"""The dashboards, driven headless: set widget values as a learner's browser would, read the PNG bytes."""

import io
import subprocess
import sys

import ipywidgets
import numpy as np
import pytest
from flax import nnx
from PIL import Image

import vaekit as vk
from vaekit import batched, latent, models, objectives, train, zoo
from vaekit import widgets as vw
from vaekit.widgets import _render
from vaekit.widgets.traversal import LABEL_WIDTH


# A few seconds of training on MNIST per point: enough for reconstructions and a 2-D map with structure.
FAMILY = dict(dataset="mnist", train_size=4096, model_config=vk.VAEConfig(hidden_dims=(128,)),
              train_config=vk.TrainConfig(epochs=2, batch_size=64, learning_rate=2e-3))
# Long enough at beta = 8 for latent units to switch off (measured: 6 of 16 keep a KL above 0.3 nats,
# 8 fall below 0.01), about 5 s.
COLLAPSING = dict(dataset="mnist", train_size=8000, model_config=vk.VAEConfig(hidden_dims=(256,)),
                  train_config=vk.TrainConfig(epochs=15, batch_size=128, learning_rate=2e-3))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32)


def change(before: bytes, after: bytes) -> float:
    """Mean absolute difference of two PNGs of equal size, in grey levels (0-255)."""
    a, b = pixels(before), pixels(after)
    assert a.shape == b.shape
    return float(np.mean(np.abs(a - b)))


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    trained = zoo.Zoo(tmp_path_factory.mktemp("zoo"), **FAMILY)
    for beta, latent_dim in ((1.0, 2), (1.0, 8), (4.0, 8)):
        trained.load(beta=beta, latent_dim=latent_dim, progress=False)
    return trained


@pytest.fixture
def fresh_family(family):
    """The same zoo on disk, nothing in memory (as a new kernel sees it)."""
    return zoo.Zoo(family.root, **FAMILY)


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fit was called for a point that is in the zoo")

    monkeypatch.setattr(train, "fit", refuse)


@pytest.fixture
def model8(family):
    return family.load(beta=1.0, latent_dim=8)


@pytest.fixture
def model2(family):
    return family.load(beta=1.0, latent_dim=2)


def test_every_dashboard_builds_and_displays_itself(fresh_family, model8, model2, no_training):
    dashboards = [
        vw.BetaLatentExplorer(fresh_family, beta=1.0, latent_dim=8),
        vw.LatentTraversal(model8),
        vw.LatentMap(model2),
        vw.Interpolation(model8),
        vw.SampleGallery(model8),
    ]
    for dashboard in dashboards:
        bundle = dashboard._repr_mimebundle_()
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dashboard.widget.model_id
        assert dashboard.error.value == ""
        images = [w for w in _walk(dashboard.widget) if isinstance(w, ipywidgets.Image)]
        assert images and all(pixels(image.value).size > 0 for image in images)
        dashboard.close()


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_explorer_moves_between_cached_points_without_training(fresh_family, no_training):
    explorer = vw.BetaLatentExplorer(fresh_family, beta=1.0, latent_dim=8)
    reconstructions, samples, marker = (explorer.reconstructions.value, explorer.samples.value,
                                        explorer.plane.overlay.value)
    explorer.beta_slider.value = 4.0
    assert explorer.error.value == ""
    assert change(reconstructions, explorer.reconstructions.value) > 1.0
    assert change(samples, explorer.samples.value) > 1.0
    assert change(marker, explorer.plane.overlay.value) > 0.01  # the highlighted point moved
    assert "β = 4" in explorer.status.value
    explorer.beta_slider.value = 1.0
    assert explorer.reconstructions.value == reconstructions  # same model, same noise, same bytes
    explorer.latent_slider.value = 2
    assert explorer.error.value == "" and "latent dim = 2" in explorer.status.value


def test_explorer_trains_a_new_point_in_the_dashboard(family, fresh_family):
    explorer = vw.BetaLatentExplorer(fresh_family, beta=1.0, latent_dim=8)
    shown = len(explorer.points)
    explorer.beta_slider.value = 0.5
    assert explorer.error.value == ""
    assert explorer.progress.max > 1 and explorer.progress.value == explorer.progress.max
    assert explorer.progress.layout.visibility == "hidden"
    assert fresh_family.is_trained(beta=0.5, latent_dim=8)
    assert len(explorer.points) == shown + 1 and "β = 0.5" in explorer.status.value


def test_explorer_on_an_empty_zoo_trains_its_first_point_with_its_own_progress_bar(tmp_path, capsys):
    empty = zoo.Zoo(tmp_path, **FAMILY)
    explorer = vw.BetaLatentExplorer(empty, beta=1.0, latent_dim=2, preload=False)
    assert empty.is_trained(beta=1.0, latent_dim=2) and explorer.error.value == ""
    assert explorer.progress.max > 1 and explorer.progress.value == explorer.progress.max
    assert explorer.progress in list(_walk(explorer.widget)) and explorer.progress.layout.visibility == "hidden"
    assert capsys.readouterr().err == "", "a progress bar was shown outside the dashboard"


def test_explorer_without_training_reports_a_missing_point(fresh_family, no_training):
    explorer = vw.BetaLatentExplorer(fresh_family, beta=1.0, latent_dim=8, train=False)
    explorer.beta_slider.value = 20.0
    assert explorer.error.value == ""
    assert "not in the zoo yet" in explorer.status.value and "python -m vaekit zoo" in explorer.status.value
    assert explorer.reconstructions.value == b""
    explorer.beta_slider.value = 4.0
    assert pixels(explorer.reconstructions.value).size > 0


def test_traversal_moves_along_active_dimensions_only(family):
    collapsing = zoo.Zoo(family.root, **COLLAPSING).load(beta=8.0, latent_dim=16, progress=False)
    traversal = vw.LatentTraversal(collapsing)
    active = traversal.order[traversal.active[traversal.order]]
    inactive = traversal.order[~traversal.active[traversal.order]]
    assert traversal.measure == "KL"
    np.testing.assert_allclose(traversal.scores, latent.kl_per_dimension(collapsing.model, zoo.evaluation_data(
        collapsing.spec).images[:2000], progress=False))
    assert len(active) >= 1 and len(inactive) >= 1, f"fixture should have both kinds of unit, KL = {traversal.scores}"
    assert np.all(np.diff(traversal.scores[traversal.order]) <= 0), "sliders are not ordered by KL"
    centre = traversal.current.value

    def change_along(dim):
        traversal.slider(dim).value = 3.0
        moved = change(centre, traversal.current.value)
        traversal.reset()
        assert traversal.current.value == centre
        return moved

    # Measured: 31 grey levels along the top unit, 3-5 along each inactive one.
    threshold = 10.0
    assert change_along(active[0]) > threshold
    for dim in inactive:
        assert change_along(dim) < threshold, f"z{dim} (KL {traversal.scores[dim]:.4f}) is marked inactive"


def test_traversal_grid_rows_decode_one_dimension_each(model8):
    traversal = vw.LatentTraversal(model8, steps=5, max_rows=3)
    traversal.slider(traversal.order[0]).value = 1.0
    grid = pixels(traversal.grid.value)[:, LABEL_WIDTH:]
    size = 28 + _render.GAP
    compiled = traversal.compiled
    code = traversal.centre_code + traversal.offsets()
    for row, dim in enumerate(traversal.order[:3]):
        for column, offset in enumerate(np.linspace(-3, 3, 5)):
            z = code.copy()
            z[dim] = traversal.centre_code[dim] + offset
            expected = compiled.decode(z[None])[0, ..., 0]
            cell = grid[row * size : row * size + 28, column * size : column * size + 28]
            np.testing.assert_array_equal(cell, expected)


def test_traversal_buttons_reset_and_randomize(model8):
    traversal = vw.LatentTraversal(model8, image_index=None)
    centre = traversal.current.value
    traversal.random_button.click()
    assert np.any(traversal.offsets() != 0) and np.all(np.abs(traversal.offsets()) <= 3)
    assert change(centre, traversal.current.value) > 0.5
    traversal.reset_button.click()
    assert np.all(traversal.offsets() == 0) and traversal.current.value == centre
    traversal.centre.value = "test image"
    assert traversal.current.value != centre and traversal.error.value == ""


def test_latent_map_click_decodes_the_picked_point(model2):
    latent_map = vw.LatentMap(model2)
    target = (0.8, -1.2)
    x, y = latent_map.scatter.canvas.pixel_from_data(*target)
    latent_map._scatter_clicks._dom_handlers(
        {"type": "click", "dataX": round(x), "dataY": round(y), "relativeX": round(x), "relativeY": round(y)}
    )
    assert latent_map.error.value == ""
    per_pixel = 2 * latent_map.z1.max / latent_map.scatter.ax.bbox.width
    np.testing.assert_allclose(latent_map.code, target, atol=1.5 * per_pixel + 0.01)
    expected = latent_map.compiled.decode(latent_map.code[None])[0, ..., 0]
    np.testing.assert_array_equal(pixels(latent_map.picked.value), expected)


def test_latent_map_manifold_click_picks_the_cell(model2):
    latent_map = vw.LatentMap(model2, grid_size=7)
    row, column = 1, 5
    cell = 28 + _render.GAP
    latent_map._manifold_clicks._dom_handlers({"type": "click", "dataX": column * cell + 14, "dataY": row * cell + 3})
    grid = latent.inverse_cdf_grid(7)
    np.testing.assert_array_equal(latent_map.code, [grid[column], grid[::-1][row]])
    manifold = pixels(latent_map.manifold.value)
    np.testing.assert_array_equal(pixels(latent_map.picked.value),
                                  manifold[row * cell : row * cell + 28, column * cell : column * cell + 28])


def test_latent_map_slider_moves_the_decode(model2):
    latent_map = vw.LatentMap(model2)
    before = latent_map.picked.value, latent_map.scatter.overlay.value
    latent_map.z1.value = 1.5
    assert change(before[0], latent_map.picked.value) > 1.0
    assert change(before[1], latent_map.scatter.overlay.value) > 0.01


def test_interpolation_slider_and_ends(model8):
    dashboard = vw.Interpolation(model8, start=3, end=7)
    middle = dashboard.current.value
    dashboard.t.value = 0.0
    at_start = pixels(dashboard.current.value)
    assert change(middle, dashboard.current.value) > 1.0
    reconstruction = dashboard.compiled.decode(dashboard.code_a[None])[0, ..., 0]
    np.testing.assert_array_equal(at_start[:, :28], reconstruction)  # linear at t = 0 is A's code
    np.testing.assert_array_equal(at_start[:, 29:], reconstruction)  # and so is spherical
    dashboard.random_button.click()
    assert (dashboard.start.value, dashboard.end.value) != (3, 7) and dashboard.error.value == ""


def test_interpolation_draws_the_paths_of_vaekit_latent(model8):
    dashboard = vw.Interpolation(model8, start=3, end=7)
    dashboard.t.value = 0.3
    shown = pixels(dashboard.current.value)
    a, b = dashboard.code_a, dashboard.code_b
    np.testing.assert_array_equal(shown[:, :28], dashboard.compiled.decode(latent.lerp(a, b, 0.3)[None])[0, ..., 0])
    np.testing.assert_array_equal(shown[:, 29:], dashboard.compiled.decode(latent.slerp(a, b, 0.3)[None])[0, ..., 0])
    assert f"spherical <b>{np.linalg.norm(latent.slerp(a, b, 0.3)):.2f}</b>" in dashboard.norms.value


def test_gallery_temperature_and_reseed(model8):
    gallery = vw.SampleGallery(model8, rows=4, cols=4)
    first = gallery.gallery.value
    gallery.temperature.value = 0.0
    at_zero = pixels(gallery.gallery.value)
    mean_image = gallery.compiled.decode(np.zeros((1, 8)))[0, ..., 0]
    np.testing.assert_array_equal(at_zero[:28, :28], mean_image)  # tau = 0 decodes the prior mean everywhere
    np.testing.assert_array_equal(at_zero[29:57, 29:57], mean_image)
    gallery.temperature.value = 1.0
    assert gallery.gallery.value == first
    gallery.reseed_button.click()
    assert change(first, gallery.gallery.value) > 1.0


def test_a_callback_error_is_shown_and_the_dashboard_stays_usable(model8, monkeypatch):
    gallery = vw.SampleGallery(model8)
    before = gallery.gallery.value

    def broken(z):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(gallery.compiled, "decode", broken)
    gallery.temperature.value = 0.5
    assert "decoder exploded" in gallery.error.value and "RuntimeError" in gallery.error.value
    assert "What to do" in gallery.error.value and "changing the temperature" in gallery.error.value
    assert gallery.gallery.value == before
    monkeypatch.undo()
    gallery.temperature.value = 0.3
    assert gallery.error.value == ""
    assert change(before, gallery.gallery.value) > 1.0


def test_explorer_error_while_training_is_shown(fresh_family, monkeypatch):
    explorer = vw.BetaLatentExplorer(fresh_family, beta=1.0, latent_dim=8)

    def diverge(*args, **kwargs):
        raise vk.TrainingDivergedError("the loss became nan at epoch 1")

    monkeypatch.setattr(train, "fit", diverge)
    explorer.beta_slider.value = 10.0
    assert "TrainingDivergedError" in explorer.error.value and "loss became nan" in explorer.error.value
    assert explorer.progress.layout.visibility == "hidden"
    explorer.beta_slider.value = 4.0
    assert explorer.error.value == "" and "β = 4" in explorer.status.value


class LinearCodec(nnx.Module):
    """A learner's own model: a linear code of 3 numbers, no config, nothing from vaekit."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.down = nnx.Linear(784, 3, rngs=rngs)
        self.up = nnx.Linear(3, 784, rngs=rngs)

    def encode(self, x):
        return self.down(x.reshape(x.shape[0], -1))

    def decode(self, z):
        return nnx.sigmoid(self.up(z)).reshape(-1, 28, 28, 1)


class EncoderOnly(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.down = nnx.Linear(784, 3, rngs=rngs)

    def encode(self, x):
        return self.down(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def autoencoder():
    """An autoencoder trained for a moment, so that its codes vary with the image."""
    model = models.Autoencoder(vk.VAEConfig(latent_dim=4, hidden_dims=(128,)), rngs=nnx.Rngs(0))
    train.fit(model, vk.load("mnist", "train").take(2048), config=vk.TrainConfig(epochs=1, batch_size=64),
              objective=objectives.ReconstructionObjective(), progress=False)
    return model


def test_dashboards_take_an_autoencoder_and_a_module_of_ones_own(autoencoder):
    test = vk.load("mnist", "test")
    traversal = vw.LatentTraversal(autoencoder, test)
    assert traversal.measure == "activity" and traversal.compiled.latent_dim == 4
    np.testing.assert_allclose(traversal.scores, latent.activity(autoencoder, test.images[:2000], progress=False))
    assert np.all(np.diff(traversal.scores[traversal.order]) <= 0)
    centre = batched.encode(autoencoder, test.images[:1], progress=False)[0][0]
    np.testing.assert_array_equal(traversal.centre_code, centre)  # the code itself: an autoencoder has no mean
    own = LinearCodec(rngs=nnx.Rngs(0))
    interpolation = vw.Interpolation(own, test, start=3, end=7)
    assert interpolation.compiled.latent_dim == 3
    np.testing.assert_allclose(interpolation.code_a, own.encode(test.images[3:4])[0], rtol=1e-5, atol=1e-6)
    for dashboard in (traversal, interpolation, vw.SampleGallery(autoencoder, rows=2, cols=2),
                      vw.Interpolation(autoencoder, test), vw.LatentTraversal(own, test)):
        assert dashboard.error.value == ""
        images = [w for w in _walk(dashboard.widget) if isinstance(w, ipywidgets.Image)]
        assert images and all(pixels(image.value).size > 0 for image in images)
        dashboard.close()


def test_construction_errors_name_the_parameter_and_the_allowed_values(family, model8, model2):
    with pytest.raises(ValueError, match=r"LatentMap needs a model with latent_dim 2; got latent_dim 8"):
        vw.LatentMap(model8)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0.05, 20\]; got 50"):
        vw.BetaLatentExplorer(family, beta=50)
    with pytest.raises(ValueError, match=r"latent_dim must be an integer in \[2, 64\]; got 128"):
        vw.BetaLatentExplorer(family, latent_dim=128)
    with pytest.raises(ValueError, match=r"dataset must be one of 'fashion-mnist', 'mnist'; got 'cifar'"):
        vw.BetaLatentExplorer(dataset="cifar")
    with pytest.raises(ValueError, match=r"dataset='fashion-mnist' but the zoo holds 'mnist' models"):
        vw.BetaLatentExplorer(family, dataset="fashion-mnist")
    with pytest.raises(ValueError, match=r"temperature must be a number in \[0, 2\]; got 3"):
        vw.SampleGallery(model8, temperature=3)
    with pytest.raises(ValueError, match=r"end must be an integer in \[0, 1999\]; got 2000"):
        vw.Interpolation(model8, end=2000)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[3, 15\]; got 1"):
        vw.LatentTraversal(model8, steps=1)
    with pytest.raises(ValueError, match=r"data is required with a model"):
        vw.LatentTraversal(model8.model)
    with pytest.raises(ValueError, match=r"data images are \(14, 14, 1\), the model expects \(28, 28, 1\)"):
        small = vk.load("mnist", "test").take(4)
        vw.Interpolation(model8.model, small.__class__(small.images[:, ::2, ::2], small.labels, "mnist", "test",
                                                      small.classes))
    with pytest.raises(TypeError, match=r"model must be an nnx.Module with encode and decode methods \(vaekit.VAE, "
                                        r"vaekit.Autoencoder or a module of your own\) or a vaekit.zoo.ZooModel; "
                                        r"got str: it is not a flax nnx.Module; it has no decode method"):
        vw.SampleGallery("model.ckpt")
    with pytest.raises(TypeError, match=r"got int: it is not a flax nnx.Module; it has no encode and no decode method"):
        vw.LatentMap(2)
    with pytest.raises(TypeError, match=r"got EncoderOnly: it has no decode method"):
        vw.Interpolation(EncoderOnly(rngs=nnx.Rngs(0)), vk.load("mnist", "test"))
    with pytest.raises(TypeError, match=r"SampleGallery: cannot tell the latent size of this LinearCodec: give it "
                                        r"a config with latent_dim"):
        vw.SampleGallery(LinearCodec(rngs=nnx.Rngs(0)))


def test_widgets_are_imported_only_when_used(tmp_path):
    code = ("import sys, vaekit as vk; assert 'ipywidgets' not in sys.modules and 'matplotlib' not in sys.modules; "
            "vk.widgets.SampleGallery; assert 'ipywidgets' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_explorer_preloads_a_zoo_that_also_holds_points_beyond_its_latent_range(tmp_path):
    wide = zoo.Zoo(tmp_path, **{**FAMILY, "train_size": 256,
                                "train_config": vk.TrainConfig(epochs=1, batch_size=64)})
    for latent_dim in (2, 128):
        wide.load(beta=1.0, latent_dim=latent_dim, progress=False)
    explorer = vw.BetaLatentExplorer(wide, beta=1.0, latent_dim=2, preload=True, train=False)
    assert explorer.error.value == ""
    assert "latent dim = 2" in explorer.status.value


# The image-degradation dashboard (chapter 05): no model, real images, three corruptions.


@pytest.fixture(scope="module")
def garments():
    return vk.load("fashion-mnist", "test").take(16)


def test_degradation_starts_undamaged_and_each_slider_moves_the_measures_its_way(garments):
    dashboard = vw.ImageDegradation(garments, num_images=6)
    assert dashboard._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert np.all(np.isinf(dashboard.scores["psnr"])) and np.allclose(dashboard.scores["ssim"], 1.0)
    untouched = dashboard.view.value
    assert pixels(untouched).shape == (2 * 28 + 1, 6 * 28 + 5)  # originals above, copies below
    sharp = dashboard.reference_sharpness

    dashboard.blur.value = 1.5  # blur: worse on every measure, and less detail
    blurred = dict(dashboard.scores)
    assert np.all(np.isfinite(blurred["psnr"])) and np.all(blurred["ssim"] < 0.95)
    assert np.all(blurred["sharpness"] < sharp)
    assert change(untouched, dashboard.view.value) > 1.0
    dashboard.blur.value = 3.0
    assert np.all(dashboard.scores["psnr"] < blurred["psnr"])

    dashboard.blur.value = 0.0  # noise: worse PSNR and SSIM, yet *more* "detail"
    dashboard.noise.value = 0.1
    assert np.all(dashboard.scores["psnr"] < 25.0) and np.all(dashboard.scores["sharpness"] > sharp)
    noisy = dashboard.degraded.copy()
    dashboard.noise.value = 0.2
    # The same noise pattern, twice as strong (up to clipping at 0 and 1).
    inside = (noisy > 0) & (noisy < 1) & (dashboard.degraded > 0) & (dashboard.degraded < 1)
    np.testing.assert_allclose((dashboard.degraded - dashboard.originals)[inside],
                               2 * (noisy - dashboard.originals)[inside], atol=1e-5)

    dashboard.noise.value = 0.0  # JPEG: lower quality, lower PSNR
    psnr = {}
    for quality in (95, 30, 5):
        dashboard.jpeg.value = quality
        psnr[quality] = float(np.mean(dashboard.scores["psnr"]))
    assert psnr[95] > psnr[30] > psnr[5]
    dashboard.jpeg.value = 0  # off again: the originals
    assert dashboard.view.value == untouched and "∞" in dashboard.readout.value
    assert dashboard.error.value == ""
    dashboard.close()


def test_degradation_takes_arrays_and_colour_and_names_bad_settings(garments):
    colour = np.repeat(garments.images[:3], 3, axis=-1) * np.array([1.0, 0.5, 0.2], np.float32)
    dashboard = vw.ImageDegradation(colour, num_images=3, blur=1.0, noise=0.05, jpeg_quality=50)
    assert dashboard.degraded.shape == (3, 28, 28, 3) and np.all(np.isfinite(dashboard.scores["psnr"]))
    with pytest.raises(ValueError, match=r"ImageDegradation: num_images must be an integer in \[1, 16\]; got 17"):
        vw.ImageDegradation(garments, num_images=17)
    with pytest.raises(ValueError, match=r"blur must be a number in \[0, 3\]; got 5"):
        vw.ImageDegradation(garments, blur=5)
    with pytest.raises(ValueError, match=r"noise must be a number in \[0, 0.5\]; got -0.1"):
        vw.ImageDegradation(garments, noise=-0.1)
    with pytest.raises(ValueError, match=r"jpeg_quality must be None or one of \[95, 75, 50, 30, 20, 10, 5, 1\]; "
                                        r"got 40"):
        vw.ImageDegradation(garments, jpeg_quality=40)
    with pytest.raises(ValueError, match=r"at least 11 \(SSIM's window\); got shape \(4, 8, 8, 1\)"):
        vw.ImageDegradation(np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"floating point"):
        vw.ImageDegradation((garments.images * 255).astype(np.uint8))


def test_a_degradation_error_is_shown_in_the_dashboard(garments, monkeypatch):
    dashboard = vw.ImageDegradation(garments, num_images=2)

    def broken(images, quality):
        raise OSError("encoder missing")

    monkeypatch.setattr(vk.corruptions, "jpeg_compress", broken)
    dashboard.jpeg.value = 10
    assert "OSError" in dashboard.error.value and "compressing" in dashboard.error.value
    monkeypatch.undo()
    dashboard.jpeg.value = 20
    assert dashboard.error.value == ""
