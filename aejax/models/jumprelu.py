"""JumpReLU SAE (Rajamanoharan et al. 2024b, "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU
Sparse Autoencoders").

    f(x) = JumpReLU_theta(pre) = pre * H(pre - theta),   pre = W_enc x + b_enc          (eq. 4-5)
    L    = ||x - x_hat||^2 + lambda ||f(x)||_0 = ... + lambda sum_i H(pre_i - theta_i)   (eq. 6)

with a learned threshold theta_i = exp(log_threshold_i) > 0 per latent. H has zero derivative almost everywhere,
so theta is trained by straight-through estimators with the rectangle kernel K(u) = 1[-1/2 < u < 1/2] of
bandwidth epsilon (eq. 11, 12):

    d/dtheta JumpReLU_theta(z) := -(theta / eps) K((z - theta) / eps)
    d/dtheta H(z - theta)      := -(1 / eps) K((z - theta) / eps)

while d/dz JumpReLU = H(z - theta) (the ordinary derivative) and d/dz H(z - theta) := 0 (the L0 term does not
move the pre-activations). Both are `jax.custom_vjp` functions below. The paper's defaults: eps = 0.001, initial
theta = 0.001, inputs normalised to E||x||^2 = d.
"""

from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp

from aejax.models import MODELS
from aejax.models.sae_base import AbstractSparseAutoencoder

L0 = "l0"


def rectangle(u: jax.Array) -> jax.Array:
    """K(u) = 1[-1/2 < u < 1/2] (as the dtype of u)."""
    return ((u > -0.5) & (u < 0.5)).astype(u.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z: jax.Array, theta: jax.Array, eps: float) -> jax.Array:
    """z * H(z - theta): z [B, n], theta [n] > 0, eps the bandwidth. Returns [B, n]."""
    return z * (z > theta[None, :]).astype(z.dtype)


def _jumprelu_fwd(z, theta, eps):
    return jumprelu(z, theta, eps), (z, theta)


def _jumprelu_bwd(eps, res, g):
    z, theta = res
    dz = g * (z > theta[None, :]).astype(z.dtype)
    dtheta = jnp.sum(g * (-(theta[None, :] / eps) * rectangle((z - theta[None, :]) / eps)), axis=0)
    return dz, dtheta


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def heaviside(z: jax.Array, theta: jax.Array, eps: float) -> jax.Array:
    """H(z - theta) [B, n], with the straight-through derivative of eq. 12 for theta and none for z."""
    return (z > theta[None, :]).astype(z.dtype)


def _heaviside_fwd(z, theta, eps):
    return heaviside(z, theta, eps), (z, theta)


def _heaviside_bwd(eps, res, g):
    z, theta = res
    dtheta = jnp.sum(g * (-(1.0 / eps) * rectangle((z - theta[None, :]) / eps)), axis=0)
    return jnp.zeros_like(z), dtheta


heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


@MODELS.register("jumprelu")
class JumpReLUSAE(AbstractSparseAutoencoder):
    """JumpReLU SAE. Attributes (besides AbstractSparseAutoencoder's):

      l0_coeff: lambda, the weight of the L0 penalty (loss term "l0", per example, normalised units).
      bandwidth: epsilon > 0 of the rectangle kernel.
      threshold_init: initial theta > 0 of every latent.

    Parameters: `log_threshold` [n] besides the shared ones.

    Raises:
      ValueError: at construction, for bandwidth <= 0, threshold_init <= 0 or l0_coeff < 0.
    """

    LATENT_AXES: ClassVar[dict[str, int]] = {**AbstractSparseAutoencoder.LATENT_AXES, "log_threshold": 0}

    l0_coeff: float = 1e-3
    bandwidth: float = 1e-3
    threshold_init: float = 1e-3

    def __post_init__(self):
        if not self.bandwidth > 0:
            raise ValueError(f"bandwidth (epsilon) must be > 0, got {self.bandwidth}.")
        if not self.threshold_init > 0:
            raise ValueError(f"threshold_init must be > 0, got {self.threshold_init}.")
        if self.l0_coeff < 0:
            raise ValueError(f"l0_coeff must be >= 0, got {self.l0_coeff}.")
        super().__post_init__()

    def setup(self):
        super().setup()
        init = lambda key, shape: jnp.full(shape, jnp.log(self.threshold_init))  # noqa: E731
        self.log_threshold = self.param("log_threshold", init, (self.n_latents,))

    def latents(self, x_n, b, *, train):
        del train
        pre = self.pre_activations(x_n, b)
        theta = jnp.exp(self.log_threshold)
        code = jumprelu(pre, theta, self.bandwidth)
        l0 = jnp.sum(heaviside(pre, theta, self.bandwidth), axis=1)
        return code, pre, {L0: self.hparam("l0_coeff") * l0}
