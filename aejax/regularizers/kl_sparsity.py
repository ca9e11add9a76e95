"""KL sparsity penalty on the mean activation of sigmoid code units (Ng, CS294A notes)."""

from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.regularizers.registry import register


def bernoulli_kl(rho: float, rho_hat: jax.Array) -> jax.Array:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)) elementwise, in nats.

    Args:
      rho: target activation in (0, 1).
      rho_hat: [...] mean activations in (0, 1).

    Returns:
      [...] rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat)).
    """
    return rho * jnp.log(rho / rho_hat) + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat))


@register("kl_sparsity")
def kl_sparsity(
    *,
    params: Any,
    apply_fn: Any,
    batch: Any,
    outputs: AutoencoderOutput,
    rng: jax.Array,
    rho: float = 0.05,
    eps: float = 1e-6,
) -> jax.Array:
    """Omega = sum_j KL(rho || rho_hat_j), rho_hat_j = (1/B) sum_b h_bj, unit j's batch mean.

    beta is the Term weight; Ng's exercise uses rho = 0.01, beta = 3 (CS294A lecture notes,
    "Sparse autoencoder"). The batch mean stands in for the mean over the training set, so the
    penalty is an estimate whose bias shrinks with the batch size.

    Reads `outputs.code` [B, K]; units must be in (0, 1) (a sigmoid code layer). rho_hat is
    clipped to [eps, 1 - eps] so that a saturated unit gives a large finite penalty, not inf.

    Args:
      rho: target mean activation, in (0, 1).
      eps: clipping margin of rho_hat.

    Returns:
      [] nats, summed over the K code units (the batch is already averaged into rho_hat).

    Raises:
      ValueError: unless 0 < rho < 1 and 0 < eps < 0.5.
    """
    del params, apply_fn, batch, rng
    if not 0.0 < rho < 1.0:
        raise ValueError(f"kl_sparsity needs 0 < rho < 1, got rho={rho}.")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"kl_sparsity needs 0 < eps < 0.5, got eps={eps}.")
    z = outputs.code  # [B, K]
    rho_hat = jnp.clip(jnp.mean(z.reshape(z.shape[0], -1), axis=0), eps, 1.0 - eps)  # [K]
    return jnp.sum(bernoulli_kl(rho, rho_hat))
