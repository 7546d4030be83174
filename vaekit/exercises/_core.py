"""The machinery every checker shares: :class:`Feedback`, the verdicts, the comparison with a reference and its cases."""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


NOT_IMPLEMENTED = "not_implemented"

GENERIC_MISTAKES = {
    NOT_IMPLEMENTED: "the body still raises NotImplementedError",
    "not_callable": "the checker was given something that is not a function",
    "raised": "the function raised an exception",
    "returned_none": "the function returns None (a missing `return`)",
    "wrong_type": "the function returns something that is not an array of numbers",
    "wrong_shape": "the answer has the wrong shape, and no catalogued mistake explains it",
    "wrong_values": "the answer differs from the reference, and no catalogued mistake explains it",
    "checker_error": "the checker itself failed (a bug in vaekit)",
}

# float32 answers computed in another order than the reference's agree to about 1e-6 relative.
RTOL = 1e-4
ATOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What a checker says about a learner's function.

    Attributes:
      passed: whether the function gave the right answer on every input the checker tried.
      mistake: ``None`` when it passed, else a short id: one of the checker's ``mistakes``
        (e.g. ``"missing_half"``) or of :data:`GENERIC_MISTAKES` (e.g. ``"not_implemented"``).
      message: what was tried and, on a failure, what went wrong and how to fix it.

    Example:
      >>> print(Feedback(False, "missing_half", "Your KL is twice the answer: the 1/2 is missing."))
      Not yet [missing_half]: Your KL is twice the answer: the 1/2 is missing.
    """

    passed: bool
    mistake: str | None
    message: str

    def _headline(self) -> str:
        if self.passed:
            return "Correct"
        if self.mistake == NOT_IMPLEMENTED:
            return "Not yet implemented"
        return f"Not yet [{self.mistake}]"

    def __str__(self) -> str:
        return f"{self._headline()}: {self.message}"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython's plain-text view: the same text
        printer.text(str(self))

    def _repr_html_(self) -> str:
        if self.passed:
            edge, background = "#1e8e3e", "#e6f4ea"
        elif self.mistake == NOT_IMPLEMENTED:
            edge, background = "#b06000", "#fef7e0"
        else:
            edge, background = "#c5221f", "#fce8e6"
        # `code` spans of the message become <code>, after escaping everything else.
        body = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(self.message)).replace("\n", "<br>")
        return (f'<div style="border-left: 6px solid {edge}; background: {background}; color: #202124; '
                f'padding: 8px 12px; margin: 4px 0; font-family: sans-serif; line-height: 1.4">'
                f"<b>{html.escape(self._headline())}</b><br>{body}</div>")


class Verdict(Exception):
    """Ends a check early with its feedback (never leaves this module)."""

    def __init__(self, feedback: Feedback):
        super().__init__(feedback.message)
        self.feedback = feedback


def fail(mistake: str, message: str) -> Verdict:
    return Verdict(Feedback(False, mistake, message))


def checker(call: str, mistakes: dict[str, str]) -> Callable:
    """Makes ``check(fn)`` total: a verdict or any fault ends as a :class:`Feedback`, and lists its catalogue."""

    def wrap(check: Callable[[Callable], Feedback]) -> Callable[[Callable], Feedback]:
        @functools.wraps(check)
        def run(fn: Callable) -> Feedback:
            if not callable(fn):
                return Feedback(False, "not_callable", f"Pass the function itself, `{check.__name__}(f)`, for "
                                f"an f called as {called_as(call)}; got an object of type {type(fn).__name__}.")
            try:
                return check(fn)
            except Verdict as verdict:
                return verdict.feedback
            except Exception as error:  # shown, never raised into the notebook
                return Feedback(False, "checker_error", f"The checker itself failed ({type(error).__name__}: "
                                f"{error}). This is a bug in vaekit, not in your function: please report it.")

        run.mistakes = dict(mistakes)
        return run

    return wrap


def function_name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


def called_as(call: str) -> str:
    """``"f(a, b)  # shapes"`` as it reads in a message."""
    signature, _, shapes = call.partition("  # ")
    return f"`{signature}` ({shapes})" if shapes else f"`{signature}`"


def hint(error: Exception, call: str) -> str:
    text = str(error)
    call = called_as(call)
    if isinstance(error, jax.errors.JAXTypeError) or "Tracer" in text:
        return ("JAX traced your function (to differentiate or compile it) and met NumPy or a Python `float`/`if` "
                f"on a traced array: use `jax.numpy` throughout. It is called as {call}.")
    if isinstance(error, TypeError):
        return f"check the arguments it takes and what it does with them: it is called as {call}."
    if "shape" in text or "broadcast" in text or "axis" in text or "rank" in text:
        return f"check the shapes: it is called as {call}; print the shapes of the arrays inside your function."
    return f"it is called as {call}."


def call_learner(fn: Callable, args: tuple, call: str, where: str) -> Any:
    """``fn(*args)``; a stub or an exception becomes the verdict."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise fail(NOT_IMPLEMENTED, f"`{function_name(fn)}` is not yet implemented: write its body in place of "
                    "`raise NotImplementedError()`, then run this cell again.") from None
    except Exception as error:
        lines = str(error).strip().splitlines()
        detail = lines[0] if lines else ""
        raise fail("raised", f"Calling `{function_name(fn)}` on {where} raised {type(error).__name__}: {detail}\n"
                    f"Hint: {hint(error, call)}") from None


def as_array(result: Any, fn: Callable) -> np.ndarray:
    if result is None:
        raise fail("returned_none", f"`{function_name(fn)}` returned None: is a `return` missing?")
    try:
        return np.asarray(result, np.float64)
    except (TypeError, ValueError) as error:
        raise fail("wrong_type", f"`{function_name(fn)}` returned a {type(result).__name__}, which is not an array of "
                    f"numbers ({error}).") from None


def close(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True))


def f32(values) -> jax.Array:
    return jnp.asarray(values, jnp.float32)


def shown(value) -> str:
    if isinstance(value, (int, float)):
        return f"{value:g}"
    array = np.asarray(value)
    return np.array2string(array, precision=3, threshold=10, edgeitems=3, separator=", ").replace("\n", "")


class Case(NamedTuple):
    """Inputs for the learner's function, described for a message.

    ``row_axes[i]`` is the axis of argument ``i`` that the answer's first axis runs over (``None``: the
    argument is not per example), so that a wrong entry can be shown with the inputs that produced it.
    """

    args: tuple
    describe: str
    row_axes: tuple = ()


class Mistake(NamedTuple):
    """A wrong variant of the answer; ``matches(got, variant_answer)`` says when an answer is this mistake."""

    variant: Callable
    message: str
    matches: Callable[[np.ndarray, np.ndarray], bool] = close


class Edge(NamedTuple):
    case: Case
    mistake: str
    message: str


def difference(fn: Callable, case: Case, arg_names: tuple[str, ...], got: np.ndarray, want: np.ndarray) -> Feedback:
    """The first entry where the answer differs, with the inputs of its example."""
    if got.shape != want.shape:
        return Feedback(False, "wrong_shape", f"For {case.describe}, `{function_name(fn)}` returns an array of shape "
                        f"{got.shape}; the answer has shape {want.shape}.")
    wrong = ~np.isclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
    index = tuple(int(i) for i in np.argwhere(wrong)[0])
    inputs = []
    for name, arg, axis in zip(arg_names, case.args, case.row_axes or (None,) * len(case.args)):
        if axis is not None and index:
            inputs.append(f"{name}[{index[0]}] = {shown(np.take(np.asarray(arg), index[0], axis=axis))}")
        elif axis is None and np.ndim(arg) == 0 and not isinstance(arg, jax.Array):
            inputs.append(f"{name} = {shown(arg)}")
    where = f" (from {', '.join(inputs)})" if inputs else ""
    entry = f"entry {index[0] if len(index) == 1 else index} of your answer" if index else "your answer"
    off = got[index] - want[index]
    relative = f", {abs(off) / abs(want[index]):.1%}" if np.isfinite(off) and want[index] != 0 else ""
    return Feedback(False, "wrong_values", f"For {case.describe}, {entry} is {got[index]:.6g}; the right answer "
                    f"is {want[index]:.6g} (off by {off:+.4g}{relative}){where}.")


def compare(fn: Callable, *, call: str, arg_names: tuple[str, ...], reference: Callable, cases: list[Case],
             mistakes: dict[str, Mistake], edges: tuple[Edge, ...] = (), passed: str) -> Feedback:
    """Runs ``fn`` on the cases, then on the edge cases; names a catalogued mistake where one explains a failure."""
    answers = [as_array(call_learner(fn, case.args, call, case.describe), fn) for case in cases]
    wanted = [np.asarray(reference(*case.args), np.float64) for case in cases]
    first_wrong = next((i for i, (got, want) in enumerate(zip(answers, wanted)) if not close(got, want)), None)
    if first_wrong is not None:
        for mistake, (variant, message, matches) in mistakes.items():
            if all(matches(got, np.asarray(variant(*case.args), np.float64)) for got, case in zip(answers, cases)):
                return Feedback(False, mistake, message)
        return difference(fn, cases[first_wrong], arg_names, answers[first_wrong], wanted[first_wrong])
    for edge in edges:
        got = as_array(call_learner(fn, edge.case.args, call, edge.case.describe), fn)
        want = np.asarray(reference(*edge.case.args), np.float64)
        if not close(got, want):
            shown = difference(fn, edge.case, arg_names, got, want).message
            return Feedback(False, edge.mistake, f"{edge.message}\n{shown}")
    return Feedback(True, None, passed)


def pixels_sum(values: jax.Array) -> jax.Array:
    return jnp.sum(values.reshape(values.shape[0], -1), axis=-1)


def pixels_mean(values: jax.Array) -> jax.Array:
    return jnp.mean(values.reshape(values.shape[0], -1), axis=-1)


def bce(logits: jax.Array, x: jax.Array) -> jax.Array:
    """Per-pixel Bernoulli -log p(x|logits)."""
    return jax.nn.softplus(logits) - x * logits


def images(rng: np.random.Generator, batch: int, side: int, *, scale: float, binary: bool) -> tuple:
    logits = f32(scale * rng.standard_normal((batch, side, side, 1)))
    x = rng.uniform(size=(batch, side, side, 1))
    return logits, f32(np.round(x) if binary else x)


