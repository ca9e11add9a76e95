"""The interface every autoencoder implements, and the typed output of its forward pass."""

import abc
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax


@flax.struct.dataclass
class AutoencoderOutput:
    """What one forward pass of an autoencoder returns; losses, regularizers and reports read its fields.

    Attributes:
      decoder_output: [B, *input_shape] in the parameterisation of the decoder likelihood (logits for
        Bernoulli, the mean for Gaussian); `Likelihood.mean` maps it to the reconstruction E[x | h].
      code: [B, K] the code h = f(x) (for a stochastic encoder: the sample the decoder saw).
      input: [B, *input_shape] the array the encoder was applied to (the corrupted x~ for a denoising
        autoencoder, where a contractive penalty is taken).
      posterior_mean: optional [B, K] mean of q(h | x) (stochastic encoders).
      posterior_logvar: optional [B, K] log-variance of q(h | x), nats.
      extras: further named arrays a model wants to expose (e.g. hidden activations).
    """

    decoder_output: jax.Array
    code: jax.Array
    input: jax.Array
    posterior_mean: jax.Array | None = None
    posterior_logvar: jax.Array | None = None
    extras: dict[str, Any] = flax.struct.field(default_factory=dict)


class AbstractAutoencoder(nn.Module, abc.ABC):
    """An encoder f and a decoder g with r = g(f(x)).

    Subclasses implement `encode` and `decode`; `__call__` returns an `AutoencoderOutput`. `train=True` during
    training (dropout active, BatchNorm on batch statistics, which then must be applied with
    `mutable=["batch_stats"]`), `train=False` at evaluation (running averages, no dropout). Dropout draws from
    the "dropout" rng stream.

    `LATENT_AXES` {leaf name: axis}: the leaves (parameters, mutable state and their optimizer moments) whose
    axis of size `n_latents` may be split over the mesh's "model" axis (`aejax.sharding.state_shardings`); empty:
    the model cannot be sharded over "model".
    """

    LATENT_AXES: ClassVar[dict[str, int]] = {}

    @abc.abstractmethod
    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps inputs [B, *input_shape] to codes [B, K]."""

    @abc.abstractmethod
    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps codes [B, K] to decoder outputs [B, *input_shape]."""

    def __call__(self, x: jax.Array, *, train: bool = False) -> AutoencoderOutput:
        """Returns AutoencoderOutput(decoder_output [B, *input_shape], code [B, K], input x)."""
        z = self.encode(x, train=train)
        return AutoencoderOutput(decoder_output=self.decode(z, train=train), code=z, input=x)
