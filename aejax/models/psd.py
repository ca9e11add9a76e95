"""Predictive sparse decomposition (PSD): a feed-forward predictor of sparse codes and a linear dictionary.

Kavukcuoglu, Ranzato & LeCun (2008), "Fast inference in sparse coding algorithms with applications to object
recognition", eq. 2-3: the encoder f(x) = G tanh(W x + b), with G = diag(g) a learned gain, predicts the
sparse code h of x under the dictionary D [n, K] (atoms are columns, kept at unit norm by the objective's
projection); the decoder is linear, x_hat = D h. The training energy and the inference of the optimal codes
h* are in `aejax.objectives.psd`; new data is coded by the encoder alone.

Parameters: `encoder` (Dense: `kernel` W^T [n, K], `bias` b [K]), `gain` g [K], `dictionary` D [n, K].
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax.models import MODELS
from aejax.models.base import AbstractAutoencoder

DICTIONARY = "dictionary"  # the parameter D [n, K], read by the PSD objective and the filters report


def unit_columns(D: jax.Array, eps: float = 1e-12) -> jax.Array:
    """D [n, K] with every column scaled to unit Euclidean norm (a zero column stays zero).

    The projection PSD applies after every update: without it the L1 penalty is beaten by shrinking h
    and growing D (Kavukcuoglu et al. 2008, Sec. 2).
    """
    return D / jnp.maximum(jnp.linalg.norm(D, axis=0, keepdims=True), eps)


def unit_column_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Gaussian [n, K] dictionary with unit-norm columns."""
    return unit_columns(jax.random.normal(key, shape, dtype))


@MODELS.register("psd")
class PSDAutoencoder(AbstractAutoencoder):
    """PSD: encoder f(x) = g * tanh(W x + b) [B, K], decoder D h [B, *input_shape].

    Attributes:
      input_shape: shape of one example, e.g. (12, 12, 1); n = prod(input_shape).
      code_dim: K, the number of dictionary atoms (K > n is an overcomplete dictionary; the paper uses
        256 atoms on 12x12 patches).
      gain_init: initial value of every gain g_k.
    """

    input_shape: Sequence[int]
    code_dim: int = 256
    gain_init: float = 1.0

    def setup(self):
        if self.code_dim < 1:
            raise ValueError(f"code_dim must be positive, got {self.code_dim}.")
        n = int(np.prod(self.input_shape))
        self.encoder = nn.Dense(self.code_dim)
        self.gain = self.param("gain", nn.initializers.constant(self.gain_init), (self.code_dim,))
        self.dictionary = self.param(DICTIONARY, unit_column_init, (n, self.code_dim))

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Predicted sparse code f(x) = g * tanh(W x + b).

        Args:
          x: [B, *input_shape] inputs.
          train: unused (no dropout or batch statistics).

        Returns:
          [B, K] codes.

        Raises:
          ValueError: if x is not [B, *input_shape].
        """
        del train
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"Input shape {tuple(x.shape)} does not match [B, *{tuple(self.input_shape)}].")
        h = jnp.tanh(self.encoder(x.reshape(x.shape[0], -1)))  # [B, K]
        return h * self.gain[None, :]

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Linear dictionary decoder: codes z [B, K] -> D z reshaped to [B, *input_shape]."""
        del train
        return (z @ self.dictionary.T).reshape(z.shape[0], *self.input_shape)
