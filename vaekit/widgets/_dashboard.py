"""What every dashboard shares: the top-level widget, the error panel, argument checks.

Callbacks run synchronously in the kernel (no threads, no event loop of their own), so a
dashboard behaves the same in JupyterLab, in Voila and under nbval: a move is handled
completely before the next message is read, and nothing is left running when a cell ends.
"""

from __future__ import annotations

import contextlib
import html
import traceback
from typing import Callable

import ipywidgets as widgets
import numpy as np
from flax import nnx

from vaekit import datasets, zoo
from vaekit.widgets import _render


class Dashboard:
    """Base of the dashboards: ``widget`` is what is displayed; errors of callbacks show in it.

    A dashboard displays itself when it is the last expression of a cell (and so is a
    Voila app by itself); ``display(dashboard.widget)`` does the same.
    """

    widget: widgets.Box

    def __init__(self):
        self.error = widgets.HTML()  # no width="100%": with its margins it overflowed the page in Voila
        self._style = widgets.HTML(_render.PIXELATED_STYLE, layout=widgets.Layout(display="none"))
        self._holding = False

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _assemble(self, *children: widgets.Widget) -> widgets.VBox:
        return widgets.VBox([self._style, *children, self.error])

    def _run(self, action: str, hint: str, callback: Callable[[], None]) -> None:
        """Runs a callback; an exception is shown in the dashboard (what failed, why, what to do)."""
        if self._holding:
            return
        try:
            callback()
        except Exception as e:  # shown to the learner instead of vanishing into the kernel log
            self.show_error(action, e, hint)
        else:
            self.error.value = ""

    def _observe(self, widget: widgets.Widget, action: str, hint: str, callback: Callable[[], None]) -> None:
        widget.observe(lambda _change: self._run(action, hint, callback), names="value")

    def _on_click(self, button: widgets.Button, action: str, hint: str, callback: Callable[[], None]) -> None:
        button.on_click(lambda _button: self._run(action, hint, callback))

    @contextlib.contextmanager
    def _hold(self):
        """Sets several controls at once without a redraw for each; the caller redraws once after."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def show_error(self, action: str, error: BaseException, hint: str) -> None:
        """Shows ``error`` in the dashboard's error panel (cleared by the next successful move)."""
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.error.value = (
            '<div style="border-left: 4px solid #c62828; background: #fdecea; padding: 6px 10px">'
            f"<b>Error while {html.escape(action)}</b>: {html.escape(type(error).__name__)}: "
            f"{html.escape(str(error))}<br><b>What to do</b>: {html.escape(hint)}"
            f"<details><summary>details</summary><pre>{html.escape(trace)}</pre></details></div>"
        )

    def close(self) -> None:
        """Closes every widget of the dashboard (its views disappear)."""
        stack = [self.widget]
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            widget.close()


MODEL_METHODS = ("encode", "decode")


def resolve_model(model, data: datasets.Dataset | None, *, dashboard: str,
                  needs_data: bool) -> tuple[_render.CompiledModel, datasets.Dataset | None]:
    """A dashboard's compiled model and data, from any model with ``encode`` and ``decode`` or a zoo entry.

    Args:
      model: an ``nnx.Module`` with ``encode`` and ``decode`` methods (a :class:`vaekit.VAE`, a
        :class:`vaekit.Autoencoder`, a module of one's own), or a :class:`vaekit.zoo.ZooModel`
        (whose test split is then the default data).
      data: the images the dashboard encodes, a :class:`vaekit.Dataset`.
      dashboard: the dashboard's name, for the messages.
      needs_data: whether the dashboard encodes images (all but the sample gallery).

    Raises:
      TypeError: the model lacks a method (the message names it), data is not a Dataset, or
        without data the model has no config telling its latent size.
      ValueError: data is missing, or its images are not the shape the model's config expects.
    """
    if isinstance(model, zoo.ZooModel):
        if data is None and needs_data:
            data = zoo.evaluation_data(model.spec)
        model = model.model
    missing = [name for name in MODEL_METHODS if not callable(getattr(model, name, None))]
    problems = ([] if isinstance(model, nnx.Module) else ["it is not a flax nnx.Module"]) + (
        [f"it has no {' and no '.join(missing)} method"] if missing else [])
    if problems:
        raise TypeError(
            f"{dashboard}: model must be an nnx.Module with encode and decode methods (vaekit.VAE, vaekit.Autoencoder "
            f"or a module of your own) or a vaekit.zoo.ZooModel; got {type(model).__name__}: {'; '.join(problems)}"
        )
    expected = getattr(getattr(model, "config", None), "image_shape", None)
    if needs_data:
        if data is None:
            raise ValueError(f"{dashboard}: data is required with a model (e.g. vk.load('fashion-mnist', 'test'))")
        if not isinstance(data, datasets.Dataset):
            raise TypeError(f"{dashboard}: data must be a vaekit.Dataset; got {type(data).__name__}")
        if expected is not None and tuple(data.image_shape) != tuple(expected):
            raise ValueError(
                f"{dashboard}: data images are {tuple(data.image_shape)}, the model expects {tuple(expected)}"
            )
        expected = data.image_shape
    elif expected is None and getattr(getattr(model, "config", None), "latent_dim", None) is None:
        raise TypeError(f"{dashboard}: cannot tell the latent size of this {type(model).__name__}: give it a "
                        "config with latent_dim, as vaekit's models have")
    return _render.CompiledModel(model, image_shape=expected), data


def check_range(dashboard: str, name: str, value, low, high) -> None:
    """A clear error for a number outside ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not low <= value <= high:
        raise ValueError(f"{dashboard}: {name} must be a number in [{low:g}, {high:g}]; got {value!r}")


def check_index(dashboard: str, name: str, value, size: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
        raise ValueError(f"{dashboard}: {name} must be an integer in [0, {size - 1}]; got {value!r}")


class PngView:
    """An ``ipywidgets.Image`` whose picture is replaced in place by each :meth:`show`.

    Args:
      scale: display enlargement in the browser (crisp pixels, no resampling in Python).
    """

    def __init__(self, scale: int = 1):
        self.scale = scale
        self.widget = widgets.Image(format="png")
        if scale > 1:
            self.widget.add_class(_render.PIXELATED_CLASS)

    def show(self, array: np.ndarray) -> None:
        """Writes a ``uint8`` array into the widget as PNG."""
        width = f"{array.shape[1] * self.scale}px"
        if self.widget.layout.width != width:
            self.widget.layout.width = width
        self.widget.value = _render.png(array)

    @property
    def value(self) -> bytes:
        """The PNG bytes shown now."""
        return self.widget.value


class PlotView:
    """A :class:`~vaekit.widgets._render.PlotCanvas` shown as the plot with its marker overlay stacked on top.

    Both images share one CSS grid cell; clicks land on ``overlay``, whose pixels are the plot's.
    """

    def __init__(self, width: int, height: int):
        self.canvas = _render.PlotCanvas(width, height)
        # No margin: the default one would make the images overflow their grid cell (scroll bars in the page).
        cell = dict(grid_area="1 / 1 / 2 / 2", width=f"{width}px", height=f"{height}px", margin="0")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(**cell))
        self.overlay = widgets.Image(format="png", layout=widgets.Layout(**cell))
        self.widget = widgets.GridBox(
            [self.plot, self.overlay],
            layout=widgets.Layout(grid_template_columns=f"{width}px", grid_template_rows=f"{height}px"),
        )

    @property
    def ax(self):
        return self.canvas.ax

    def redraw(self) -> None:
        """Renders the plot again (after its data changed)."""
        self.plot.value = self.canvas.png()

    def mark(self, x: float | None, y: float | None, *, label: str = "") -> None:
        """Moves the marker to data point ``(x, y)``; ``None`` hides it."""
        self.overlay.value = self.canvas.marker_png(x, y, label=label)
