"""Gated SAE (Rajamanoharan et al. 2024a, "Improving Dictionary Learning with Gated Sparse Autoencoders").

    x_c    = x - b_dec
    pi     = x_c W_gate + b_gate                        # gate pre-activations [B, n]   (W_gate is W_enc)
    f_gate = H(pi)                                      # which latents are active (no gradient)
    W_mag  = exp(r_mag) * W_gate  (per latent column)   # magnitudes share the gate's directions (eq. 7-8)
    f_mag  = ReLU(x_c W_mag + b_mag)
    f      = f_gate * f_mag,   x_hat = f W_dec + b_dec

    L = ||x - x_hat||^2 + lambda ||ReLU(pi) * ||W_dec,i|| ||_1 + ||x - x_hat_frozen(ReLU(pi))||^2     (eq. 9)

x_hat_frozen uses stop-gradient copies of W_dec and b_dec, so the auxiliary term trains only the gate. The paper
constrains ||W_dec,i|| = 1; the L1 is weighted by the norm so it is the same with or without the constraint.
Loss terms "l1" and "aux" per example, normalised units. Parameters: `W_enc` (= W_gate), `b_enc` (= b_gate),
`r_mag` [n], `b_mag` [n] besides `W_dec`, `b_dec`.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp

from aejax.models import MODELS
from aejax.models.sae_base import AbstractSparseAutoencoder

L1, AUX = "l1", "aux"


@MODELS.register("gated")
class GatedSAE(AbstractSparseAutoencoder):
    """Gated SAE. Attributes (besides AbstractSparseAutoencoder's):

      l1_coeff: lambda >= 0 of the gate's sparsity penalty.

    Raises:
      ValueError: at construction, for l1_coeff < 0.
    """

    LATENT_AXES: ClassVar[dict[str, int]] = {**AbstractSparseAutoencoder.LATENT_AXES, "r_mag": 0, "b_mag": 0}

    l1_coeff: float = 5.0

    def __post_init__(self):
        if self.l1_coeff < 0:
            raise ValueError(f"l1_coeff must be >= 0, got {self.l1_coeff}.")
        super().__post_init__()

    def setup(self):
        super().setup()
        self.r_mag = self.param("r_mag", jax.nn.initializers.zeros, (self.n_latents,))
        self.b_mag = self.param("b_mag", jax.nn.initializers.zeros, (self.n_latents,))

    def latents(self, x_n, b, *, train):
        del train
        pi = self.pre_activations(x_n, b)  # [B, n]
        x_c = x_n - b[None, :] if self.pre_bias else x_n
        mag = jax.nn.relu(x_c @ (self.encoder_weight() * jnp.exp(self.r_mag)[None, :]) + self.b_mag[None, :])
        code = jax.lax.stop_gradient((pi > 0).astype(pi.dtype)) * mag
        gate = jax.nn.relu(pi)
        w_dec = self.decoder_weight()
        l1 = self.hparam("l1_coeff") * jnp.sum(gate * jnp.linalg.norm(w_dec, axis=1)[None, :], axis=1)
        frozen = gate @ jax.lax.stop_gradient(w_dec) + jax.lax.stop_gradient(b)[None, :]
        aux = jnp.sum(jnp.square(x_n - frozen), axis=1)
        return code, pi, {L1: l1, AUX: aux}
