"""Inpainting in the code space: fills that condition a decoder on the observed pixels (pure JAX, jit-able).

An autoencoder's decoder g maps a code z [K] to an image; a fill that "uses what the model knows" picks the code
that explains the observed pixels and reads the missing ones off g(z):

- `fit_codes`: gradient descent (optax Adam) on the code, per image
      min_z  sum_{j observed} nll(g(z)_j, x_j) + (w / 2) (z - mu)^T P (z - mu),
  with nll the decoder likelihood's elementwise negative log-likelihood (or half the squared error) and an
  optional Gaussian code prior N(mu, P^-1) of weight w. For a VAE with its own likelihood, mu = 0, P = I and w = 1
  this is the MAP code of p(z | x_obs); for a deterministic autoencoder the prior is fitted to the training codes
  (`gaussian_code_prior`) and keeps the code where the decoder was trained. The fill is x_obs and, on the missing
  pixels, the decoder mean at the fitted code. For a linear decoder and half the squared error, w = 0 is the
  least-squares fit of the observed pixels (Ilin & Raiko 2010, PCA with missing values).
- `importance_fill`: the posterior mean E[x_miss | x_obs] of a VAE by self-normalised importance sampling,
      z_s ~ r(z),  w_s ∝ p(x_obs | z_s) p(z) / r(z_s),  fill_miss = sum_s w_s E[x_miss | z_s] / sum_s w_s,
  with the proposal r a diagonal Gaussian (e.g. the encoder's q(z | x~) of a provisional fill x~; any proposal that
  does not read x_miss gives a consistent estimate; Rezende et al. 2014, appendix F use the same model for
  missing-data imputation; Burda et al. 2016 for the weights). Returns the effective sample size too.

Shapes: x, missing [N, ...] (an image's shape ...), codes [N, K]; `decode` maps [N, K] -> [N, ...] decoder outputs
in the likelihood's parameterisation (logits for Bernoulli), `mean` maps them to E[x | z] in pixel units.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

DATA_TERMS = ("likelihood", "squared")


class CodePrior(NamedTuple):
    """A Gaussian N(mean, precision^-1) on codes: mean [K], precision [K, K] (symmetric positive definite)."""

    mean: jax.Array
    precision: jax.Array


def standard_normal_prior(k: int) -> CodePrior:
    """N(0, I_K), the VAE's prior p(z)."""
    return CodePrior(jnp.zeros(k), jnp.eye(k))


def gaussian_code_prior(codes: np.ndarray, *, ridge: float = 1e-3) -> CodePrior:
    """The Gaussian fitted to codes [N, K]: their mean, and the inverse of (covariance + ridge * mean var * I).

    Raises:
      ValueError: for fewer than 2 codes or a non-2-D array.
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"Need codes [N >= 2, K], got shape {codes.shape}.")
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    return CodePrior(jnp.asarray(codes.mean(axis=0), jnp.float32), jnp.asarray(np.linalg.inv(cov), jnp.float32))


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1)


class CodeFit(NamedTuple):
    """x: [N, ...] the fill (observed pixels exactly the input's, missing ones the decoder mean at z); z: [N, K]
    the fitted codes; objective: [N] the minimised objective at z (nats)."""

    x: jax.Array
    z: jax.Array
    objective: jax.Array


def fit_codes(
    decode: Callable[[jax.Array], jax.Array],
    nll: Callable[[jax.Array, jax.Array], jax.Array],
    mean: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    missing: jax.Array,
    z0: jax.Array,
    *,
    prior: CodePrior | None = None,
    prior_weight: float = 0.0,
    steps: int = 200,
    learning_rate: float = 0.1,
) -> CodeFit:
    """The codes that best explain each image's observed pixels, by `steps` Adam steps from z0.

    Adam's update is elementwise, so descending the sum over images treats every image on its own: the result for
    an image does not depend on the others in the batch. The step size follows a cosine decay from `learning_rate`
    to 0 so that the last steps settle.

    Args:
      decode: z [N, K] -> decoder output [N, ...]; nll: (output [N, ...], x [N, ...]) -> [N, ...] elementwise
        negative log-likelihood (nats), e.g. `Likelihood.elementwise_nll`, or `squared_error_nll`; mean: decoder
        output -> E[x | z] [N, ...] in pixel units (`Likelihood.mean`).
      x: [N, ...] images (values at missing pixels never read); missing: [N, ...] bool.
      z0: [N, K] initial codes, e.g. the encoder's codes of a provisional fill.
      prior, prior_weight: the penalty (prior_weight / 2) (z - mean)^T precision (z - mean); None or 0: none.
      steps, learning_rate: Adam steps and the peak step size (code units).

    Returns:
      CodeFit(fill [N, ...], z [N, K], objective [N] at z: the observed-pixel nll plus the penalty).

    Raises:
      ValueError: if steps < 1 or prior_weight < 0, or a prior_weight without a prior.
    """
    if steps < 1 or prior_weight < 0:
        raise ValueError(f"Need steps >= 1 and prior_weight >= 0, got {steps} and {prior_weight}.")
    if prior_weight > 0 and prior is None:
        raise ValueError("prior_weight > 0 needs a prior.")
    observed = _flat(~missing).astype(x.dtype)  # [N, D]

    def per_image(z):  # [N, K] -> [N]
        data = jnp.sum(observed * _flat(nll(decode(z), x)), axis=1)
        if prior_weight == 0:
            return data
        d = z - prior.mean[None, :]
        return data + 0.5 * prior_weight * jnp.einsum("nk,kl,nl->n", d, prior.precision, d)

    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    grad = jax.grad(lambda z: jnp.sum(per_image(z)))

    def step(carry, _):
        z, opt_state = carry
        updates, opt_state = tx.update(grad(z), opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), None

    (z, _), _ = jax.lax.scan(step, (z0, tx.init(z0)), None, length=steps)
    return CodeFit(jnp.where(missing, mean(decode(z)).astype(x.dtype), x), z, per_image(z))


def squared_error_nll(output: jax.Array, x: jax.Array) -> jax.Array:
    """Half the squared error (output - x)^2 / 2, [N, ...]: a unit-variance Gaussian's nll up to a constant."""
    return 0.5 * jnp.square(output - x)


def importance_fill(
    decode: Callable[[jax.Array], jax.Array],
    nll: Callable[[jax.Array, jax.Array], jax.Array],
    mean: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    missing: jax.Array,
    proposal_mean: jax.Array,
    proposal_logvar: jax.Array,
    key: jax.Array,
    *,
    num_samples: int = 100,
) -> tuple[jax.Array, jax.Array]:
    """Self-normalised importance estimate of E[x | x_obs] under a VAE with prior N(0, I) (see the module doc).

    log w_s = -sum_{j observed} nll(decode(z_s)_j, x_j) + log N(z_s; 0, I) - log N(z_s; proposal), accumulated
    over the samples with a running log-sum-exp, so memory does not grow with num_samples.

    Args:
      decode, nll, mean: the decoder, its likelihood's elementwise nll and its mean map (see the module doc).
      x: [N, ...] images; missing: [N, ...] bool.
      proposal_mean, proposal_logvar: [N, K] the diagonal Gaussian proposal (log-variance in nats).
      key: PRNG key; num_samples: S >= 1.

    Returns:
      (fill [N, ...]: x on the observed pixels, the weighted mean of E[x | z_s] on the missing ones;
       ess [N]: the effective sample size (sum w)^2 / sum w^2, in [1, S]).

    Raises:
      ValueError: if num_samples < 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    observed = _flat(~missing).astype(x.dtype)
    std = jnp.exp(0.5 * proposal_logvar)

    def sample(carry, k):
        top, total, total_sq, acc = carry  # [N], [N], [N], [N, D]: sums scaled by exp(-top)
        eps = jax.random.normal(k, proposal_mean.shape, proposal_mean.dtype)
        z = proposal_mean + std * eps
        out = decode(z)
        log_lik = -jnp.sum(observed * _flat(nll(out, x)), axis=1)
        # log N(z; 0, I) - log N(z; m, s^2): the 2 pi terms cancel.
        log_w = log_lik - 0.5 * jnp.sum(jnp.square(z), 1) + 0.5 * jnp.sum(jnp.square(eps) + proposal_logvar, 1)
        new_top = jnp.maximum(top, log_w)
        old, this = jnp.exp(top - new_top), jnp.exp(log_w - new_top)
        carry = (
            new_top,
            total * old + this,
            total_sq * old**2 + this**2,
            acc * old[:, None] + this[:, None] * _flat(mean(out)),
        )
        return carry, None

    n, d = observed.shape
    init = (
        jnp.full(n, -jnp.inf, x.dtype),
        jnp.zeros(n, x.dtype),
        jnp.zeros(n, x.dtype),
        jnp.zeros((n, d), x.dtype),
    )
    (_, total, total_sq, acc), _ = jax.lax.scan(sample, init, jax.random.split(key, num_samples))
    filled = (acc / total[:, None]).reshape(x.shape)
    return jnp.where(missing, filled, x), jnp.square(total) / total_sq
