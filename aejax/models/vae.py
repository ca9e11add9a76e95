"""Variational autoencoder (Kingma & Welling 2014): a Gaussian encoder q(z | x) and a decoder p(x | z).

q(z | x) = N(z; mu(x), diag exp(logvar(x))), a trunk with two linear heads; the decoder maps z back to the input
shape. `AbstractVAE` holds what every VAE shares (heads, sampling, decoder variance); the "vae" model here has an
MLP trunk that the decoder mirrors, "conv_vae" (`aejax/models/conv_vae.py`) the convolutional autoencoder's
layers. The sample the decoder sees is reparameterised, z = mu + exp(logvar / 2) * eps with eps ~ N(0, I) from
the "sample" rng stream (Kingma & Welling 2014, eq. 10), so gradients flow through it.

With `linear=True` the encoder mean and the decoder are affine maps (no hidden layers): with a Gaussian decoder
of scalar variance the optimum is probabilistic PCA (Tipping & Bishop 1999; Lucas et al. 2019), the check of
`configs/vae.py:linear`.

A learned decoder variance (`decoder_variance="scalar"` or `"per_dim"`) is a parameter of the model, so the
decoder output becomes [B, *input_shape, 2] = (mean, log-variance broadcast), the layout the "gaussian_learned"
likelihood reads; with `"fixed"` the output is [B, *input_shape] in the parameterisation of a fixed likelihood
(Bernoulli logits, or a Gaussian mean).
"""

import abc
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax.models import MODELS
from aejax.models.base import AbstractAutoencoder, AutoencoderOutput
from aejax.models.mlp import activation_fn

DECODER_VARIANCES = ("fixed", "scalar", "per_dim")
# Log-variances pass through LOGVAR_BOUND * tanh(raw / LOGVAR_BOUND): smooth, slope 1 near 0, and bounded so
# exp(logvar) can neither overflow nor collapse to 0 (constant pixels would otherwise drive a per-pixel
# decoder variance to 0 and the likelihood to infinity). exp(-12) = 6e-6, a standard deviation of 2.5e-3.
LOGVAR_BOUND = 12.0


def bounded_logvar(raw: jax.Array) -> jax.Array:
    """Maps an unconstrained value to a log-variance in (-LOGVAR_BOUND, LOGVAR_BOUND), nats."""
    return LOGVAR_BOUND * jnp.tanh(raw / LOGVAR_BOUND)


class AbstractVAE(AbstractAutoencoder):
    """What every Gaussian-encoder VAE shares. A subclass declares the fields `input_shape`, `code_dim` and
    `decoder_variance`, calls `setup_vae()` in its `setup`, and implements `trunk` and `decoder_mean`.

    Parameters added by `setup_vae`: `encoder_mu`, `encoder_logvar` (Dense heads on the trunk) and
    `decoder_logvar` ([] or [D], before `bounded_logvar`) for a learned decoder variance.
    """

    def setup_vae(self) -> None:
        """Creates the posterior heads and the learned decoder log-variance.

        Raises:
          ValueError: for an unknown decoder_variance or a non-positive code_dim.
        """
        if self.decoder_variance not in DECODER_VARIANCES:
            raise ValueError(
                f"decoder_variance must be one of {', '.join(DECODER_VARIANCES)}, got {self.decoder_variance!r}."
            )
        if self.code_dim < 1:
            raise ValueError(f"code_dim must be positive, got {self.code_dim}.")
        self.encoder_mu = nn.Dense(self.code_dim)
        self.encoder_logvar = nn.Dense(self.code_dim)
        if self.decoder_variance != "fixed":
            shape = () if self.decoder_variance == "scalar" else (int(np.prod(self.input_shape)),)
            self.decoder_logvar = self.param("decoder_logvar", nn.initializers.zeros, shape)

    @abc.abstractmethod
    def trunk(self, x: jax.Array) -> jax.Array:
        """x [B, *input_shape] (already checked) -> features [B, F] the posterior heads read."""

    @abc.abstractmethod
    def decoder_mean(self, z: jax.Array) -> jax.Array:
        """z [N, K] -> [N, *input_shape] in the parameterisation of the likelihood (logits or mean)."""

    def posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [B, *input_shape] -> (mu [B, K], logvar [B, K] in (-LOGVAR_BOUND, LOGVAR_BOUND)) of q(z | x).

        Raises:
          ValueError: if x is not [B, *input_shape].
        """
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Input shape {tuple(x.shape)} does not match the model's input_shape "
                f"{tuple(self.input_shape)} (expected [B, {', '.join(map(str, self.input_shape))}])."
            )
        h = self.trunk(x)
        return self.encoder_mu(h), bounded_logvar(self.encoder_logvar(h))

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, *input_shape] -> the posterior mean mu [B, K]."""
        del train
        return self.posterior(x)[0]

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """z [N, K] -> decoder output [N, *input_shape] (logits or mean), or [N, *input_shape, 2] =
        (mean, log-variance) with a learned decoder variance."""
        del train
        mean = self.decoder_mean(z)  # [N, *input_shape]
        if self.decoder_variance == "fixed":
            return mean
        logvar = bounded_logvar(self.decoder_logvar)
        if self.decoder_variance == "per_dim":
            logvar = logvar.reshape(self.input_shape)
        return jnp.stack([mean, jnp.broadcast_to(logvar, mean.shape)], axis=-1)

    def __call__(self, x: jax.Array, *, train: bool = False, sample: bool = False) -> AutoencoderOutput:
        """The forward pass: code z = mu + exp(logvar / 2) * eps (eps from the "sample" rng stream) when
        `train` or `sample`, else z = mu.

        Returns:
          AutoencoderOutput(decoder_output = decode(z), code = z [B, K], input = x, posterior_mean = mu [B, K],
          posterior_logvar = logvar [B, K]).
        """
        mu, logvar = self.posterior(x)
        z = mu
        if train or sample:
            z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng("sample"), mu.shape, mu.dtype)
        return AutoencoderOutput(
            decoder_output=self.decode(z), code=z, input=x, posterior_mean=mu, posterior_logvar=logvar
        )


@MODELS.register("vae")
class VAE(AbstractVAE):
    """Gaussian-encoder VAE D -> hidden... -> (mu, logvar) [K] ; K -> ...reversed(hidden) -> D.

    Attributes:
      input_shape: shape of one example, e.g. (28, 28, 1); D = prod(input_shape).
      hidden: widths of the encoder's hidden layers; the decoder mirrors them. Ignored when `linear`.
      code_dim: K, the latent size.
      activation: hidden-layer activation (see `aejax.models.mlp.ACTIVATIONS`).
      linear: encoder mean, encoder log-variance and decoder are affine (the PPCA check).
      decoder_variance: "fixed" (decoder output [B, *input_shape]), "scalar" (one learned log-variance) or
        "per_dim" (one per input component); learned ones make the output [B, *input_shape, 2].

    Parameters: `encoder_i` (Dense trunk), `encoder_mu`, `encoder_logvar` (heads), `decoder_i` (Dense), and
    `decoder_logvar` for a learned decoder variance.

    Raises:
      ValueError: (at the first call) for non-positive widths or an unknown decoder_variance.
    """

    input_shape: Sequence[int]
    hidden: Sequence[int] = (512, 256)
    code_dim: int = 20
    activation: str = "relu"
    linear: bool = False
    decoder_variance: str = "fixed"

    def setup(self):
        hidden = () if self.linear else tuple(self.hidden)
        if any(w < 1 for w in hidden):
            raise ValueError(f"Layer widths must be positive, got hidden={hidden}, code={self.code_dim}.")
        self.setup_vae()
        self._act = activation_fn(self.activation)
        self.encoder = [nn.Dense(w) for w in hidden]
        self.decoder = [nn.Dense(w) for w in (*hidden[::-1], int(np.prod(self.input_shape)))]

    def trunk(self, x: jax.Array) -> jax.Array:
        """[B, *input_shape] -> the last hidden layer [B, hidden[-1]] (the flattened input when linear)."""
        h = x.reshape(x.shape[0], -1)  # [B, D]
        for layer in self.encoder:
            h = self._act(layer(h))
        return h

    def decoder_mean(self, z: jax.Array) -> jax.Array:
        """z [N, K] -> [N, *input_shape]: the mirrored MLP, linear output layer."""
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i < len(self.decoder) - 1:
                h = self._act(h)
        return h.reshape(z.shape[0], *self.input_shape)
