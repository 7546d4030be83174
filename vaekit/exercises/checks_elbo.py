"""Checkers of chapters 01-03: the reconstruction term, prior samples, the reparameterization, the Gaussian KL, the IWAE bound, active units and the negative ELBO."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vaekit import elbo
from vaekit.exercises._core import (
    RTOL, Case, Edge, Feedback, Mistake, as_array, bce, call_learner, checker, close, compare, f32, fail, images,
    pixels_mean, pixels_sum, shown,
)


# ---------------------------------------------------------------------------------------------------------------
# Chapter 01


_RECONSTRUCTION_CALL = "reconstruction_loss(logits, x)  # logits, x: (batch, height, width, 1) -> (batch,)"


@checker(_RECONSTRUCTION_CALL, {
    "mean_over_pixels": "averages the loss over pixels instead of summing it",
    "probabilities_as_logits": "turns the logits into probabilities, then uses those as logits",
    "logits_as_probabilities": "puts the logits into the formula for probabilities, log(p) and log(1 - p)",
    "wrong_sign": "returns log p(x|z), the log-likelihood, instead of its negative",
    "summed_over_batch": "sums over the batch too: one number instead of one loss per example",
    "averaged_over_batch": "averages over the batch: one number instead of one loss per example",
    "not_summed": "returns the loss of every pixel instead of summing over the pixels",
    "squared_error": "uses the squared error between sigmoid(logits) and x instead of the Bernoulli loss",
    "unstable": "takes log(sigmoid(logits)), which is -inf once sigmoid rounds to 0 or 1 (|logit| > ~17 in float32)",
})
def check_reconstruction_loss(fn: Callable) -> Feedback:
    r"""Checks ``fn(logits, x) -> (batch,)``: the Bernoulli :math:`-\log p(x|z)` from logits, summed over pixels.

    .. math::

       -\log p(x|z) = \sum_i \operatorname{softplus}(\ell_i) - x_i \ell_i,

    the reference :func:`vaekit.elbo.bernoulli_log_likelihood`, negated. Tried on batches of 1 to 4
    images of 28×28 and 8×8 pixels with grey and binary targets, then at logits of ±30 and ±120.

    Args:
      fn: the learner's ``reconstruction_loss(logits, x)``.

    Returns:
      A :class:`Feedback`; ``check_reconstruction_loss.mistakes`` lists the mistakes it names.

    Example:
      >>> check_reconstruction_loss(lambda logits, x: -elbo.bernoulli_log_likelihood(logits, x)).passed
      True
    """
    rng = np.random.default_rng(0)
    cases = [
        Case(images(rng, 4, 28, scale=2.0, binary=False), "4 images of 28x28 with grey targets", (0, 0)),
        Case(images(rng, 1, 28, scale=3.0, binary=True), "a batch of 1 image with binary targets", (0, 0)),
        Case(images(rng, 2, 8, scale=1.0, binary=False), "2 images of 8x8 pixels (any image size must work)",
              (0, 0)),
    ]
    extreme = f32(np.array([-120.0, -30.0, 30.0, 120.0, 0.0, 5.0]).reshape(1, 2, 3, 1))
    edge = Case((jnp.stack([extreme, -extreme]).reshape(2, 2, 3, 1),
                  f32(np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]).reshape(2, 2, 3, 1))),
                 "logits of ±30 and ±120, where the decoder is very sure (and sometimes wrong)", (0, 0))
    pixels = 784
    return compare(
        fn, call=_RECONSTRUCTION_CALL, arg_names=("logits", "x"),
        reference=lambda logits, x: -elbo.bernoulli_log_likelihood(logits, x),
        cases=cases,
        mistakes={
            "mean_over_pixels": Mistake(lambda l, x: pixels_mean(bce(l, x)), (
                f"Your loss is the mean over pixels: {pixels} times smaller than the answer for a 28x28 image. "
                "-log p(x|z) of an image is the SUM over its pixels (the pixels are independent given z). A mean "
                "here weighs the KL 784 times more in the ELBO.")),
            "probabilities_as_logits": Mistake(lambda l, x: pixels_sum(bce(jax.nn.sigmoid(l), x)), (
                "You apply the sigmoid and then use the probabilities where the formula wants logits (a sigmoid "
                "applied twice). The decoder's outputs are already logits: use softplus(logits) - x * logits.")),
            "logits_as_probabilities": Mistake(
                lambda l, x: -pixels_sum(x * jnp.log(l) + (1 - x) * jnp.log(1 - l)), (
                    "Your loss is NaN: you use the logits as probabilities in x log p + (1 - x) log(1 - p), and "
                    "log of a negative number is NaN. Logits are any real number; p = sigmoid(logit), or better, "
                    "use the stable form softplus(logits) - x * logits.")),
            "wrong_sign": Mistake(lambda l, x: elbo.bernoulli_log_likelihood(l, x), (
                "Your answer is the log-likelihood log p(x|z), which is negative; the loss is its negative, "
                "-log p(x|z) >= 0. Flip the sign.")),
            "summed_over_batch": Mistake(lambda l, x: jnp.sum(bce(l, x)), (
                "You return one number, the sum over the whole batch. The loss is per example, shape (batch,): "
                "sum over the pixels of each image only, e.g. `.reshape(len(x), -1).sum(axis=1)`.")),
            "averaged_over_batch": Mistake(lambda l, x: jnp.mean(pixels_sum(bce(l, x))), (
                "You return one number, the mean over the batch. The loss is per example, shape (batch,): "
                "sum over the pixels of each image only; the training step averages over the batch itself.")),
            "not_summed": Mistake(bce, (
                "You return the loss of every pixel. Sum it over the pixels of each image, so that the answer "
                "has shape (batch,): e.g. `.reshape(len(x), -1).sum(axis=1)`.")),
            "squared_error": Mistake(lambda l, x: pixels_sum(jnp.square(jax.nn.sigmoid(l) - x)), (
                "You compute the squared error between sigmoid(logits) and x. The Bernoulli decoder's loss is "
                "the cross-entropy, softplus(logits) - x * logits summed over pixels.")),
        },
        edges=(Edge(edge, "unstable", (
            "Right on ordinary logits, wrong on very confident ones: log(sigmoid(logit)) rounds to log(0) = -inf "
            "once |logit| > ~17 in float32. Use the identity x log s(l) + (1 - x) log(1 - s(l)) = x l - "
            "softplus(l), which stays finite (jax.nn.softplus).")),),
        passed="Your reconstruction loss matches -vaekit.elbo.bernoulli_log_likelihood on batches of 1 to 4 images "
               "of two sizes, grey and binary targets, and logits up to ±120.")


_PRIOR_CALL = "prior_sample(num, latent_dim, key)  # -> (num, latent_dim)"


@checker(_PRIOR_CALL, {
    "transposed": "returns shape (latent_dim, num) instead of (num, latent_dim)",
    "ignores_key": "does not draw from the key it is given (NumPy's global generator, a key made inside)",
    "shared_across_samples": "draws one vector and repeats it for every sample",
    "shared_across_dimensions": "draws one number per sample and repeats it in every dimension",
    "uniform": "draws from a uniform distribution instead of the normal",
    "wrong_mean": "samples whose mean is not 0",
    "wrong_std": "samples whose standard deviation is not 1 (a variance used as a scale, a fixed scale)",
    "not_normal": "samples with mean 0 and variance 1 that are not normal (the tails are wrong)",
    "correlated_dimensions": "dimensions that move together, where N(0, I) has independent ones",
})
def check_prior_sample(fn: Callable) -> Feedback:
    r"""Checks ``fn(num, latent_dim, key) -> (num, latent_dim)``: codes drawn from the prior :math:`\mathcal{N}(0, I)`.

    The draws are random, so the checker tests what any right answer has: the shape, the same
    codes for the same key and new ones for a new key, then the statistics of 4,096 codes of 16
    dimensions (mean 0 and standard deviation 1 in every dimension, the normal's share of values
    within 1 and beyond 2 standard deviations, uncorrelated dimensions).

    Args:
      fn: the learner's ``prior_sample(num, latent_dim, key)``.

    Returns:
      A :class:`Feedback`; ``check_prior_sample.mistakes`` lists the mistakes it names.

    Example:
      >>> check_prior_sample(lambda num, latent_dim, key: jax.random.normal(key, (num, latent_dim))).passed
      True
    """
    num, dim = 4096, 16
    key = jax.random.key(0)

    def draw(n, d, k, where):
        return as_array(call_learner(fn, (n, d, k), _PRIOR_CALL, where), fn)

    for n, d in ((1, 3), (num, dim)):
        z = draw(n, d, key, f"num={n}, latent_dim={d}")
        if z.shape == (d, n):
            raise fail("transposed", f"For num={n}, latent_dim={d} your samples have shape {z.shape}: rows and "
                        f"columns are swapped. Return one code per row, shape (num, latent_dim) = ({n}, {d}).")
        if z.shape != (n, d):
            raise fail("wrong_shape", f"For num={n}, latent_dim={d} your samples have shape {z.shape}; they "
                        f"should have shape (num, latent_dim) = ({n}, {d}).")
        if not np.all(np.isfinite(z)):
            raise fail("wrong_values", f"For num={n}, latent_dim={d} your samples hold NaN or infinite values.")
    again = draw(num, dim, key, "the same key a second time")
    other = draw(num, dim, jax.random.key(1), "another key")
    if not np.array_equal(z, again) or np.array_equal(z, other):
        raise fail("ignores_key", "Your samples do not follow the key: "
                    + ("the same key gave different codes" if not np.array_equal(z, again) else
                       "a different key gave the same codes")
                    + ". Draw with the key you are given, `jax.random.normal(key, (num, latent_dim))`: the same key "
                    "must give the same codes, so that results can be reproduced.")
    if np.all(z == z[0]):
        raise fail("shared_across_samples", "All your samples are the same vector: draw a fresh code for every "
                    "sample, shape (num, latent_dim), not one of shape (latent_dim,) repeated.")
    if np.all(z == z[:, :1]):
        raise fail("shared_across_dimensions", "Each of your codes has the same value in every dimension: draw "
                    "num * latent_dim independent numbers, not num numbers repeated.")
    if z.min() >= -1 and z.max() <= 1 or z.max() - z.min() < 4:
        raise fail("uniform", f"Your values all lie in [{z.min():.2f}, {z.max():.2f}]: that looks uniform. The "
                    "prior is the standard normal (`jax.random.normal`), with values beyond ±3 now and then.")
    means, stds = z.mean(axis=0), z.std(axis=0)
    # 4,096 draws per dimension: the standard error of a mean is 0.016, of a standard deviation 0.011.
    if np.max(np.abs(means)) > 0.1:
        j = int(np.argmax(np.abs(means)))
        raise fail("wrong_mean", f"The mean of your samples in dimension {j} is {means[j]:.3f}; the prior "
                    "N(0, I) has mean 0 in every dimension.")
    if np.max(np.abs(stds - 1)) > 0.07:
        j = int(np.argmax(np.abs(stds - 1)))
        raise fail("wrong_std", f"The standard deviation of your samples in dimension {j} is {stds[j]:.3f}; "
                    "the prior N(0, I) has standard deviation 1 (and variance 1) in every dimension.")
    within_one, beyond_two = np.mean(np.abs(z) < 1), np.mean(np.abs(z) > 2)
    if abs(within_one - 0.6827) > 0.012 or abs(beyond_two - 0.0455) > 0.006:
        raise fail("not_normal", f"{within_one:.1%} of your values lie within ±1 and {beyond_two:.1%} beyond "
                    "±2; for the standard normal these are 68.3% and 4.6%. Mean and variance are right, the "
                    "distribution is not: draw with `jax.random.normal`.")
    correlation = np.corrcoef(z, rowvar=False) - np.eye(dim)
    if np.max(np.abs(correlation)) > 0.1:
        i, j = np.unravel_index(int(np.argmax(np.abs(correlation))), correlation.shape)
        raise fail("correlated_dimensions", f"Dimensions {i} and {j} of your samples have correlation "
                    f"{correlation[i, j]:.2f}; under N(0, I) the dimensions are independent.")
    return Feedback(True, None, "Your samples have shape (num, latent_dim), follow the key, and their 4,096 x 16 "
                    "values have the mean, standard deviation, tails and independence of N(0, I).")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 02


_REPARAMETERIZE_CALL = "reparameterize(mean, log_var, key)  # mean, log_var: (batch, latent_dim) -> z, same shape"

# One column per latent dimension: each wrong scale below gives a different sigma in some column.
_COLUMN_MEANS = np.array([-2.0, -0.5, 0.0, 1.0, 3.0, 0.5])
_COLUMN_LOG_VARS = np.array([-3.0, -1.0, 0.5, 1.0, 2.0, 3.0])

_WRONG_SCALES = {
    "variance_as_std": (np.exp(_COLUMN_LOG_VARS), (
        "Your noise is scaled by exp(log_var), the variance sigma^2, not the standard deviation sigma. Scale it "
        "by sigma = exp(0.5 * log_var).")),
    "log_var_as_std": (np.abs(_COLUMN_LOG_VARS), (
        "Your noise is scaled by log_var itself. log_var is log sigma^2: sigma = exp(0.5 * log_var).")),
    "noise_not_scaled": (np.ones_like(_COLUMN_LOG_VARS), (
        "Your z = mean + eps: the noise is not scaled. Multiply it by sigma = exp(0.5 * log_var), so that z has "
        "the posterior's spread.")),
    "std_inverted": (np.exp(-0.5 * _COLUMN_LOG_VARS), (
        "Your noise is scaled by 1 / sigma: exp(-0.5 * log_var) has the wrong sign. sigma = exp(0.5 * log_var).")),
}


@checker(_REPARAMETERIZE_CALL, {
    "variance_as_std": "scales the noise by exp(log_var), the variance, instead of the standard deviation",
    "log_var_as_std": "scales the noise by log_var itself",
    "noise_not_scaled": "adds the noise unscaled: z = mean + eps",
    "std_inverted": "scales the noise by 1 / sigma = exp(-log_var / 2)",
    "no_noise": "returns the mean: no noise",
    "mean_missing": "leaves the mean out: z = sigma * eps",
    "ignores_key": "does not draw the noise from the key it is given",
    "noise_shared_across_batch": "draws one noise vector for the whole batch",
    "noise_shared_across_dimensions": "draws one noise number per example, repeated in every dimension",
    "noise_not_normal": "draws the noise from another distribution than N(0, I) (uniform)",
    "no_gradient": "no gradient reaches mean or log_var (z detached, e.g. with stop_gradient)",
    "no_gradient_to_mean": "no gradient reaches mean",
    "no_gradient_to_log_var": "no gradient reaches log_var (sigma detached with stop_gradient)",
    "not_differentiable": "uses NumPy or Python floats, through which JAX cannot differentiate",
    "overflow": "computes sigma as sqrt(exp(log_var)), which overflows for log_var > 88 in float32",
})
def check_reparameterize(fn: Callable) -> Feedback:
    r"""Checks ``fn(mean, log_var, key) -> z``: the reparameterization trick.

    .. math::

       z = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I), \qquad
       \sigma = \exp(\tfrac12 \log\sigma^2),

    as :func:`vaekit.elbo.reparameterize`. The noise is random, so the checker tests what any right
    answer has: the shape; the same z for the same key and a new one for a new key; over 4,096 draws
    of six dimensions with their own means and log-variances, the mean and spread of each dimension
    and normal noise; the gradients, :math:`\partial z/\partial\mu = 1` and
    :math:`\partial z/\partial \log\sigma^2 = \tfrac12 (z - \mu)`; and log-variances of ±100.

    Args:
      fn: the learner's ``reparameterize(mean, log_var, key)``.

    Returns:
      A :class:`Feedback`; ``check_reparameterize.mistakes`` lists the mistakes it names.

    Example:
      >>> check_reparameterize(lambda mean, log_var, key: elbo.reparameterize(mean, log_var, key=key)).passed
      True
    """
    rng = np.random.default_rng(2)
    key = jax.random.key(0)

    def sample(mean, log_var, k, where):
        z = as_array(call_learner(fn, (mean, log_var, k), _REPARAMETERIZE_CALL, where), fn)
        if z.shape != mean.shape:
            raise fail("wrong_shape", f"For {where}, z has shape {z.shape}; it should have the shape of mean, "
                        f"{mean.shape}.")
        return z

    small_mean, small_log_var = f32(rng.standard_normal((3, 4))), f32(rng.standard_normal((3, 4)))
    sample(f32(rng.standard_normal((1, 5))), f32(rng.standard_normal((1, 5))), key, "a batch of 1, shape (1, 5)")
    z = sample(small_mean, small_log_var, key, "mean and log_var of shape (3, 4)")
    num = 4096
    mean = f32(np.broadcast_to(_COLUMN_MEANS, (num, 6)))
    log_var = f32(np.broadcast_to(_COLUMN_LOG_VARS, (num, 6)))
    where = "4,096 rows, each with means [-2, -0.5, 0, 1, 3, 0.5] and log-variances [-3, -1, 0.5, 1, 2, 3]"
    big = sample(mean, log_var, key, where)
    if np.array_equal(big, np.asarray(mean)):
        raise fail("no_noise", "Your z is the mean: no noise is added. z = mean + sigma * eps, with eps ~ N(0, I) "
                    "drawn with the key.")
    if not np.array_equal(big, sample(mean, log_var, key, "the same key again")) or np.array_equal(
            big, sample(mean, log_var, jax.random.key(1), "another key")):
        raise fail("ignores_key", "Your z does not follow the key: the same key must give the same z and another "
                    "key another z. Draw the noise with it: `jax.random.normal(key, mean.shape)`.")
    noise = big - _COLUMN_MEANS
    if np.all(noise == noise[0]):
        raise fail("noise_shared_across_batch", "Every example of the batch got the same noise vector. Draw "
                    "noise of the shape of mean, (batch, latent_dim), so that each example has its own.")
    spread = noise.std(axis=0)
    if np.all(spread > 0) and np.all(np.abs(np.corrcoef(noise, rowvar=False)) > 0.99):
        raise fail("noise_shared_across_dimensions", "Each example got one noise number, repeated in every "
                    "latent dimension. Draw noise of the shape of mean, (batch, latent_dim).")
    if np.any(np.abs(noise.mean(axis=0)) > 6 * spread / math.sqrt(num) + 1e-3):
        if np.all(np.abs(big.mean(axis=0)) <= 6 * spread / math.sqrt(num) + 1e-3):
            raise fail("mean_missing", "Your z averages 0 in every dimension: the mean is missing. z = mean + "
                        "sigma * eps.")
        raise fail("wrong_values", f"For {where}, the average of your z per dimension is "
                    f"{shown(big.mean(axis=0))}; it should be the means.")
    sigma = np.exp(0.5 * _COLUMN_LOG_VARS)
    if np.any(np.abs(spread - sigma) > 0.1 * sigma):
        for mistake, (scale, message) in _WRONG_SCALES.items():
            if np.all(np.abs(spread - scale) <= 0.1 * scale + 1e-6):
                raise fail(mistake, message)
        raise fail("wrong_values", f"For {where}, the spread (standard deviation) of your z per dimension is "
                    f"{shown(spread)}; it should be sigma = exp(0.5 * log_var) = {shown(sigma)}.")
    eps = noise / sigma
    within_one, beyond_two = np.mean(np.abs(eps) < 1), np.mean(np.abs(eps) > 2)
    if abs(within_one - 0.6827) > 0.02 or abs(beyond_two - 0.0455) > 0.01:
        raise fail("noise_not_normal", f"Your noise eps = (z - mean) / sigma has {within_one:.1%} of its values "
                    f"within ±1 and {beyond_two:.1%} beyond ±2; standard normal noise has 68.3% and 4.6%. Draw it "
                    "with `jax.random.normal`.")
    try:
        grad_mean, grad_log_var = jax.grad(lambda m, v: jnp.sum(fn(m, v, key)), argnums=(0, 1))(small_mean,
                                                                                                small_log_var)
    except Exception as error:
        raise fail("not_differentiable", f"JAX could not differentiate your function ({type(error).__name__}: "
                    f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}). The whole point of the "
                    "trick is a z that gradients flow through: compute it with `jax.numpy`, not NumPy.") from None
    grad_mean, grad_log_var = np.asarray(grad_mean), np.asarray(grad_log_var)
    want_log_var = 0.5 * (z - np.asarray(small_mean))
    mean_dead, log_var_dead = np.all(grad_mean == 0), np.all(grad_log_var == 0)
    if mean_dead and log_var_dead:
        raise fail("no_gradient", "No gradient reaches mean or log_var: z is detached from them (stop_gradient?), "
                    "so the encoder could not learn. Build z = mean + exp(0.5 * log_var) * eps from the arrays you "
                    "are given.")
    if mean_dead:
        raise fail("no_gradient_to_mean", "No gradient reaches mean: z must be computed from it, z = mean + ...")
    if log_var_dead:
        raise fail("no_gradient_to_log_var", "No gradient reaches log_var: the encoder could never learn its "
                    "uncertainty. Compute sigma = exp(0.5 * log_var) from the log_var you are given, without "
                    "stop_gradient.")
    if not (np.allclose(grad_mean, 1.0, rtol=RTOL, atol=1e-4)
            and np.allclose(grad_log_var, want_log_var, rtol=1e-3, atol=1e-4)):
        raise fail("wrong_values", "Your z has the right distribution, but not the gradients of mean + sigma * eps: "
                    f"dz/dmean should be 1 (yours: {shown(grad_mean[0])}, first row) and dz/dlog_var should be "
                    f"(z - mean) / 2 = {shown(want_log_var[0])} (yours: {shown(grad_log_var[0])}).")
    extreme_mean, extreme_log_var = f32([[0.5, 0.0, -1.0]]), f32([[100.0, -100.0, 0.0]])
    extreme = sample(extreme_mean, extreme_log_var, key, "log_var = [100, -100, 0]")
    reference = np.asarray(elbo.reparameterize(extreme_mean, extreme_log_var, key=key), np.float64)
    if not np.all(np.isfinite(extreme)) and np.all(np.isfinite(reference)):
        raise fail("overflow", f"For log_var = [100, -100, 0] your z is {shown(extreme[0])}. sqrt(exp(100)) "
                    "overflows: exp(100) is beyond float32's largest number (3.4e38). Compute sigma = exp(0.5 * "
                    "log_var) = exp(50), which is finite.")
    return Feedback(True, None, "Your z has the shape of mean, follows the key, has mean mu and spread "
                    "sigma = exp(log_var / 2) with normal noise in each of six dimensions over 4,096 draws, passes "
                    "the gradients dz/dmean = 1 and dz/dlog_var = (z - mean) / 2, and stays finite at log_var = ±100.")


_KL_CALL = "gaussian_kl(mean, log_var)  # mean, log_var: (batch, latent_dim) -> (batch,)"


def _kl_terms(mean, log_var, *, half=0.5, minus_one=1.0, variance=None, log_variance=None, mean_term=True):
    variance = jnp.exp(log_var) if variance is None else variance
    log_variance = log_var if log_variance is None else log_variance
    return half * ((jnp.square(mean) if mean_term else 0.0) + variance - log_variance - minus_one)


def _kl(mean, log_var):
    return jnp.sum(elbo.gaussian_kl(mean, log_var), axis=-1)


@checker(_KL_CALL, {
    "wrong_sign": "returns -KL",
    "missing_half": "leaves out the factor 1/2",
    "missing_minus_one": "leaves out the -1 of each dimension",
    "log_std_for_log_var": "treats log_var as log sigma (sigma^2 = exp(2 log_var))",
    "averaged_over_dimensions": "averages over the latent dimensions instead of summing",
    "log_var_sign": "adds log sigma^2 where the formula subtracts it",
    "missing_mean_term": "leaves out mu^2",
    "std_for_variance": "uses sigma = exp(log_var / 2) where the formula has sigma^2",
    "summed_over_batch": "sums over the batch too: one number",
    "not_summed": "returns the KL of every dimension instead of their sum",
    "log_of_exp": "takes log(exp(log_var)), which is -inf once exp underflows (log_var < -103 in float32)",
})
def check_gaussian_kl(fn: Callable) -> Feedback:
    r"""Checks ``fn(mean, log_var) -> (batch,)``: :math:`\mathrm{KL}(q\,\|\,\mathcal{N}(0, I))` summed over dimensions.

    .. math::

       \mathrm{KL} = \tfrac12 \sum_j \left(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\right),

    the reference :func:`vaekit.elbo.gaussian_kl` summed over the last axis. Tried on batches of 1 to 8
    with 1 to 32 dimensions (among them mean 0, variance 2), then at log-variances of 60 and -110.

    Args:
      fn: the learner's ``gaussian_kl(mean, log_var)``.

    Returns:
      A :class:`Feedback`; ``check_gaussian_kl.mistakes`` lists the mistakes it names.

    Example:
      >>> check_gaussian_kl(lambda mean, log_var: 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - log_var - 1, -1)).passed
      True
    """
    rng = np.random.default_rng(3)

    def case(batch, dim, describe):
        return Case((f32(1.5 * rng.standard_normal((batch, dim))), f32(1.5 * rng.standard_normal((batch, dim)))),
                     describe, (0, 0))

    cases = [
        case(8, 5, "a batch of 8 with 5 latent dimensions"),
        case(1, 3, "a batch of 1 with 3 latent dimensions"),
        case(4, 32, "a batch of 4 with 32 latent dimensions"),
        Case((f32([[0.0, 0.0]]), f32([[math.log(2.0), 0.0]])), "mean 0 and variance 2 (then the prior)", (0, 0)),
    ]
    edge = Case((f32([[0.0, 1.0], [2.0, 0.0]]), f32([[-110.0, 0.0], [60.0, -1.0]])),
                 "log-variances of -110 and 60 (a collapsed and an exploding posterior)", (0, 0))
    return compare(
        fn, call=_KL_CALL, arg_names=("mean", "log_var"), reference=_kl, cases=cases,
        mistakes={
            "wrong_sign": Mistake(lambda m, v: -_kl(m, v), (
                "Your KL is negative: it is the answer with the opposite sign. A KL divergence is never negative; "
                "KL(q || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1).")),
            "missing_half": Mistake(lambda m, v: 2 * _kl(m, v), (
                "Your KL is twice the answer: the factor 1/2 in front of the sum is missing.")),
            "missing_minus_one": Mistake(lambda m, v: jnp.sum(_kl_terms(m, v, minus_one=0.0), -1), (
                "Your KL is too large by 1/2 per latent dimension: the -1 in each term is missing. Check: at mean "
                "0 and variance 1 (the prior itself) the KL must be 0.")),
            "log_std_for_log_var": Mistake(
                lambda m, v: jnp.sum(_kl_terms(m, v, variance=jnp.exp(2 * v), log_variance=2 * v), -1), (
                    "You treat log_var as log sigma: the encoder gives log sigma^2, so sigma^2 = exp(log_var) and "
                    "the log-term is log_var itself, not 2 * log_var.")),
            "averaged_over_dimensions": Mistake(lambda m, v: jnp.mean(elbo.gaussian_kl(m, v), -1), (
                "You average the KL over the latent dimensions: the KL of independent dimensions adds up, so SUM "
                "over them. A mean makes the rate depend on how many dimensions the model has.")),
            "log_var_sign": Mistake(lambda m, v: jnp.sum(_kl_terms(m, v, log_variance=-v), -1), (
                "Check the sign of the log-variance term: you add log sigma^2 where the formula subtracts it "
                "(for mean 0 and variance 2 your KL comes out wrong; the answer there is 0.153).")),
            "missing_mean_term": Mistake(lambda m, v: jnp.sum(_kl_terms(m, v, mean_term=False), -1), (
                "Your KL ignores the mean: mu^2 is missing. A posterior centred away from 0 costs KL too.")),
            "std_for_variance": Mistake(lambda m, v: jnp.sum(_kl_terms(m, v, variance=jnp.exp(0.5 * v)), -1), (
                "You use sigma = exp(log_var / 2) where the formula has the variance sigma^2 = exp(log_var).")),
            "summed_over_batch": Mistake(lambda m, v: jnp.sum(_kl(m, v)), (
                "You return one number for the whole batch. Sum over the latent dimensions only (axis=-1), so "
                "that each example gets its KL, shape (batch,).")),
            "not_summed": Mistake(elbo.gaussian_kl, (
                "You return the KL of every latent dimension. Sum it over the last axis, so that the answer has "
                "shape (batch,).")),
        },
        edges=(Edge(edge, "log_of_exp", (
            "Right on ordinary inputs, not at extreme log-variances. If you compute log(exp(log_var)), exp(-110) "
            "underflows to 0 and log(0) = -inf: use log_var itself, which is log sigma^2 already.")),),
        passed="Your KL matches vaekit.elbo.gaussian_kl summed over the latent dimensions, on batches of 1 to 8 with "
               "1 to 32 dimensions and at log-variances of -110 and 60.")


_IWAE_CALL = "iwae_bound(log_weights)  # log_weights: (num_samples, batch) -> (batch,)"


def _iwae(log_weights):
    return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


@checker(_IWAE_CALL, {
    "mean_of_log_weights": "averages the log-weights: that is the ELBO, not the IWAE bound",
    "missing_log_k": "leaves out the -log k (a log of the sum, not of the mean)",
    "log_k_added": "adds log k instead of subtracting it",
    "wrong_axis": "reduces over the batch axis instead of the samples axis",
    "max_instead_of_logsumexp": "takes the largest log-weight instead of the log-sum-exp",
    "summed_over_batch": "sums over the batch too: one number",
    "unstable": "computes log(mean(exp(log_weights))), which overflows or underflows for real log-weights",
})
def check_iwae_bound(fn: Callable) -> Feedback:
    r"""Checks ``fn(log_weights) -> (batch,)``: the importance-weighted bound from ``(num_samples, batch)`` log-weights.

    .. math::

       \mathcal{L}_k = \log \frac1k \sum_{i=1}^k w_i
                     = \operatorname{logsumexp}_i(\log w_i) - \log k,

    as in :func:`vaekit.elbo.iwae_bound`. Tried with 1 to 64 samples and batches of 1 to 4, then at
    log-weights near -1000 and +200, where the exponentials of a direct formula leave ``float32``.

    Args:
      fn: the learner's ``iwae_bound(log_weights)``.

    Returns:
      A :class:`Feedback`; ``check_iwae_bound.mistakes`` lists the mistakes it names.

    Example:
      >>> check_iwae_bound(lambda log_w: jax.nn.logsumexp(log_w, axis=0) - jnp.log(len(log_w))).passed
      True
    """
    rng = np.random.default_rng(4)

    def case(k, batch, describe, offset=-3.0):
        return Case((f32(offset + 2.0 * rng.standard_normal((k, batch))),), describe, (1,))

    cases = [
        case(5, 3, "5 samples for a batch of 3"),
        case(1, 4, "1 sample for a batch of 4 (then the bound is the ELBO)"),
        case(64, 2, "64 samples for a batch of 2"),
        case(7, 1, "7 samples for a batch of 1"),
    ]
    edge = Case((jnp.concatenate([case(6, 2, "", -1000.0).args[0], case(6, 2, "", 200.0).args[0]], axis=1),),
                 "log-weights near -1000 and near +200 (real images have log-weights in the hundreds)", (1,))
    return compare(
        fn, call=_IWAE_CALL, arg_names=("log_weights",), reference=_iwae, cases=cases,
        mistakes={
            "mean_of_log_weights": Mistake(lambda w: jnp.mean(w, axis=0), (
                "You average the log-weights: that is the ELBO estimated with k samples, not the IWAE bound. The "
                "bound is the log of the mean of the weights, log (1/k) sum_i exp(log w_i), which is larger.")),
            "missing_log_k": Mistake(lambda w: jax.nn.logsumexp(w, axis=0), (
                "Your bound is too large by log k: you take the log of the SUM of the weights. The bound is the "
                "log of their MEAN: subtract log(num_samples).")),
            "log_k_added": Mistake(lambda w: jax.nn.logsumexp(w, axis=0) + math.log(w.shape[0]), (
                "You add log k: the mean of k weights is their sum divided by k, so subtract log(num_samples).")),
            "wrong_axis": Mistake(lambda w: jax.nn.logsumexp(w, axis=1), (
                "You reduce over the batch axis. log_weights has shape (num_samples, batch): reduce over axis 0, "
                "the samples, to get one bound per example, shape (batch,)."),
                matches=lambda got, variant: got.shape == variant.shape),
            "max_instead_of_logsumexp": Mistake(lambda w: jnp.max(w, axis=0), (
                "You take the largest log-weight. The log-sum-exp is close to it only when one weight dominates: "
                "compute logsumexp(log_weights, axis=0) - log k (jax.nn.logsumexp).")),
            "summed_over_batch": Mistake(lambda w: jnp.sum(_iwae(w)), (
                "You return one number for the whole batch: return one bound per example, shape (batch,).")),
        },
        edges=(Edge(edge, "unstable", (
            "Right on small log-weights, not on real ones: exp(-1000) is 0 and exp(200) is infinite in float32, so "
            "log(mean(exp(log_weights))) gives -inf or inf. Subtract the largest log-weight first, or use "
            "jax.nn.logsumexp, which does.")),),
        passed="Your bound matches logsumexp(log_weights, axis=0) - log k with 1 to 64 samples, batches of 1 to 4, "
               "and log-weights near -1000 and +200.")


# ---------------------------------------------------------------------------------------------------------------
# Chapter 03


_ACTIVE_CALL = "active_units(means, threshold)  # means: (n, latent_dim) posterior means -> int"


def _active(means, threshold):
    return int(np.sum(np.var(np.asarray(means, np.float64), axis=0) > threshold))


@checker(_ACTIVE_CALL, {
    "wrong_axis": "takes the variance over the latent dimensions of each example instead of over the examples",
    "std_not_variance": "compares the standard deviation with the threshold instead of the variance",
    "uncentred": "uses the mean of the squared means (uncentred) instead of their variance",
    "mean_not_variance": "compares the average of the means with the threshold instead of their variance",
    "counts_inactive": "counts the dimensions at or below the threshold (the inactive ones)",
    "mask_not_count": "returns which dimensions are active instead of how many",
    "variances_not_count": "returns the variances instead of the count",
    "fraction_not_count": "returns the fraction of active dimensions instead of their number",
    "ignores_threshold": "uses a fixed threshold instead of the one it is given",
    "greater_or_equal": "counts a variance equal to the threshold as active (>= instead of >)",
})
def check_active_units(fn: Callable) -> Feedback:
    r"""Checks ``fn(means, threshold) -> int``: how many latent dimensions are active.

    .. math::

       \#\{\, j : A_j > \text{threshold} \,\}, \qquad A_j = \operatorname{Var}_n\big(\mu_j(x_n)\big),

    the variance over the examples of each dimension's posterior mean (Burda et al., 2016), as
    :func:`vaekit.latent.active_units` computes it from a model. Tried on 2 to 500 examples with
    activities from 1e-5 to 1 and offsets (a collapsed dimension's mean need not be 0), thresholds
    0.001 to 0.2, then constant dimensions at threshold 0.

    Args:
      fn: the learner's ``active_units(means, threshold)``.

    Returns:
      A :class:`Feedback`; ``check_active_units.mistakes`` lists the mistakes it names.

    Example:
      >>> check_active_units(lambda means, threshold: int(jnp.sum(jnp.var(means, axis=0) > threshold))).passed
      True
    """
    rng = np.random.default_rng(5)
    spreads = np.array([1.0, 0.3, 0.12, 0.05, 0.02, 0.003])
    offsets = np.array([0.0, 2.0, -1.0, 0.5, 3.0, -0.8])

    def means(n, columns):
        return f32(offsets[columns] + spreads[columns] * rng.standard_normal((n, len(columns))))

    every = np.arange(6)
    cases = [
        Case((means(500, every), 0.01), "500 examples of 6 dimensions, threshold 0.01"),
        Case((means(300, np.array([5, 4, 3, 2, 1, 0, 0, 3, 5, 1])), 0.2), "300 examples of 10 dimensions, "
              "threshold 0.2"),
        Case((means(400, every), 0.001), "400 examples of 6 dimensions, threshold 0.001"),
        Case((f32([[0.0, 1.0, 2.0, 0.5], [1.0, 1.0, -2.0, 0.5]]), 0.2), "2 examples of 4 dimensions, threshold 0.2"),
    ]
    # 64 copies of 0.75 average to 0.75 exactly in float32, so their variance is exactly 0.
    constant = f32(np.concatenate([np.full((64, 2), 0.75), rng.standard_normal((64, 3))], axis=1))
    edge = Case((constant, 0.0), "threshold 0 with two constant dimensions (variance exactly 0)")

    def variances(m):
        return jnp.var(m, axis=0)

    return compare(
        fn, call=_ACTIVE_CALL, arg_names=("means", "threshold"), reference=_active, cases=cases,
        mistakes={
            "wrong_axis": Mistake(lambda m, t: jnp.sum(jnp.var(m, axis=1) > t), (
                "You take the variance along the wrong axis: means has shape (n, latent_dim), and a dimension's "
                "activity is the variance of its column over the n examples (axis=0), not of each example's row.")),
            "std_not_variance": Mistake(lambda m, t: jnp.sum(jnp.std(m, axis=0) > t), (
                "You compare the standard deviation with the threshold; Burda et al.'s activity is the variance "
                "of the means (threshold 0.01 on the variance is 0.1 on the standard deviation).")),
            "uncentred": Mistake(lambda m, t: jnp.sum(jnp.mean(jnp.square(m), axis=0) > t), (
                "You average the squared means without centring them: a dead dimension whose mean sits at 0.7 "
                "for every input then looks active. Subtract each dimension's average first (that is jnp.var).")),
            "mean_not_variance": Mistake(lambda m, t: jnp.sum(jnp.mean(m, axis=0) > t), (
                "You compare the average of the means with the threshold. Activity is about how much the mean "
                "MOVES with the input: use its variance over the examples.")),
            "counts_inactive": Mistake(lambda m, t: jnp.sum(variances(m) <= t), (
                "You count the inactive dimensions: the active ones are those whose variance is ABOVE the "
                "threshold.")),
            "mask_not_count": Mistake(lambda m, t: variances(m) > t, (
                "You return which dimensions are active; the exercise asks how many: sum the mask.")),
            "variances_not_count": Mistake(lambda m, t: variances(m), (
                "You return the variances; compare them with the threshold and count those above it.")),
            "fraction_not_count": Mistake(lambda m, t: jnp.mean(variances(m) > t), (
                "You return the fraction of active dimensions; the exercise asks for their number (sum, not "
                "mean).")),
            "ignores_threshold": Mistake(lambda m, t: jnp.sum(variances(m) > 0.01), (
                "You use the threshold 0.01 whatever threshold you are given: compare with the argument.")),
        },
        edges=(Edge(edge, "greater_or_equal", (
            "Right except at a tie: a dimension whose variance EQUALS the threshold is not active (> rather than "
            ">=). With threshold 0 this matters: a constant dimension has variance exactly 0.")),),
        passed="Your count matches the number of dimensions whose variance over the examples exceeds the threshold, "
               "for 2 to 500 examples, thresholds 0 to 0.2, and dimensions whose means sit away from 0.")


_NEGATIVE_ELBO_CALL = ("negative_elbo(logits, x, mean, log_var)  # logits, x: (batch, 28, 28, 1); "
                       "mean, log_var: (batch, latent_dim) -> (batch,)")


def _negative_elbo(logits, x, mean, log_var):
    return -elbo.bernoulli_log_likelihood(logits, x) + _kl(mean, log_var)


@checker(_NEGATIVE_ELBO_CALL, {
    "pixel_mean_reconstruction": "averages the reconstruction over pixels while summing the KL (effective beta 784)",
    "kl_averaged_over_dimensions": "sums the reconstruction but averages the KL over latent dimensions",
    "both_averaged": "averages both terms (pixels and latent dimensions)",
    "wrong_sign": "returns the ELBO instead of its negative",
    "kl_sign": "subtracts the KL instead of adding it",
    "kl_missing": "leaves the KL out",
    "summed_over_batch": "sums over the batch: one number",
    "averaged_over_batch": "averages over the batch: one number",
    "reconstruction_term": "a reconstruction term that none of the above explains",
    "kl_term": "a right reconstruction term with a KL term that none of the above explains",
})
def check_negative_elbo(fn: Callable) -> Feedback:
    r"""Checks ``fn(logits, x, mean, log_var) -> (batch,)``: the negative ELBO of a Bernoulli VAE.

    .. math::

       -\mathrm{ELBO} = \sum_{\text{pixels}} \big(\operatorname{softplus}(\ell) - x\ell\big)
                      + \tfrac12 \sum_j \left(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\right),

    both terms summed, as :meth:`vaekit.elbo.ElboTerms.neg_elbo`. The debugging exercise: the broken
    loss averages the first sum over the 784 pixels and keeps the second a sum, which weighs the
    KL 784 times more (an effective :math:`\beta \approx 784`). When no catalogued mistake explains a
    wrong answer, the checker sets the KL to 0 (mean 0, log-variance 0) to tell which term is wrong.

    Args:
      fn: the learner's ``negative_elbo(logits, x, mean, log_var)``.

    Returns:
      A :class:`Feedback`; ``check_negative_elbo.mistakes`` lists the mistakes it names.

    Example:
      >>> check_negative_elbo(lambda logits, x, mean, log_var: -elbo.bernoulli_log_likelihood(logits, x)
      ...                     + elbo.gaussian_kl(mean, log_var).sum(-1)).passed
      True
    """
    rng = np.random.default_rng(6)

    def case(batch, dim, describe):
        logits, x = images(rng, batch, 28, scale=2.0, binary=False)
        return Case((logits, x, f32(rng.standard_normal((batch, dim))), f32(rng.standard_normal((batch, dim)))),
                     describe, (0, 0, 0, 0))

    cases = [case(3, 8, "a batch of 3 images with 8 latent dimensions"),
             case(1, 2, "a batch of 1 image with 2 latent dimensions"),
             case(2, 16, "a batch of 2 images with 16 latent dimensions")]

    def recon(l, x):
        return pixels_sum(bce(l, x))

    answer = compare(
        fn, call=_NEGATIVE_ELBO_CALL, arg_names=("logits", "x", "mean", "log_var"), reference=_negative_elbo,
        cases=cases,
        mistakes={
            "pixel_mean_reconstruction": Mistake(lambda l, x, m, v: pixels_mean(bce(l, x)) + _kl(m, v), (
                "This is the broken loss: the reconstruction is averaged over the 784 pixels while the KL is "
                "summed over the latent dimensions. Against the true -ELBO that weighs the KL 784 times more (an "
                "effective beta of about 784), so training pushes every posterior onto the prior and the KL "
                "collapses to ~0. Sum the reconstruction over the pixels too.")),
            "kl_averaged_over_dimensions": Mistake(
                lambda l, x, m, v: recon(l, x) + jnp.mean(elbo.gaussian_kl(m, v), -1), (
                    "You average the KL over the latent dimensions: the ELBO needs the KL of the whole code, the "
                    "SUM over dimensions (an average is a beta of 1 / latent_dim).")),
            "both_averaged": Mistake(
                lambda l, x, m, v: pixels_mean(bce(l, x)) + jnp.mean(elbo.gaussian_kl(m, v), -1), (
                    "You average both terms, over pixels and over latent dimensions. Both are sums in the ELBO; "
                    "averages change the balance between them by 784 / latent_dim.")),
            "wrong_sign": Mistake(lambda l, x, m, v: -_negative_elbo(l, x, m, v), (
                "You return the ELBO itself. The loss to minimise is its negative: reconstruction loss + KL.")),
            "kl_sign": Mistake(lambda l, x, m, v: recon(l, x) - _kl(m, v), (
                "You subtract the KL: -ELBO = -log p(x|z) + KL, so the KL is ADDED to the reconstruction loss.")),
            "kl_missing": Mistake(lambda l, x, m, v: recon(l, x), (
                "Your loss has no KL term: that trains a plain autoencoder. Add the KL, summed over the latent "
                "dimensions.")),
            "summed_over_batch": Mistake(lambda l, x, m, v: jnp.sum(_negative_elbo(l, x, m, v)), (
                "You return one number for the batch: return one -ELBO per example, shape (batch,).")),
            "averaged_over_batch": Mistake(lambda l, x, m, v: jnp.mean(_negative_elbo(l, x, m, v)), (
                "You return the batch average: return one -ELBO per example, shape (batch,); the training step "
                "averages.")),
        },
        passed="Your -ELBO matches the sum over pixels of the Bernoulli loss plus the KL summed over latent "
               "dimensions, on batches of 1 to 3 with 2 to 16 latent dimensions.")
    if answer.mistake != "wrong_values":
        return answer
    # Two calls that differ in the images only: the KL cancels from their difference, whatever it is.
    logits, x, mean, log_var = cases[0].args
    other_logits, other_x = images(rng, len(logits), 28, scale=2.0, binary=False)
    answers = [as_array(call_learner(fn, (l, t, mean, log_var), _NEGATIVE_ELBO_CALL, cases[0].describe), fn)
               for l, t in ((logits, x), (other_logits, other_x))]
    if not close(answers[0] - answers[1], np.asarray(recon(logits, x) - recon(other_logits, other_x), np.float64)):
        return Feedback(False, "reconstruction_term", "Your reconstruction term is wrong (the change of your answer "
                        "between two batches of images with the same mean and log_var is not the change of the "
                        "summed Bernoulli loss, softplus(logits) - x * logits over pixels).\n" + answer.message)
    return Feedback(False, "kl_term", "Your reconstruction term is right; your KL term is not: it should be "
                    "1/2 sum(mu^2 + exp(log_var) - log_var - 1) over the latent dimensions.\n" + answer.message)


