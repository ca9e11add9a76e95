"""Decoder likelihoods p_decoder(x | h): the reconstruction loss is -log p_decoder (DL book 14.4).

Each likelihood maps the decoder output to a per-example negative log-likelihood in nats, and to the mean
reconstruction E[x | h] used for squared error, figures and PSNR.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax.registry import Registry

LIKELIHOODS = Registry("likelihood")


class Likelihood(NamedTuple):
    """A decoder likelihood.

    Attributes:
      name: registry name.
      elementwise_nll: (output [B, ...], x [B, ...]) -> [B, ...] negative log-likelihood of each component, nats.
      mean: output [B, ...] -> [B, ...] the mean reconstruction E[x | h].
      summed_nll: optional (output, x, weights or None) -> [B], the same sum over components in a form that
        compiles better (the Gaussian's constant added once per example, not to every component: XLA's CPU
        fusion of "square, scale, add a constant, reduce" ran 2.7x slower than the square-and-reduce alone).
    """

    name: str
    elementwise_nll: Callable[[jax.Array, jax.Array], jax.Array]
    mean: Callable[[jax.Array], jax.Array]
    summed_nll: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array] | None = None

    def nll(self, output: jax.Array, x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
        """[B] negative log-likelihood in nats per example, summed over components.

        `weights` (same shape as x) reweights components, e.g. the emphasized denoising AE (Vincent 2010).
        """
        if self.summed_nll is not None:
            return self.summed_nll(output, x, weights)
        elem = self.elementwise_nll(output, x)
        return _sum_per_example(elem if weights is None else elem * weights)


def _sum_per_example(v: jax.Array) -> jax.Array:
    return v.reshape(v.shape[0], -1).sum(axis=1)


@LIKELIHOODS.register("bernoulli")
def bernoulli() -> Likelihood:
    """Bernoulli decoder on logits: -sum_j [x_j log s(l_j) + (1 - x_j) log(1 - s(l_j))], s the sigmoid.

    x may be any value in [0, 1] (the cross-entropy of Hinton & Salakhutdinov 2006 for grey MNIST pixels); the
    NLL is then a cross-entropy, >= the entropy of x, not >= 0 tight.
    """

    return Likelihood("bernoulli", optax.sigmoid_binary_cross_entropy, jax.nn.sigmoid)


@LIKELIHOODS.register("gaussian")
def gaussian(sigma: float = 1.0) -> Likelihood:
    """Gaussian decoder N(x; mu, sigma^2 I) with fixed sigma.

    NLL = ||x - mu||^2 / (2 sigma^2) + D log(sigma sqrt(2 pi)) nats; with sigma = 1 its gradient is that of half
    the squared error summed over dimensions.

    Raises:
      ValueError: if sigma <= 0.
    """
    if sigma <= 0:
        raise ValueError(f"Gaussian likelihood needs sigma > 0, got {sigma}.")
    log_norm = float(np.log(sigma * np.sqrt(2 * np.pi)))

    def elementwise_nll(mu, x):
        return jnp.square(x - mu) / (2 * sigma**2) + log_norm

    def summed_nll(mu, x, weights):
        # sum_j w_j (a_j + c) = sum_j w_j a_j + c sum_j w_j, with the scale and the constant outside the reduction.
        sq = jnp.square(x - mu) if weights is None else jnp.square(x - mu) * weights
        count = np.prod(x.shape[1:]) if weights is None else _sum_per_example(weights)
        return _sum_per_example(sq) * (0.5 / sigma**2) + log_norm * count

    return Likelihood("gaussian", elementwise_nll, lambda mu: mu, summed_nll)


def get_likelihood(name: str, **kwargs) -> Likelihood:
    """Builds a likelihood by name.

    Raises:
      KeyError: for an unknown name, listing the known ones.
    """
    return LIKELIHOODS.get(name)(**kwargs)


def squared_error(recon: jax.Array, x: jax.Array) -> jax.Array:
    """[B] squared error per example, summed over all pixels/dims (Hinton & Salakhutdinov 2006, Fig 2)."""
    return _sum_per_example(jnp.square(recon - x))


@LIKELIHOODS.register("gaussian_learned")
def gaussian_learned() -> Likelihood:
    """Gaussian decoder with a learned variance, N(x_j; m_j, exp(v_j)), on outputs [B, ..., 2] = (m, v).

    NLL per component = 0.5 * (log 2 pi + v + (x - m)^2 / exp(v)) nats. The model owns the log-variance (e.g.
    `aejax.models.vae.VAE` with `decoder_variance="scalar"`, one v for every component, or "per_dim") and
    broadcasts it into the last axis of its output; `mean` returns m.
    """
    log_2pi = float(np.log(2 * np.pi))

    def elementwise_nll(output, x):
        mean, logvar = output[..., 0], output[..., 1]
        return 0.5 * (log_2pi + logvar + jnp.square(x - mean) * jnp.exp(-logvar))

    return Likelihood("gaussian_learned", elementwise_nll, lambda output: output[..., 0])
