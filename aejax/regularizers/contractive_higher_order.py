"""CAE+H: penalise how much the encoder Jacobian changes near x (Rifai et al., ECML 2011).

"Higher order contractive auto-encoder" adds to the CAE loss
    gamma * E_eps ||J_f(x) - J_f(x + eps)||_F^2,   eps ~ N(0, sigma^2 I),
a stochastic estimate of the Hessian norm that flattens the contraction over a neighbourhood of x.
The full CAE+H loss is recon + lambda * contractive + gamma * contractive_higher_order (two Terms).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.regularizers.contractive import EXACT_METHODS, EncoderFn, encoder_jacobian
from aejax.regularizers.registry import register


def jacobian_difference_sq(fn: EncoderFn, x: jax.Array, eps: jax.Array, method: str = "auto") -> jax.Array:
    """Per-example mean over corrupted copies of ||J_fn(x_b) - J_fn(x_b + eps_cb)||_F^2.

    Args:
      fn: per-example function [B, *input_shape] -> [B, H].
      x: [B, *input_shape] the clean point.
      eps: [C, B, *input_shape] C perturbations of x.
      method: exact Jacobian mode, "auto", "jacfwd" or "jacrev".

    Returns:
      [B] mean over the C copies of the squared Frobenius norm of the Jacobian difference.

    Raises:
      ValueError: if eps is not [C, *x.shape] or the method is not exact.
    """
    if eps.ndim != x.ndim + 1 or tuple(eps.shape[1:]) != tuple(x.shape):
        raise ValueError(f"eps must be [C, *x.shape] = [C, {x.shape}], got {eps.shape}.")
    jac = encoder_jacobian(fn, x, method)  # [B, H, D]
    jac_eps = jax.vmap(lambda e: encoder_jacobian(fn, x + e, method))(eps)  # [C, B, H, D]
    return jnp.mean(jnp.sum(jnp.square(jac[None] - jac_eps), axis=(2, 3)), axis=0)


@register("contractive_higher_order")
def contractive_higher_order(
    *,
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Any,
    outputs: AutoencoderOutput,
    rng: jax.Array,
    sigma: float = 0.1,
    num_corrupted: int = 4,
    method: str = "auto",
) -> jax.Array:
    """CAE+H term: batch mean of E_eps ||J_f(x) - J_f(x + eps)||_F^2, eps ~ N(0, sigma^2 I).

    gamma is the Term weight. The expectation is a Monte Carlo average over `num_corrupted` draws
    per example from rng. x is the model input `outputs.input` (x~ for a DAE); the encoder is
    `apply_fn({"params": params}, x, method="encode")`. Jacobians are exact (it needs the full
    matrices, not only their norms), so memory is num_corrupted * B * H * D floats.

    Args:
      sigma: standard deviation of the Gaussian perturbation, in input units (small).
      num_corrupted: number of perturbed copies per example.
      method: exact Jacobian mode, "auto", "jacfwd" or "jacrev".

    Returns:
      [] mean squared Frobenius norm of the Jacobian difference, (code units / input units)^2.

    Raises:
      ValueError: if sigma < 0, num_corrupted < 1, or the method is not exact (listing the methods).

    Reference: Rifai, Mesnil, Vincent, Muller, Bengio, Dauphin, Glorot, "Higher order contractive
    auto-encoder", ECML PKDD 2011.
    """
    if sigma < 0:
        raise ValueError(f"contractive_higher_order needs sigma >= 0, got {sigma}.")
    if num_corrupted < 1:
        raise ValueError(f"num_corrupted must be >= 1, got {num_corrupted}.")
    if method not in EXACT_METHODS:
        raise ValueError(f"Unknown exact Jacobian method {method!r}. Known: {', '.join(EXACT_METHODS)}.")

    def encode(x: jax.Array) -> jax.Array:
        return apply_fn({"params": params}, x, method="encode")

    x = outputs.input
    eps = sigma * jax.random.normal(rng, (num_corrupted, *x.shape), dtype=x.dtype)
    return jnp.mean(jacobian_difference_sq(encode, x, eps, method))
