"""The reconstruction-contractive penalty ||dr/dx||_F^2 of the whole autoencoder r = g(f(x)).

Alain & Bengio (JMLR 2014): for small Gaussian corruption x~ = x + sigma eps,
E||r(x~) - x||^2 ~= E||r(x) - x||^2 + sigma^2 E||dr(x)/dx||_F^2, so the reconstruction-contractive
autoencoder (RCAE) with lambda = sigma^2 trains towards the same score estimate as the denoising
autoencoder, without corruption. Unlike the CAE penalty (`contractive`, the encoder's Jacobian) it
differentiates the decoder output with respect to the input.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.regularizers.contractive import jacobian_frobenius_sq
from aejax.regularizers.registry import register


@register("reconstruction_contractive")
def reconstruction_contractive(
    *,
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Any,
    outputs: AutoencoderOutput,
    rng: jax.Array,
    method: str = "auto",
    num_probes: int = 1,
    probe: str = "rademacher",
) -> jax.Array:
    """The RCAE penalty: batch mean of ||dr(x)/dx||_F^2, r the decoder output (Alain & Bengio 2014).

    lambda is the Term weight (lambda = sigma^2 matches a DAE of noise sigma under squared error; with the
    unit-variance Gaussian likelihood, whose NLL is half the squared error, use weight sigma^2 / 2). The
    Jacobian [D, D] of x -> apply_fn({"params": params}, x).decoder_output (flattened) is taken at the
    model input `outputs.input`. The decoder output is r itself for the Gaussian likelihood (for Bernoulli
    it is the logits). Reads only `outputs.input`.

    Args:
      method: "auto" | "jacfwd" | "jacrev" (exact) or "hutchinson" (stochastic, unbiased; draws from rng).
      num_probes: Hutchinson probes per example.
      probe: "rademacher" or "gaussian" Hutchinson probes.

    Returns:
      [] mean over the batch of the squared Frobenius norm (dimensionless: output units / input units).

    Raises:
      ValueError: for an unknown method or probe, or "closed_form" (there is none for the whole network).
    """

    def reconstruct(x: jax.Array) -> jax.Array:
        out = apply_fn({"params": params}, x).decoder_output
        return out.reshape(out.shape[0], -1)  # [B, D]

    x = outputs.input
    sq = jacobian_frobenius_sq(reconstruct, x, method=method, rng=rng, num_probes=num_probes, probe=probe)
    return jnp.mean(sq)
