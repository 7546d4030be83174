"""Chapter 05's checkers: right answers pass, each catalogued mistake is named, anything else wrong fails.

As in test_exercises.py, every wrong function is written the way a learner would write it (here with
jax.numpy, which returns NaN and infinity without the warnings NumPy turns into errors in this suite).
"""

import jax.numpy as jnp
import numpy as np
import pytest
from checker_contract import contract_tests

from vaekit import exercises as ex


def mse(x, y):
    return jnp.mean((x - y) ** 2, axis=(1, 2, 3))


def psnr(x, y, max_value):
    return 10 * jnp.log10(max_value**2 / mse(x, y))


def moments(features, ddof=1):
    features = jnp.asarray(features)
    mean = jnp.mean(features, axis=0, keepdims=True)  # keepdims: the suite forbids implicit rank promotion
    centred = features - mean
    return mean[0], centred.T @ centred / (features.shape[0] - ddof)


def trace_sqrt(s1, s2):
    eigenvalues = jnp.linalg.eigvals(s1 @ s2).real
    return jnp.sum(jnp.sqrt(jnp.clip(eigenvalues, 0.0)))


def fd(real, generated, *, ddof=1, cross=trace_sqrt, mean_term=lambda d: jnp.sum(d**2)):
    (m1, s1), (m2, s2) = moments(real, ddof), moments(generated, ddof)
    return mean_term(m1 - m2) + jnp.trace(s1) + jnp.trace(s2) - 2 * cross(s1, s2)


def fd_scipy_style(real, generated):
    """The usual FID code: a matrix square root, then its real part (here by eigendecomposition, in NumPy)."""
    (m1, s1), (m2, s2) = (np.mean(real, 0), np.cov(real, rowvar=False)), (np.mean(generated, 0),
                                                                             np.cov(generated, rowvar=False))
    eigenvalues, vectors = np.linalg.eig(s1 @ s2)
    root = (vectors * np.sqrt(eigenvalues.astype(complex))) @ np.linalg.inv(vectors)
    return np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root)  # complex, imaginary part ~0


EXERCISES = {
    "psnr": (
        ex.check_psnr,
        psnr,
        {
            "mse_over_batch": lambda x, y, m: 10 * jnp.log10(m**2 / jnp.mean((x - y) ** 2)),
            "natural_log": lambda x, y, m: 10 * jnp.log(m**2 / mse(x, y)),
            "max_not_squared": lambda x, y, m: 10 * jnp.log10(m / mse(x, y)),
            "twenty_log_of_mse": lambda x, y, m: 20 * jnp.log10(m / mse(x, y)),
            "ratio_inverted": lambda x, y, m: 10 * jnp.log10(mse(x, y) / m**2),
            "per_channel": lambda x, y, m: 10 * jnp.log10(m**2 / jnp.mean((x - y) ** 2, axis=(1, 2))),
            "finite_for_identical": lambda x, y, m: 10 * jnp.log10(m**2 / (mse(x, y) + 1e-10)),
        },
        {
            "zeros": lambda x, y, m: jnp.zeros(x.shape[0]),
            "the MSE": lambda x, y, m: mse(x, y),
            "batch reversed": lambda x, y, m: psnr(x, y, m)[::-1],
        },
    ),
    "frechet_distance": (
        ex.check_frechet_distance,
        fd,
        {
            "no_square_root": lambda r, g: fd(r, g, cross=lambda a, b: jnp.trace(a @ b)),
            "square_root_of_trace": lambda r, g: fd(r, g, cross=lambda a, b: jnp.sqrt(jnp.trace(a @ b))),
            "elementwise_square_root": lambda r, g: fd(r, g, cross=lambda a, b: jnp.trace(jnp.sqrt(a @ b))),
            "mean_term_missing": lambda r, g: fd(r, g, mean_term=lambda d: 0.0),
            "mean_norm_not_squared": lambda r, g: fd(r, g, mean_term=jnp.linalg.norm),
            "population_covariance": lambda r, g: fd(r, g, ddof=0),
            "square_root_of_result": lambda r, g: jnp.sqrt(fd(r, g)),
            "singular_covariance_nan": lambda r, g: fd(
                r, g, cross=lambda a, b: jnp.sum(jnp.sqrt(jnp.linalg.eigvals(a @ b).real))),
        },
        {
            "zeros": lambda r, g: 0.0,
            "mean term only": lambda r, g: jnp.sum((jnp.mean(r, 0) - jnp.mean(g, 0)) ** 2),
            "a vector": lambda r, g: jnp.diag(moments(r)[1]),
        },
    ),
}

globals().update(contract_tests(EXERCISES))


def test_the_library_functions_and_the_usual_fid_code_pass():
    from vaekit import metrics

    assert ex.check_psnr(lambda x, y, max_value: metrics.psnr(x, y, max_value=max_value)).passed
    assert ex.check_frechet_distance(metrics.frechet_distance).passed
    feedback = ex.check_frechet_distance(fd_scipy_style)  # complex answer: its real part counts
    assert feedback.passed, feedback.message


@pytest.mark.parametrize("name", EXERCISES)
def test_every_catalogued_mistake_has_a_test_and_an_id_of_its_own(name):
    check, _, wrong, _ = EXERCISES[name]
    assert set(wrong) == set(check.mistakes), "each mistake the checker names has a wrong function here"
    assert not set(check.mistakes) & set(ex.GENERIC_MISTAKES)


def test_a_wrong_psnr_is_shown_at_its_first_differing_image():
    feedback = ex.check_psnr(lambda x, y, m: psnr(x, y, m) + jnp.array([0.0, 0.0, 0.0, 1.0])[: x.shape[0]])
    assert feedback.mistake == "wrong_values"
    assert "entry 3 of your answer" in feedback.message and "4 grey 28x28 images" in feedback.message
