"""The exercise checkers: right answers pass, each catalogued mistake is named, anything else wrong fails.

Every wrong function below is written the way a learner would write it, independently of the
checker's own catalogue, so a test fails if the checker stops recognising the mistake as written.
"""

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checker_contract import contract_tests

from vaekit import exercises
from vaekit.exercises import checks_elbo

ex = exercises


def per_image(values):
    return values.reshape(values.shape[0], -1)


def bce(logits, x):
    return jax.nn.softplus(logits) - x * logits


def recon(logits, x):
    return jnp.sum(per_image(bce(logits, x)), axis=1)


def kl_terms(mean, log_var):
    return mean**2 + jnp.exp(log_var) - log_var - 1


def kl(mean, log_var):
    return 0.5 * jnp.sum(kl_terms(mean, log_var), axis=-1)


def noise(key, mean):
    return jax.random.normal(key, mean.shape)


def omega_of(a, b):
    return jnp.arccos(jnp.clip(jnp.dot(a / jnp.linalg.norm(a), b / jnp.linalg.norm(b)), -1.0, 1.0))


def slerp_formula(a, b, t, omega):
    return jnp.sin((1 - t) * omega) / jnp.sin(omega) * a + jnp.sin(t * omega) / jnp.sin(omega) * b


def slerp(a, b, t):
    omega = omega_of(a, b)
    if jnp.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return slerp_formula(a, b, t, omega)


def ndtri(p):
    return jax.scipy.special.ndtri(p)


def grid(steps):
    return np.array([statistics.NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, steps)])


def active(means, threshold):
    return int(jnp.sum(jnp.var(means, axis=0) > threshold))


def iwae(w):
    return jax.nn.logsumexp(w, axis=0) - jnp.log(w.shape[0])


EXERCISES = {
    "reconstruction_loss": (
        ex.check_reconstruction_loss,
        recon,
        {
            "mean_over_pixels": lambda l, x: jnp.mean(per_image(bce(l, x)), axis=1),
            "probabilities_as_logits": lambda l, x: recon(jax.nn.sigmoid(l), x),
            "logits_as_probabilities": lambda l, x: -jnp.sum(per_image(x * jnp.log(l) + (1 - x) * jnp.log(1 - l)), 1),
            "wrong_sign": lambda l, x: -recon(l, x),
            "summed_over_batch": lambda l, x: jnp.sum(bce(l, x)),
            "averaged_over_batch": lambda l, x: jnp.mean(recon(l, x)),
            "not_summed": bce,
            "squared_error": lambda l, x: jnp.sum(per_image((jax.nn.sigmoid(l) - x) ** 2), axis=1),
            "unstable": lambda l, x: -jnp.sum(per_image(x * jnp.log(jax.nn.sigmoid(l))
                                                        + (1 - x) * jnp.log(1 - jax.nn.sigmoid(l))), axis=1),
        },
        {
            "zeros": lambda l, x: jnp.zeros(l.shape[0]),
            "identity": lambda l, x: l,
            "batch reversed": lambda l, x: recon(l, x)[::-1],
        },
    ),
    "prior_sample": (
        ex.check_prior_sample,
        lambda num, dim, key: jax.random.normal(key, (num, dim)),
        {
            "transposed": lambda num, dim, key: jax.random.normal(key, (dim, num)),
            "ignores_key": lambda num, dim, key: np.random.default_rng().standard_normal((num, dim)),
            "shared_across_samples": lambda num, dim, key: jnp.tile(jax.random.normal(key, (dim,)), (num, 1)),
            "shared_across_dimensions": lambda num, dim, key: jnp.tile(jax.random.normal(key, (num, 1)), (1, dim)),
            "uniform": lambda num, dim, key: jax.random.uniform(key, (num, dim)),
            "wrong_mean": lambda num, dim, key: 1.0 + jax.random.normal(key, (num, dim)),
            "wrong_std": lambda num, dim, key: 2.0 * jax.random.normal(key, (num, dim)),
            "not_normal": lambda num, dim, key: jax.random.laplace(key, (num, dim)) / math.sqrt(2),
            "correlated_dimensions": lambda num, dim, key: (
                lambda e: (e[:, :1] + e[:, 1:]) / math.sqrt(2))(jax.random.normal(key, (num, dim + 1))),
        },
        {
            "zeros": lambda num, dim, key: jnp.zeros((num, dim)),
            "identity": lambda num, dim, key: num,
            "key ignored, one shape": lambda num, dim, key: jax.random.normal(jax.random.key(0), (num, dim)),
        },
    ),
    "reparameterize": (
        ex.check_reparameterize,
        lambda mean, log_var, key: mean + jnp.exp(0.5 * log_var) * noise(key, mean),
        {
            "variance_as_std": lambda m, v, key: m + jnp.exp(v) * noise(key, m),
            "log_var_as_std": lambda m, v, key: m + v * noise(key, m),
            "noise_not_scaled": lambda m, v, key: m + noise(key, m),
            "std_inverted": lambda m, v, key: m + noise(key, m) / jnp.exp(0.5 * v),
            "no_noise": lambda m, v, key: m,
            "mean_missing": lambda m, v, key: jnp.exp(0.5 * v) * noise(key, m),
            "ignores_key": lambda m, v, key: m + jnp.exp(0.5 * v) * noise(jax.random.key(42), m),
            "noise_shared_across_batch": lambda m, v, key: m + jnp.exp(0.5 * v) * jax.random.normal(
                key, (1, m.shape[1])),
            "noise_shared_across_dimensions": lambda m, v, key: m + jnp.exp(0.5 * v) * jax.random.normal(
                key, (m.shape[0], 1)),
            "noise_not_normal": lambda m, v, key: m + jnp.exp(0.5 * v) * jax.random.uniform(
                key, m.shape, minval=-math.sqrt(3), maxval=math.sqrt(3)),
            "no_gradient": lambda m, v, key: jax.lax.stop_gradient(m + jnp.exp(0.5 * v) * noise(key, m)),
            "no_gradient_to_mean": lambda m, v, key: jax.lax.stop_gradient(m) + jnp.exp(0.5 * v) * noise(key, m),
            "no_gradient_to_log_var": lambda m, v, key: m + jax.lax.stop_gradient(jnp.exp(0.5 * v)) * noise(key, m),
            "not_differentiable": lambda m, v, key: np.asarray(m) + np.exp(0.5 * np.asarray(v)) * np.asarray(
                noise(key, m)),
            "overflow": lambda m, v, key: m + jnp.sqrt(jnp.exp(v)) * noise(key, m),
        },
        {
            "zeros": lambda m, v, key: jnp.zeros_like(m),
            "identity": lambda m, v, key: v,
            "transposed": lambda m, v, key: (m + jnp.exp(0.5 * v) * noise(key, m)).T,
        },
    ),
    "gaussian_kl": (
        ex.check_gaussian_kl,
        kl,
        {
            "wrong_sign": lambda m, v: -kl(m, v),
            "missing_half": lambda m, v: jnp.sum(kl_terms(m, v), axis=-1),
            "missing_minus_one": lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(v) - v, axis=-1),
            "log_std_for_log_var": lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(2 * v) - 2 * v - 1, axis=-1),
            "averaged_over_dimensions": lambda m, v: 0.5 * jnp.mean(kl_terms(m, v), axis=-1),
            "log_var_sign": lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(v) + v - 1, axis=-1),
            "missing_mean_term": lambda m, v: 0.5 * jnp.sum(jnp.exp(v) - v - 1, axis=-1),
            "std_for_variance": lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(0.5 * v) - v - 1, axis=-1),
            "summed_over_batch": lambda m, v: 0.5 * jnp.sum(kl_terms(m, v)),
            "not_summed": lambda m, v: 0.5 * kl_terms(m, v),
            "log_of_exp": lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(v) - jnp.log(jnp.exp(v)) - 1, axis=-1),
        },
        {
            "zeros": lambda m, v: jnp.zeros(m.shape[0]),
            "identity": lambda m, v: m,
            "batch reversed": lambda m, v: kl(m, v)[::-1],
        },
    ),
    "iwae_bound": (
        ex.check_iwae_bound,
        iwae,
        {
            "mean_of_log_weights": lambda w: jnp.mean(w, axis=0),
            "missing_log_k": lambda w: jax.nn.logsumexp(w, axis=0),
            "log_k_added": lambda w: jax.nn.logsumexp(w, axis=0) + jnp.log(w.shape[0]),
            "wrong_axis": lambda w: jax.nn.logsumexp(w, axis=1) - jnp.log(w.shape[0]),
            "max_instead_of_logsumexp": lambda w: jnp.max(w, axis=0),
            "summed_over_batch": lambda w: jnp.sum(iwae(w)),
            "unstable": lambda w: jnp.log(jnp.mean(jnp.exp(w), axis=0)),
        },
        {
            "zeros": lambda w: jnp.zeros(w.shape[1]),
            "identity": lambda w: w,
            "batch reversed": lambda w: iwae(w)[::-1],
        },
    ),
    "active_units": (
        ex.check_active_units,
        active,
        {
            "wrong_axis": lambda m, t: int(jnp.sum(jnp.var(m, axis=1) > t)),
            "std_not_variance": lambda m, t: int(jnp.sum(jnp.std(m, axis=0) > t)),
            "uncentred": lambda m, t: int(jnp.sum(jnp.mean(m**2, axis=0) > t)),
            "mean_not_variance": lambda m, t: int(jnp.sum(jnp.mean(m, axis=0) > t)),
            "counts_inactive": lambda m, t: int(jnp.sum(jnp.var(m, axis=0) < t)),
            "mask_not_count": lambda m, t: jnp.var(m, axis=0) > t,
            "variances_not_count": lambda m, t: jnp.var(m, axis=0),
            "fraction_not_count": lambda m, t: jnp.mean(jnp.var(m, axis=0) > t),
            "ignores_threshold": lambda m, t: int(jnp.sum(jnp.var(m, axis=0) > 0.01)),
            "greater_or_equal": lambda m, t: int(jnp.sum(jnp.var(m, axis=0) >= t)),
        },
        {
            "zeros": lambda m, t: 0,
            "identity": lambda m, t: m,
            "transposed": lambda m, t: active(m.T, t),
        },
    ),
    "negative_elbo": (
        ex.check_negative_elbo,
        lambda l, x, m, v: recon(l, x) + kl(m, v),
        {
            "pixel_mean_reconstruction": lambda l, x, m, v: jnp.mean(per_image(bce(l, x)), axis=1) + kl(m, v),
            "kl_averaged_over_dimensions": lambda l, x, m, v: recon(l, x) + 0.5 * jnp.mean(kl_terms(m, v), -1),
            "both_averaged": lambda l, x, m, v: (jnp.mean(per_image(bce(l, x)), axis=1)
                                                 + 0.5 * jnp.mean(kl_terms(m, v), -1)),
            "wrong_sign": lambda l, x, m, v: -(recon(l, x) + kl(m, v)),
            "kl_sign": lambda l, x, m, v: recon(l, x) - kl(m, v),
            "kl_missing": lambda l, x, m, v: recon(l, x),
            "summed_over_batch": lambda l, x, m, v: jnp.sum(recon(l, x) + kl(m, v)),
            "averaged_over_batch": lambda l, x, m, v: jnp.mean(recon(l, x) + kl(m, v)),
            "reconstruction_term": lambda l, x, m, v: (
                jnp.sum(per_image((jax.nn.sigmoid(l) - x) ** 2), axis=1) + kl(m, v)),
            "kl_term": lambda l, x, m, v: recon(l, x) + 0.5 * jnp.sum(m**2 + jnp.exp(v) - v, axis=-1),
        },
        {
            "zeros": lambda l, x, m, v: jnp.zeros(l.shape[0]),
            "identity": lambda l, x, m, v: l,
            "batch reversed": lambda l, x, m, v: (recon(l, x) + kl(m, v))[::-1],
        },
    ),
    "slerp": (
        ex.check_slerp,
        slerp,
        {
            "lerp": lambda a, b, t: (1 - t) * a + t * b,
            "not_divided_by_sin": lambda a, b, t: (
                jnp.sin((1 - t) * omega_of(a, b)) * a + jnp.sin(t * omega_of(a, b)) * b),
            "t_reversed": lambda a, b, t: slerp(a, b, 1 - t),
            "angle_from_unnormalised_dot": lambda a, b, t: slerp_formula(
                a, b, t, jnp.arccos(jnp.clip(jnp.dot(a, b), -1.0, 1.0))),
            "unit_vectors_returned": lambda a, b, t: slerp(a / jnp.linalg.norm(a), b / jnp.linalg.norm(b), t),
            "parallel_nan": lambda a, b, t: slerp_formula(a, b, t, omega_of(a, b)),
        },
        {
            "zeros": lambda a, b, t: jnp.zeros_like(a),
            "identity": lambda a, b, t: a,
            "reversed": lambda a, b, t: slerp(a, b, t)[::-1],
        },
    ),
    "inverse_cdf_grid": (
        ex.check_inverse_cdf_grid,
        grid,
        {
            "midpoints": lambda steps: ndtri((jnp.arange(steps) + 0.5) / steps),
            "linear_in_z": lambda steps: jnp.linspace(ndtri(0.05), ndtri(0.95), steps),
            "includes_0_and_1": lambda steps: ndtri(jnp.linspace(0.0, 1.0, steps)),
            "cdf_not_quantile": lambda steps: jax.scipy.stats.norm.cdf(jnp.linspace(0.05, 0.95, steps)),
            "probabilities_returned": lambda steps: jnp.linspace(0.05, 0.95, steps),
            "reversed": lambda steps: grid(steps)[::-1],
        },
        {
            "zeros": lambda steps: jnp.zeros(steps),
            "identity": lambda steps: steps,
            "divides by steps - 1": lambda steps: ndtri(0.05 + 0.9 * jnp.arange(steps) / (steps - 1)),
        },
    ),
}

globals().update(contract_tests(EXERCISES))


@pytest.mark.parametrize("name", EXERCISES)
def test_every_catalogued_mistake_has_a_test_and_an_id_of_its_own(name):
    check, _, wrong, _ = EXERCISES[name]
    assert set(wrong) == set(check.mistakes), "each mistake the checker names has a wrong function here"
    assert not set(check.mistakes) & (set(ex.GENERIC_MISTAKES) - {"wrong_values"})


def test_a_missing_return_and_a_non_array_are_named():
    assert ex.check_gaussian_kl(lambda mean, log_var: None).mistake == "returned_none"
    assert ex.check_gaussian_kl(lambda mean, log_var: "zero").mistake == "wrong_type"
    assert ex.check_gaussian_kl(3.0).mistake == "not_callable"


def test_the_first_differing_entry_is_shown_with_its_inputs_and_the_difference():
    feedback = ex.check_gaussian_kl(lambda m, v: kl(m, v) + jnp.where(jnp.arange(m.shape[0]) == 2, 0.5, 0.0))
    assert feedback.mistake == "wrong_values"
    assert "entry 2" in feedback.message and "off by +0.5" in feedback.message
    assert "mean[2] = [" in feedback.message and "log_var[2] = [" in feedback.message


def test_a_wrong_term_of_the_negative_elbo_is_told_apart_from_the_other():
    # The mistakes of the gaussian_kl exercise, made inside the -ELBO, come out as a wrong KL term.
    for wrong_kl in (lambda m, v: -kl(m, v) * 3, lambda m, v: 0.5 * jnp.sum(m**2 + jnp.exp(2 * v) - 2 * v - 1, -1)):
        assert ex.check_negative_elbo(lambda l, x, m, v: recon(l, x) + wrong_kl(m, v)).mistake == "kl_term"


def test_the_inverse_cdf_grid_states_the_kits_convention():
    feedback = ex.check_inverse_cdf_grid(grid)
    assert "numpy.linspace(0.05, 0.95, steps)" in feedback.message
    assert "numpy.linspace(0.05, 0.95, steps)" in ex.check_inverse_cdf_grid(EXERCISES["inverse_cdf_grid"][2][
        "midpoints"]).message


def test_the_reparameterization_checker_accepts_any_way_of_drawing_normal_noise():
    def split_first(mean, log_var, key):
        _, key = jax.random.split(key)
        return jax.random.normal(key, mean.shape) * jnp.exp(log_var / 2) + mean

    assert ex.check_reparameterize(split_first).passed


def test_a_checker_that_fails_itself_says_so_instead_of_raising(monkeypatch):
    monkeypatch.setattr(checks_elbo, "_kl", lambda mean, log_var: 1 / 0)
    feedback = ex.check_gaussian_kl(kl)
    assert (feedback.passed, feedback.mistake) == (False, "checker_error")
    assert "ZeroDivisionError" in feedback.message


def test_feedback_shows_as_coloured_html_in_a_notebook_and_as_text_in_a_terminal():
    passed = ex.Feedback(True, None, "All `good` <here>.")
    wrong = ex.Feedback(False, "missing_half", "Twice the answer.\nHalve it.")
    stub = ex.check_gaussian_kl(lambda mean, log_var: (_ for _ in ()).throw(NotImplementedError))
    assert str(passed) == "Correct: All `good` <here>."
    assert str(wrong) == "Not yet [missing_half]: Twice the answer.\nHalve it."
    assert str(stub).startswith("Not yet implemented: ")
    html_passed, html_wrong, html_stub = passed._repr_html_(), wrong._repr_html_(), stub._repr_html_()
    assert "<code>good</code>" in html_passed and "&lt;here&gt;" in html_passed and "<here>" not in html_passed
    assert "Twice the answer.<br>Halve it." in html_wrong and "Not yet [missing_half]" in html_wrong
    colours = [next(c for c in ("#1e8e3e", "#c5221f", "#b06000") if c in h) for h in (html_passed, html_wrong,
                                                                                        html_stub)]
    assert colours == ["#1e8e3e", "#c5221f", "#b06000"]


def test_ipython_shows_the_same_text_as_print():
    from IPython.lib.pretty import pretty

    feedback = ex.Feedback(False, "missing_half", "Twice the answer.")
    assert pretty(feedback) == str(feedback) == "Not yet [missing_half]: Twice the answer."
