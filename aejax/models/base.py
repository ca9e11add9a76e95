"""The interface every autoencoder implements."""

import abc

import flax.linen as nn
import jax


class AbstractAutoencoder(nn.Module, abc.ABC):
    """An encoder f and a decoder g with r = g(f(x)).

    Subclasses implement `encode` and `decode`; `__call__` returns the reconstruction and a dict of named
    intermediate outputs (`aux`) that losses and regularizers read. Standard aux keys: `"z"` the code
    [B, K]; stochastic encoders add `"mu"`, `"logvar"`.

    The decoder output is in the parameterisation of the decoder likelihood (logits for Bernoulli, the mean for
    Gaussian); `aejax.likelihoods` maps it to the mean reconstruction.
    """

    @abc.abstractmethod
    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps inputs [B, *input_shape] to codes [B, K]."""

    @abc.abstractmethod
    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps codes [B, K] to decoder outputs [B, *input_shape]."""

    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns (decoder output [B, *input_shape], aux with "z": [B, K])."""
        z = self.encode(x, train=train)
        return self.decode(z, train=train), {"z": z}
