"""ReLU SAE with an L1 penalty weighted by each decoder row's norm: the baseline of the SAE papers.

    f = ReLU((x - b_dec) W_enc + b_enc),   L = ||x - x_hat||^2 + lambda sum_i f_i ||W_dec,i||

Bricken et al. (2023) constrain ||W_dec,i|| = 1 (then the weight is 1); Anthropic's April 2024 update
(Conerly et al.) drops the constraint and weights the L1 by the norm, so the penalty cannot be beaten by
shrinking f and growing W_dec. Loss term "l1" per example, normalised units.
"""

import jax
import jax.numpy as jnp

from aejax.models import MODELS
from aejax.models.sae_base import AbstractSparseAutoencoder

L1 = "l1"


@MODELS.register("relu_l1")
class ReLUL1SAE(AbstractSparseAutoencoder):
    """ReLU + decoder-norm-weighted L1. Attributes (besides AbstractSparseAutoencoder's):

      l1_coeff: lambda >= 0.

    Raises:
      ValueError: at construction, for l1_coeff < 0.
    """

    l1_coeff: float = 5.0

    def __post_init__(self):
        if self.l1_coeff < 0:
            raise ValueError(f"l1_coeff must be >= 0, got {self.l1_coeff}.")
        super().__post_init__()

    def latents(self, x_n, b, *, train):
        del train
        pre = self.pre_activations(x_n, b)
        code = jax.nn.relu(pre)
        norms = jnp.linalg.norm(self.decoder_weight(), axis=1)  # [n]
        return code, pre, {L1: self.hparam("l1_coeff") * jnp.sum(code * norms[None, :], axis=1)}
