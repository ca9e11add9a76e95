"""Multilayer-perceptron autoencoder: Dense encoder to a code layer, mirrored Dense decoder.

Hinton & Salakhutdinov (2006) is `hidden=(1000, 500, 250), code_dim=30` with a linear code layer; a one-layer
sigmoid encoder (`hidden=()`, `code_activation="sigmoid"`) is the classic sparse / contractive autoencoder.
With `tied=True` the decoder reuses the encoder kernels transposed, W' = W^T (Vincent et al. 2010), and only has
biases of its own.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np

from aejax.models import MODELS
from aejax.models.base import AbstractAutoencoder

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "elu", "sigmoid", "tanh", "softplus", "linear")


# Parameter names other modules read (flax names the i-th entry of the `encoder` list "encoder_i").
def encoder_layer(i: int) -> str:
    """ "encoder_i": the Dense layer i of the encoder (i = 0 is next to the input)."""
    return f"encoder_{i}"


def decoder_layer(i: int) -> str:
    """ "decoder_i": the Dense layer i of an untied decoder (i = 0 is next to the code)."""
    return f"decoder_{i}"


def decoder_bias(i: int) -> str:
    """ "decoder_bias_i": the bias of decoder layer i of a tied model."""
    return f"decoder_bias_{i}"


FIRST_ENCODER = encoder_layer(0)  # its kernel [D, d_1] holds the first layer's filters


def activation_fn(name: str):
    """Returns the elementwise function for an activation name.

    Raises:
      KeyError: for an unknown name, listing the known ones.
    """
    if name not in ACTIVATIONS:
        raise KeyError(f"Unknown activation {name!r}. Known activations: {', '.join(ACTIVATIONS)}.")
    return (lambda x: x) if name == "linear" else getattr(nn, name)


@MODELS.register("mlp")
class MLPAutoencoder(AbstractAutoencoder):
    """MLP autoencoder D -> hidden... -> code_dim -> ...reversed(hidden) -> D.

    Attributes:
      input_shape: shape of one example, e.g. (28, 28, 1); D = prod(input_shape).
      hidden: widths of the encoder's hidden layers; the decoder mirrors them.
      code_dim: K, the width of the code layer.
      activation: hidden-layer activation (see ACTIVATIONS).
      code_activation: activation of the code layer; "linear" as in Hinton & Salakhutdinov (2006),
        "sigmoid" for KL-sparse and contractive autoencoders.
      tied: decoder kernels are the encoder kernels transposed.
      dropout_rate: dropout on the hidden layers of encoder and decoder when `train=True` (0 disables it; draws
        from the "dropout" rng stream).
      use_bias: bias terms in every layer (False: none at all, as Deep SVDD needs against the constant map;
        Ruff et al. 2018, Prop. 2).

    Parameters are named `encoder_i` (Dense, i = 0 is next to the input) and `decoder_i` (Dense) or, when tied,
    `decoder_bias_i`.
    """

    input_shape: Sequence[int]
    hidden: Sequence[int] = (1000, 500, 250)
    code_dim: int = 30
    activation: str = "relu"
    code_activation: str = "linear"
    tied: bool = False
    dropout_rate: float = 0.0
    use_bias: bool = True

    def setup(self):
        if self.code_dim < 1 or any(w < 1 for w in self.hidden):
            raise ValueError(f"Layer widths must be positive, got hidden={self.hidden}, code={self.code_dim}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}.")
        self._dropout = nn.Dropout(self.dropout_rate)
        self._act = activation_fn(self.activation)
        self._code_act = activation_fn(self.code_activation)
        dims = [int(np.prod(self.input_shape)), *self.hidden, self.code_dim]
        self.encoder = [nn.Dense(d, use_bias=self.use_bias) for d in dims[1:]]
        out_dims = dims[-2::-1]  # decoder widths: mirror of the encoder, ending at D
        if self.tied and self.use_bias:
            self.decoder_bias = [
                self.param(decoder_bias(i), nn.initializers.zeros, (d,)) for i, d in enumerate(out_dims)
            ]
        elif not self.tied:
            self.decoder = [nn.Dense(d, use_bias=self.use_bias) for d in out_dims]

    def _check_input(self, x: jax.Array) -> None:
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Input shape {tuple(x.shape)} does not match the model's input_shape "
                f"{tuple(self.input_shape)} (expected [B, {', '.join(map(str, self.input_shape))}])."
            )

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, *input_shape] -> code [B, K]."""
        self._check_input(x)
        h = x.reshape(x.shape[0], -1)  # [B, D]
        for i, layer in enumerate(self.encoder):
            last = i == len(self.encoder) - 1
            h = (self._code_act if last else self._act)(layer(h))
            if not last and self.dropout_rate:
                h = self._dropout(h, deterministic=not train)
        return h

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Code [B, K] -> decoder output [B, *input_shape] (logits or mean; the last layer is linear)."""
        h = z
        n = len(self.encoder)
        for i in range(n):
            if self.tied:
                kernel = self.encoder[n - 1 - i].variables["params"]["kernel"]  # [d_out, d_in] reversed
                h = h @ kernel.T + (self.decoder_bias[i][None, :] if self.use_bias else 0.0)
            else:
                h = self.decoder[i](h)
            if i < n - 1:
                h = self._act(h)
                if self.dropout_rate:
                    h = self._dropout(h, deterministic=not train)
        return h.reshape(z.shape[0], *self.input_shape)
