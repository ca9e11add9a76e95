"""L1 activity penalty on the code: the sparse autoencoder of Keras' `activity_regularizer=l1`."""

from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.regularizers.registry import register


@register("l1_activity")
def l1_activity(
    *, params: Any, apply_fn: Any, batch: Any, outputs: AutoencoderOutput, rng: jax.Array
) -> jax.Array:
    """Omega(h) = mean over the batch of sum_j |h_j|, the L1 norm of the code.

    lambda is the Term weight. Minimising lambda * Omega(h) is maximum a posteriori training under
    a factorial Laplace prior p(h_j) = lambda/2 exp(-lambda |h_j|) on the code (Goodfellow et al.,
    Deep Learning, section 14.2.1).

    Reads `outputs.code` [B, K] (any [B, ...] is summed over all non-batch axes).

    Returns:
      [] the mean over the batch of the per-example L1 norm, in code units.
    """
    del params, apply_fn, batch, rng
    z = outputs.code  # [B, K]
    return jnp.mean(jnp.sum(jnp.abs(z.reshape(z.shape[0], -1)), axis=1))
