"""Denoising corruptions C(x~ | x) (Vincent et al., ICML 2008 and JMLR 2010).

Every corruption is `fn(rng, x, **hparams) -> (x_tilde, mask)`: x_tilde [B, ...] the corrupted input
and mask [B, ...] float, 1.0 on the components the corruption touched (all ones for additive noise).
The emphasized denoising autoencoder weighs the reconstruction error with the mask
(`emphasized_weights`).
Hyperparameters are Python numbers, closed over by the caller, never traced.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from aejax.registry import Registry

Corruption = Callable[..., tuple[jax.Array, jax.Array]]

CORRUPTIONS = Registry("corruption")


def _check_nu(nu: float) -> None:
    if not 0.0 <= nu <= 1.0:
        raise ValueError(f"Corruption probability nu must be in [0, 1], got {nu}.")


@CORRUPTIONS.register("gaussian")
def gaussian(rng: jax.Array, x: jax.Array, *, sigma: float, clip: bool = False) -> tuple[jax.Array, jax.Array]:
    """Additive isotropic Gaussian noise: x~ = x + eps, eps ~ N(0, sigma^2 I), optionally clipped to [0, 1].

    Args:
      rng: PRNG key.
      x: [B, ...] inputs.
      sigma: noise standard deviation, in input units.
      clip: clip x~ to the pixel range [0, 1], as the convolutional denoising autoencoder of the seed
        (Keras) tutorials does.

    Returns:
      (x_tilde [B, ...], mask [B, ...] all ones: every component is corrupted).

    Raises:
      ValueError: if sigma < 0.
    """
    if sigma < 0:
        raise ValueError(f"Gaussian corruption needs sigma >= 0, got {sigma}.")
    x_tilde = x + sigma * jax.random.normal(rng, x.shape, dtype=x.dtype)
    return (jnp.clip(x_tilde, 0.0, 1.0) if clip else x_tilde), jnp.ones_like(x)


@CORRUPTIONS.register("masking")
def masking(rng: jax.Array, x: jax.Array, *, nu: float) -> tuple[jax.Array, jax.Array]:
    """Masking noise: each component is independently set to 0 with probability nu.

    This is the per-component Bernoulli form: the fraction of zeroed components is nu in
    expectation (Vincent et al. zero exactly a fraction nu of the components per example; the
    fractions differ by O(sqrt(nu (1 - nu) / D)), small for D in the hundreds).

    Args:
      rng: PRNG key.
      x: [B, ...] inputs.
      nu: corruption probability in [0, 1].

    Returns:
      (x_tilde [B, ...], mask [B, ...] 1.0 where the component was zeroed).

    Raises:
      ValueError: if nu is not in [0, 1].
    """
    _check_nu(nu)
    corrupted = jax.random.bernoulli(rng, nu, x.shape)
    return jnp.where(corrupted, jnp.zeros_like(x), x), corrupted.astype(x.dtype)


@CORRUPTIONS.register("salt_and_pepper")
def salt_and_pepper(
    rng: jax.Array, x: jax.Array, *, nu: float, low: float = 0.0, high: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Salt-and-pepper noise: each component w.p. nu is set to low or high by a fair coin flip.

    Args:
      rng: PRNG key.
      x: [B, ...] inputs.
      nu: corruption probability in [0, 1] (per-component Bernoulli, as in `masking`).
      low: the "pepper" value (the minimum of the input range).
      high: the "salt" value (the maximum of the input range).

    Returns:
      (x_tilde [B, ...], mask [B, ...] 1.0 where the component was set to low or high).

    Raises:
      ValueError: if nu is not in [0, 1].
    """
    _check_nu(nu)
    rng_where, rng_coin = jax.random.split(rng)
    corrupted = jax.random.bernoulli(rng_where, nu, x.shape)
    salt = jax.random.bernoulli(rng_coin, 0.5, x.shape)
    value = jnp.where(salt, jnp.asarray(high, x.dtype), jnp.asarray(low, x.dtype))
    return jnp.where(corrupted, value, x), corrupted.astype(x.dtype)


def corrupt(name: str, rng: jax.Array, x: jax.Array, **hparams) -> tuple[jax.Array, jax.Array]:
    """Applies the corruption `name`: returns (x_tilde [B, ...], mask [B, ...]).

    Raises:
      KeyError: for an unknown name. ValueError: for out-of-range hyperparameters.
    """
    return CORRUPTIONS.get(name)(rng, x, **hparams)


def emphasized_weights(mask: jax.Array, *, alpha: float, beta: float) -> jax.Array:
    """Per-component reconstruction weights of the emphasized DAE (Vincent et al., JMLR 2010).

    The reconstruction error is sum_j w_j l(x_j, r_j) with w_j = alpha on corrupted components and
    beta on the rest; alpha > beta emphasizes the components the model had to fill in (beta = 0:
    only those count), "putting an emphasis on corrupted dimensions" in the JMLR paper.

    Args:
      mask: [B, ...] 1.0 on corrupted components, 0.0 elsewhere (from a corruption).
      alpha: weight of corrupted components.
      beta: weight of uncorrupted components.

    Returns:
      [B, ...] weights, same shape and dtype as mask.

    Raises:
      ValueError: if alpha or beta is negative.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"Emphasis weights must be >= 0, got alpha={alpha}, beta={beta}.")
    return alpha * mask + beta * (1.0 - mask)
