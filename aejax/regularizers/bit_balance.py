"""Bit-balance penalty on a code in [0, 1]: each code unit should be 1 for half of the items (binary hashing)."""

from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.models.hashing import real_valued_code
from aejax.regularizers.registry import register


@register("bit_balance")
def bit_balance(
    *, params: Any, apply_fn: Any, batch: Any, outputs: AutoencoderOutput, rng: jax.Array
) -> jax.Array:
    """Omega(S) = sum_j (m_j - 1/2)^2, m_j = (1/B) sum_b s_bj: the squared distance of each bit's batch mean
    from 1/2, summed over the b bits.

    A balanced bit splits the database in halves, the most information one bit can carry; the constraint
    sum_n y_n = 0 on codes y = 2s - 1 in {-1, 1} of Spectral Hashing (Weiss, Torralba & Fergus 2008) and the
    balance property of Deep Hashing (Liong et al. 2015, sec. 3) are its hard form. 0 for balanced bits;
    b / 4 (the maximum on [0, 1]) for constant 0/1 codes. The weight is the Term weight; the batch mean stands
    in for the database mean.

    Reads `s = aejax.models.hashing.real_valued_code(outputs)` [B, b]: the noise-free sigmoid(a) of a hashing
    model (`outputs.extras["code_probs"]`), else `outputs.code` (which should then be in [0, 1]).

    Returns:
      [] in squared code units, summed over bits.
    """
    del params, apply_fn, batch, rng
    s = real_valued_code(outputs)  # [B, b]
    return jnp.sum(jnp.square(jnp.mean(s, axis=0) - 0.5))
