r"""The β × latent-dimension explorer: reconstructions, prior samples and the rate–distortion plane.

Training minimises :math:`D + \beta R` with distortion :math:`D = -\mathbb{E}_q\log p(x|z)` and rate
:math:`R = \mathrm{KL}(q(z|x)\,\|\,p(z))`. Each (β, latent dimension) is one trained model of the
zoo and one point :math:`(R, D)` on the plane (Alemi et al., *Fixing a Broken ELBO*, 2018): small
β buys sharp reconstructions with a high rate, large β a low rate, blurry reconstructions and
samples that look like the data. The dashed lines are :math:`R + D = -\mathrm{ELBO}` constant.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from vaekit import zoo as zoo_module
from vaekit.widgets import _render
from vaekit.widgets._dashboard import Dashboard, PlotView, PngView, check_range

BETA_STOPS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
LATENT_STOPS = (2, 4, 8, 16, 32, 64)
BETA_RANGE = (0.05, 20.0)
LATENT_RANGE = (2, 64)
_NAME = "BetaLatentExplorer"


def representative_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """The first example of class 0, 1, 2, ... (cycling), so that a row shows different classes."""
    chosen: list[int] = []
    classes = np.unique(labels)
    next_of = {int(c): 0 for c in classes}
    positions = {int(c): np.flatnonzero(labels == c) for c in classes}
    while len(chosen) < count:
        progressed = False
        for c in classes:
            if len(chosen) == count:
                break
            pool = positions[int(c)]
            if next_of[int(c)] < len(pool):
                chosen.append(int(pool[next_of[int(c)]]))
                next_of[int(c)] += 1
                progressed = True
        if not progressed:
            raise ValueError(f"only {len(chosen)} examples available, {count} asked for")
    return np.asarray(chosen)


def _colour(latent_dim: int):
    position = math.log2(latent_dim) / math.log2(LATENT_RANGE[1])
    return matplotlib.colormaps["viridis"](0.9 * position)


class BetaLatentExplorer(Dashboard):
    """Sliders for β (log-spaced stops, 0.05–20) and latent dimension (2–64) over a zoo of trained VAEs.

    Shows reconstructions of fixed test images (first row: the originals), prior samples
    (the same noise at every setting), and the model's point among every trained point
    of the zoo on the rate–distortion plane. A trained point answers at once; an untrained
    one is trained in the dashboard, with the dashboard's own progress bar (about 15 s for the
    default MLP; the kernel is busy meanwhile, and the model is cached in the zoo for next
    time). An untrained initial point trains while the dashboard is built, before it shows.

    Args:
      zoo: the :class:`vaekit.zoo.Zoo` to draw models from; the chapters' zoo of ``dataset`` if ``None``.
      dataset: ``"fashion-mnist"`` or ``"mnist"`` (must match ``zoo`` if both are given).
      beta: the initial β, in [0.05, 20]. The slider stops at log-spaced values (:data:`BETA_STOPS`),
        at this β, and at the β of every point already in the zoo.
      latent_dim: the initial latent dimension, an integer in [2, 64].
      num_images: test images shown (and columns of the sample grid), 1–16.
      sample_rows: rows of prior samples, 1–8.
      train: train points that are not in the zoo yet; if ``False`` they are reported as missing.
      preload: load every trained point of the zoo now (a few seconds), so that each answers at once.
      seed: seeds the prior samples.

    Raises:
      ValueError: an unknown dataset, a β or latent dimension out of range (naming the range).

    Attributes:
      points: the zoo's trained points drawn on the plane.
      reconstructions, samples: image views; ``plane``: the plot and its marker overlay.

    Example (in a notebook; trains the point first if the zoo lacks it)::

      vk.widgets.BetaLatentExplorer(beta=1.0, latent_dim=8)
    """

    def __init__(
        self,
        zoo: zoo_module.Zoo | None = None,
        *,
        dataset: str | None = None,
        beta: float = 1.0,
        latent_dim: int = 8,
        num_images: int = 8,
        sample_rows: int = 2,
        train: bool = True,
        preload: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if zoo is None:
            zoo = zoo_module.Zoo(dataset=dataset if dataset is not None else zoo_module.CHAPTER_DATASET)
        elif dataset is not None and dataset != zoo.dataset:
            raise ValueError(f"{_NAME}: dataset={dataset!r} but the zoo holds {zoo.dataset!r} models; pass one of them")
        check_range(_NAME, "beta", beta, *BETA_RANGE)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or not (
            LATENT_RANGE[0] <= latent_dim <= LATENT_RANGE[1]
        ):
            raise ValueError(f"{_NAME}: latent_dim must be an integer in [{LATENT_RANGE[0]}, {LATENT_RANGE[1]}]; "
                             f"got {latent_dim!r}")
        for name, value, high in (("num_images", num_images, 16), ("sample_rows", sample_rows, 8)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"{_NAME}: {name} must be an integer in [1, {high}]; got {value!r}")
        self.zoo = zoo
        self.train = train
        test = zoo.test_data()
        self._images = test.images[representative_indices(test.labels, num_images)]
        self._originals = _render.to_uint8(self._images)
        self._noise = np.random.default_rng(seed).standard_normal(
            (sample_rows * num_images, LATENT_RANGE[1]), dtype=np.float32
        )
        self._compiled: dict[zoo_module.PointSpec, _render.CompiledModel] = {}
        self.points: list[zoo_module.PointRecord] = []

        # The stops, the initial point, and every point of the zoo within range.
        trained = zoo.records()
        betas = sorted({*BETA_STOPS, float(beta)} | {
            r.spec.beta for r in trained if BETA_RANGE[0] <= r.spec.beta <= BETA_RANGE[1]})
        latents = sorted({*LATENT_STOPS, int(latent_dim)} | {
            r.spec.latent_dim for r in trained if LATENT_RANGE[0] <= r.spec.latent_dim <= LATENT_RANGE[1]})
        self.beta_slider = widgets.SelectionSlider(
            options=[(f"{b:g}", float(b)) for b in betas], value=float(beta), description="β",
            continuous_update=False,
        )
        self.latent_slider = widgets.SelectionSlider(
            options=[(str(d), int(d)) for d in latents], value=int(latent_dim), description="latent dim",
            continuous_update=False,
        )
        self.status = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="training",
                                            layout=widgets.Layout(visibility="hidden"))
        self.reconstructions = PngView(scale=2)
        self.samples = PngView(scale=2)
        self.plane = PlotView(440, 360)

        if preload:
            self._preload()
        entry, _ = self._entry(float(beta), int(latent_dim))
        self._draw_plane()
        if entry is not None:
            self._show(entry)
        hint = "move the slider again; if it persists, re-run the cell that built the dashboard"
        self._observe(self.beta_slider, "changing β", hint, self._update)
        self._observe(self.latent_slider, "changing the latent dimension", hint, self._update)
        images = widgets.VBox([
            widgets.HTML("<b>Test images</b> (top) and their <b>reconstructions</b>"), self.reconstructions.widget,
            widgets.HTML("<b>Samples from the prior</b> (same noise at every setting)"), self.samples.widget,
        ])
        self.widget = self._assemble(
            widgets.HBox([self.beta_slider, self.latent_slider]),
            widgets.HBox([self.status, self.progress]),
            widgets.HBox([images, self.plane.widget]),
        )

    def _preload(self) -> None:
        compiled_latents = set()
        for record in self.zoo.records():
            if not LATENT_RANGE[0] <= record.spec.latent_dim <= LATENT_RANGE[1]:
                continue  # on the plane, but out of the slider's reach (e.g. a chapter's 512-dimensional model)
            entry = self.zoo.load(beta=record.spec.beta, latent_dim=record.spec.latent_dim, train=False)
            compiled = self._compile(entry)
            if compiled.latent_dim not in compiled_latents:  # one compilation per shape, shared by every β
                self._decode(compiled)
                compiled_latents.add(compiled.latent_dim)

    def _compile(self, entry: zoo_module.ZooModel) -> _render.CompiledModel:
        if entry.spec not in self._compiled:
            self._compiled[entry.spec] = _render.CompiledModel(entry.model)
        return self._compiled[entry.spec]

    def _report_progress(self, done: int, total: int) -> None:
        self.progress.max = total
        self.progress.value = done

    def _entry(self, beta: float, latent_dim: int) -> tuple[zoo_module.ZooModel | None, bool]:
        """The point and whether it was trained just now (its progress shown in the dashboard's own bar)."""
        if self.zoo.is_loaded(beta=beta, latent_dim=latent_dim) or self.zoo.is_trained(beta=beta, latent_dim=latent_dim):
            return self.zoo.load(beta=beta, latent_dim=latent_dim, train=False), False
        if not self.train:
            self.status.value = (f"β = {beta:g}, latent dim = {latent_dim} is not in the zoo yet: "
                                 f"<code>python -m vaekit zoo --dataset {self.zoo.dataset}</code> trains it")
            return None, False
        self.status.value = (f"Training β = {beta:g}, latent dim = {latent_dim} (once; "
                             f"it is then kept in {self.zoo.root})…")
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        try:
            # A callback, not tqdm: a bar displayed outside the dashboard and closed after training
            # stays in a Voila page as a dead widget ("Error displaying widget: model not found").
            entry = self.zoo.load(beta=beta, latent_dim=latent_dim, progress=self._report_progress)
        finally:
            self.progress.layout.visibility = "hidden"
        return entry, True

    def _update(self) -> None:
        entry, trained_now = self._entry(self.beta_slider.value, self.latent_slider.value)
        if entry is None:
            self.reconstructions.widget.value = b""
            self.samples.widget.value = b""
            self.plane.mark(None, None)
            return
        if trained_now:
            self._draw_plane()
        self._show(entry)

    def _decode(self, compiled: _render.CompiledModel) -> tuple[np.ndarray, np.ndarray]:
        return compiled.reconstruct_and_decode(self._images, self._noise[:, : compiled.latent_dim])

    def _show(self, entry: zoo_module.ZooModel) -> None:
        reconstructions, samples = self._decode(self._compile(entry))
        columns = self._images.shape[0]
        self.reconstructions.show(_render.tile(np.concatenate([self._originals, reconstructions]), 2, columns))
        self.samples.show(_render.tile(samples, samples.shape[0] // columns, columns))
        record = entry.record
        self.plane.mark(record.rate, record.distortion, label=f"β={record.spec.beta:g}, z={record.spec.latent_dim}")
        self.status.value = (f"β = {record.spec.beta:g}, latent dim = {record.spec.latent_dim}: "
                             f"rate <b>{record.rate:.1f}</b> nats, distortion <b>{record.distortion:.1f}</b> nats, "
                             f"−ELBO {record.neg_elbo:.1f} nats (test set)")

    def _draw_plane(self) -> None:
        self.points = self.zoo.records()
        plane, ax = self.plane, self.plane.ax
        ax.cla()
        by_latent: dict[int, list[zoo_module.PointRecord]] = {}
        for record in self.points:
            by_latent.setdefault(record.spec.latent_dim, []).append(record)
        for latent_dim, records in sorted(by_latent.items()):
            records.sort(key=lambda r: r.spec.beta)
            ax.plot([r.rate for r in records], [r.distortion for r in records], "o-", ms=4, lw=0.8,
                    color=_colour(latent_dim), label=f"z = {latent_dim}")
        if self.points:
            rates = np.array([r.rate for r in self.points])
            distortions = np.array([r.distortion for r in self.points])
            pad_r = 0.08 * max(np.ptp(rates), 1.0)
            pad_d = 0.08 * max(np.ptp(distortions), 1.0)
            ax.set_xlim(max(0.0, rates.min() - pad_r), rates.max() + pad_r)
            ax.set_ylim(distortions.min() - pad_d, distortions.max() + pad_d)
            totals = rates + distortions
            for level in MaxNLocator(4).tick_values(totals.min(), totals.max()):
                x = np.array(ax.get_xlim())
                ax.plot(x, level - x, ls="--", lw=0.6, color="0.7", zorder=0)
            ax.set_xlim(max(0.0, rates.min() - pad_r), rates.max() + pad_r)
            ax.set_ylim(distortions.min() - pad_d, distortions.max() + pad_d)
            ax.legend(fontsize=7, loc="upper right", title="latent dim", title_fontsize=7)
        ax.set_xlabel("rate  KL(q(z|x) ‖ p(z))  [nats]", fontsize=8)
        ax.set_ylabel("distortion  −log p(x|z)  [nats]", fontsize=8)
        ax.set_title(f"Rate–distortion plane: {len(self.points)} trained points", fontsize=9)
        ax.tick_params(labelsize=7)
        plane.canvas.figure.subplots_adjust(left=0.16, right=0.97, bottom=0.13, top=0.92)
        plane.redraw()
        plane.mark(None, None)
