"""Bit-decorrelation penalty on a code in [0, 1]: the bits' covariance should be that of independent fair bits."""

from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.models.hashing import real_valued_code
from aejax.regularizers.registry import register

FAIR_BIT_VARIANCE = 0.25  # the variance of a 0/1 bit that is 1 half the time


@register("bit_decorrelation")
def bit_decorrelation(
    *, params: Any, apply_fn: Any, batch: Any, outputs: AutoencoderOutput, rng: jax.Array
) -> jax.Array:
    """Omega(S) = || (1/B) S_c^T S_c - I / 4 ||_F^2, S_c = S - (1/B) 1 1^T S the batch-centred code [B, b].

    (1/B) S_c^T S_c is the bits' [b, b] covariance; I / 4 is that of independent balanced 0/1 bits, so the
    penalty asks for uncorrelated bits of maximal variance (saturated and balanced units). It is the
    independence constraint (1/N) sum_n y_n y_n^T = I of Spectral Hashing (Weiss, Torralba & Fergus 2008) on
    y = 2s - 1 (divided by 16), and the independence property of Deep Hashing (Liong et al. 2015, sec. 3) in
    soft form. Closed forms: 0 for balanced, pairwise-uncorrelated 0/1 codes; b / 16 for constant codes; (b^2 -
    b) / 16 for b identical balanced bits. The weight is the Term weight.

    Reads `s = aejax.models.hashing.real_valued_code(outputs)` [B, b] as `bit_balance` does.

    Returns:
      [] in squared code units, summed over the b^2 entries.
    """
    del params, apply_fn, batch, rng
    s = real_valued_code(outputs)  # [B, b]
    centred = s - jnp.mean(s, axis=0, keepdims=True)  # [B, b]
    cov = centred.T @ centred / s.shape[0]  # [b, b]
    return jnp.sum(jnp.square(cov - FAIR_BIT_VARIANCE * jnp.eye(s.shape[1], dtype=s.dtype)))
