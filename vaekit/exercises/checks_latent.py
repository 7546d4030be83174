"""Checkers of chapter 04: spherical interpolation and the inverse-CDF grid of codes."""

from __future__ import annotations

import math
import statistics
from typing import Callable

import jax.numpy as jnp
import numpy as np

from vaekit import latent
from vaekit.exercises._core import Case, Edge, Feedback, Mistake, checker, compare, f32


# ---------------------------------------------------------------------------------------------------------------
# Chapter 04


_SLERP_CALL = "slerp(a, b, t)  # a, b: (latent_dim,) codes; t: a number -> (latent_dim,)"


def _omega(a, b):
    return jnp.arccos(jnp.clip(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)), -1.0, 1.0))


def _sin_mix(a, b, t, omega, *, divide=True):
    mixed = jnp.sin((1 - t) * omega) * a + jnp.sin(t * omega) * b
    return mixed / jnp.sin(omega) if divide else mixed


@checker(_SLERP_CALL, {
    "lerp": "returns the straight line (1 - t) a + t b",
    "not_divided_by_sin": "leaves out the division by sin(omega)",
    "t_reversed": "runs from b to a (t and 1 - t swapped)",
    "angle_from_unnormalised_dot": "takes arccos of a . b without dividing by the norms",
    "unit_vectors_returned": "interpolates the directions a/|a| and b/|b| and returns a unit vector",
    "parallel_nan": "returns NaN when a and b point the same way (sin(omega) = 0)",
})
def check_slerp(fn: Callable) -> Feedback:
    r"""Checks ``fn(a, b, t) -> (latent_dim,)``: the great-circle path between two codes, for a number ``t``.

    .. math::

       \operatorname{slerp}(a, b; t) = \frac{\sin((1 - t)\Omega)}{\sin\Omega}\,a
                                      + \frac{\sin(t\Omega)}{\sin\Omega}\,b,
       \qquad \cos\Omega = \frac{a\cdot b}{\lVert a\rVert\,\lVert b\rVert},

    as :func:`vaekit.latent.slerp`. Tried on codes of 2 to 16 dimensions with equal and unequal norms,
    acute and obtuse angles, t from 0 to 1, then on two codes that point the same way (where
    :math:`\sin\Omega = 0`: the path is the straight line).

    Args:
      fn: the learner's ``slerp(a, b, t)``.

    Returns:
      A :class:`Feedback`; ``check_slerp.mistakes`` lists the mistakes it names.

    Example:
      >>> check_slerp(latent.slerp).passed
      True
    """
    rng = np.random.default_rng(7)
    a16, b16 = f32(rng.standard_normal(16)), f32(2.0 * rng.standard_normal(16))
    cases = [Case((a16, b16, t), f"two 16-dimensional codes of different norms, t = {t}") for t in (0.3, 0.5, 0.9)]
    cases += [
        Case((a16, b16, 0.0), "two 16-dimensional codes, t = 0 (the path starts at a)"),
        Case((f32([3.0, 0.0]), f32([0.0, 3.0]), 0.5), "a = [3, 0], b = [0, 3], t = 0.5"),
        Case((f32([1.0, 0.2, 0.0]), f32([-2.0, 1.0, 0.5]), 0.25), "two codes at an obtuse angle, t = 0.25"),
    ]
    same_way = Case((f32([0.0, 2.0, 0.0, 0.0]), f32([0.0, 5.0, 0.0, 0.0]), 0.4),
                     "a = [0, 2, 0, 0], b = [0, 5, 0, 0] (the same direction), t = 0.4")

    def unit(v):
        return v / jnp.linalg.norm(v)

    return compare(
        fn, call=_SLERP_CALL, arg_names=("a", "b", "t"), reference=latent.slerp, cases=cases,
        mistakes={
            "lerp": Mistake(lambda a, b, t: (1 - t) * a + t * b, (
                "That is the straight line, lerp. slerp turns along the great circle: weights "
                "sin((1 - t) omega) / sin(omega) and sin(t omega) / sin(omega), omega the angle between a and b.")),
            "not_divided_by_sin": Mistake(lambda a, b, t: _sin_mix(a, b, t, _omega(a, b), divide=False), (
                "You leave out the division by sin(omega): without it the path does not start at a nor end at b "
                "(at t = 0 it gives sin(omega) * a).")),
            "t_reversed": Mistake(lambda a, b, t: _sin_mix(b, a, t, _omega(a, b)), (
                "Your path runs backwards, from b at t = 0 to a at t = 1: the weight of a is sin((1 - t) omega), "
                "the weight of b is sin(t omega).")),
            "angle_from_unnormalised_dot": Mistake(
                lambda a, b, t: _sin_mix(a, b, t, jnp.arccos(jnp.clip(jnp.dot(a, b), -1.0, 1.0))), (
                    "Your angle is arccos(a . b): the cosine of the angle is a . b / (|a| |b|); divide by the "
                    "norms first.")),
            "unit_vectors_returned": Mistake(lambda a, b, t: _sin_mix(unit(a), unit(b), t, _omega(a, b)), (
                "You interpolate the unit vectors a/|a| and b/|b|: the formula applies to a and b themselves, "
                "so that the path starts at a and ends at b.")),
        },
        edges=(Edge(same_way, "parallel_nan", (
            "Right except when a and b point the same way: then omega = 0 and sin(omega) = 0, so the formula "
            "divides 0 by 0. Its limit is the straight line: return (1 - t) a + t b when omega is (nearly) 0.")),),
        passed="Your slerp matches vaekit.latent.slerp on codes of 2 to 16 dimensions with equal and unequal "
               "norms, acute and obtuse angles, t from 0 to 1, and codes that point the same way.")


_GRID_CALL = "inverse_cdf_grid(steps)  # -> (steps,)"
_LOW, _HIGH = 0.05, 0.95
_GRID_CONVENTION = (f"the grid is the standard normal quantiles at `steps` probabilities evenly spaced from "
                    f"{_LOW} to {_HIGH}, `numpy.linspace({_LOW}, {_HIGH}, steps)` (vaekit.latent.inverse_cdf_grid)")


def _normal_quantiles(probabilities) -> np.ndarray:
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf(p) if 0 < p < 1 else math.copysign(math.inf, p - 0.5) for p in probabilities])


@checker(_GRID_CALL, {
    "midpoints": "uses the probabilities (i + 0.5) / steps instead of linspace(0.05, 0.95, steps)",
    "linear_in_z": "spaces the values evenly in z instead of in probability",
    "includes_0_and_1": "uses the probabilities 0 and 1, whose quantiles are infinite",
    "cdf_not_quantile": "applies the normal CDF instead of its inverse",
    "probabilities_returned": "returns the probabilities instead of their quantiles",
    "reversed": "returns the grid in decreasing order",
})
def check_inverse_cdf_grid(fn: Callable) -> Feedback:
    r"""Checks ``fn(steps) -> (steps,)``: prior quantiles for a grid over a 2-D latent space.

    .. math::

       z_i = \Phi^{-1}(p_i), \qquad p_i = 0.05 + 0.9\,\frac{i}{\text{steps} - 1},\quad i = 0, \dots, \text{steps} - 1,

    that is :func:`vaekit.latent.inverse_cdf_grid` with its defaults (``numpy.linspace(0.05, 0.95,
    steps)``; one step gives :math:`\Phi^{-1}(0.05)`). For 10 steps these probabilities are the
    midpoints :math:`(i + \tfrac12)/10`; for other counts they are not. Tried with 10, 7, 2 and 25
    steps, then 1.

    Args:
      fn: the learner's ``inverse_cdf_grid(steps)``.

    Returns:
      A :class:`Feedback`; ``check_inverse_cdf_grid.mistakes`` lists the mistakes it names.

    Example:
      >>> from statistics import NormalDist
      >>> check_inverse_cdf_grid(lambda steps: [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, steps)]
      ...                        ).passed
      True
    """
    cases = [Case((steps,), f"steps = {steps}") for steps in (10, 7, 2, 25)]
    one = Case((1,), "steps = 1 (a single value: the quantile at 0.05)")
    normal = statistics.NormalDist()
    return compare(
        fn, call=_GRID_CALL, arg_names=("steps",), reference=latent.inverse_cdf_grid, cases=cases,
        mistakes={
            "midpoints": Mistake(lambda s: _normal_quantiles((np.arange(s) + 0.5) / s), (
                "You use the probabilities (i + 0.5) / steps. In this kit " + _GRID_CONVENTION + "; the two agree "
                "for 10 steps only.")),
            "linear_in_z": Mistake(lambda s: np.linspace(normal.inv_cdf(_LOW), normal.inv_cdf(_HIGH), s), (
                "Your values are evenly spaced in z. The point of the grid is equal prior MASS between neighbours: "
                "space the probabilities evenly and take their quantiles; " + _GRID_CONVENTION + ".")),
            "includes_0_and_1": Mistake(lambda s: _normal_quantiles(np.linspace(0.0, 1.0, s)), (
                "Your grid includes the probabilities 0 and 1, whose quantiles are -inf and +inf: "
                + _GRID_CONVENTION + ".")),
            "cdf_not_quantile": Mistake(lambda s: np.array([normal.cdf(p) for p in np.linspace(_LOW, _HIGH, s)]), (
                "You apply the normal CDF; the grid needs its inverse (the quantile function, "
                "`statistics.NormalDist().inv_cdf` or `jax.scipy.special.ndtri`): " + _GRID_CONVENTION + ".")),
            "probabilities_returned": Mistake(lambda s: np.linspace(_LOW, _HIGH, s), (
                "You return the probabilities themselves: the grid is in z, their standard normal quantiles.")),
            "reversed": Mistake(lambda s: latent.inverse_cdf_grid(s)[::-1], (
                "Your grid decreases: return it from the lowest quantile to the highest.")),
        },
        edges=(Edge(one, "wrong_values", (
            "Right for several steps, not for one: `numpy.linspace(0.05, 0.95, 1)` is [0.05], so one step gives "
            "the single value Phi^-1(0.05) = -1.645 (avoid dividing by steps - 1).")),),
        passed="Your grid matches vaekit.latent.inverse_cdf_grid for 1 to 25 steps: " + _GRID_CONVENTION + ".")


