"""Convolutional autoencoder: downsampling convolutions to a dense code, mirrored upsampling decoder.

Two encoders, after the seed tutorials: `downsample="pool"` is Keras' "Building Autoencoders in Keras" and
Masci et al. (2011), "Stacked convolutional auto-encoders for hierarchical feature extraction" (stride-1
convolution + max pooling; the decoder upsamples by nearest neighbour and convolves), and `downsample="stride"`
is PyImageSearch's "Introduction to Autoencoders" (strided convolutions, mirrored transposed convolutions). Both
end in a dense code layer of width K, so the code-level regularizers and analyses written for the MLP (the
contractive Jacobian [K, D], sparsity, probes) apply unchanged.

With L = len(features) layers of factor s = strides, an [H, W, C] input is encoded through maps of side H / s^l
down to [H / s^L, W / s^L, features[-1]]; the decoder's Dense layer restores that map and L upsampling layers,
the last one linear with C channels, return [H, W, C].
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax.models import MODELS
from aejax.models.base import AbstractAutoencoder
from aejax.models.mlp import activation_fn

DOWNSAMPLE_MODES = ("pool", "stride")


@MODELS.register("conv")
class ConvAutoencoder(AbstractAutoencoder):
    """Conv autoencoder [H, W, C] -> features... -> code_dim -> ...reversed(features) -> [H, W, C].

    Attributes:
      input_shape: shape of one example [H, W, C]; H and W must be multiples of strides**len(features).
      features: channel widths of the encoder's conv layers (at least one); the decoder mirrors them.
      kernel_size: side of the square convolution kernels ("SAME" padding).
      strides: s, the downsampling factor of each encoder layer (and upsampling factor of each decoder layer).
      downsample: "stride" (convolutions of stride s; the decoder uses transposed convolutions of stride s) or
        "pool" (stride-1 convolution then s x s max pooling of stride s; the decoder upsamples by nearest
        neighbour, factor s, then convolves with stride 1).
      code_dim: K, the width of the dense code layer.
      activation: hidden-layer activation (see `aejax.models.mlp.ACTIVATIONS`).
      code_activation: activation of the code layer ("linear" by default).
      batch_norm: BatchNorm after each hidden conv / transposed conv, before the activation (none on the code,
        the decoder's Dense layer or the output layer); statistics live in the "batch_stats" collection, so
        `train=True` must be applied with `mutable=["batch_stats"]`.
      use_bias: bias terms in every layer and BatchNorm's learned scale and shift (False: none of them, the
        bias-free network Deep SVDD needs; Ruff et al. 2018's LeNet-type encoders use BatchNorm without affine
        parameters).

    Parameters are named `encoder_conv_i` (i = 0 next to the input), `encoder_bn_i`, `encoder_code` (Dense),
    `decoder_dense`, `decoder_conv_i` (i = 0 next to the code), `decoder_bn_i` and `decoder_out`.

    Raises:
      ValueError: (at the first call) for an input_shape that is not [H, W, C] of positive sides, a side not
        divisible by strides**len(features), non-positive widths, kernel_size, strides or code_dim, or an empty
        `features`.
      KeyError: for an unknown `downsample` mode or activation, listing the known ones.
    """

    input_shape: Sequence[int]
    features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    strides: int = 2
    downsample: str = "stride"
    code_dim: int = 30
    activation: str = "relu"
    code_activation: str = "linear"
    batch_norm: bool = False
    use_bias: bool = True

    def setup(self):
        shape, feats, s = tuple(self.input_shape), tuple(self.features), self.strides
        if len(shape) != 3 or any(d < 1 for d in shape):
            raise ValueError(f"input_shape must be [H, W, C] with positive sides, got {shape}.")
        if not feats or any(f < 1 for f in feats) or self.code_dim < 1:
            raise ValueError(
                f"Layer widths must be positive (and features non-empty), got features={feats}, "
                f"code_dim={self.code_dim}."
            )
        if self.kernel_size < 1 or s < 1:
            raise ValueError(f"kernel_size and strides must be positive, got {self.kernel_size} and {s}.")
        if self.downsample not in DOWNSAMPLE_MODES:
            raise KeyError(
                f"Unknown downsample mode {self.downsample!r}. Known modes: {', '.join(DOWNSAMPLE_MODES)}."
            )
        factor = s ** len(feats)
        for side in shape[:2]:
            if side % factor:
                raise ValueError(
                    f"input_shape {shape}: input side {side} is not divisible by strides**num_layers = {factor} "
                    f"({s}**{len(feats)}); H and W must be multiples of {factor}."
                )
        self._act = activation_fn(self.activation)
        self._code_act = activation_fn(self.code_activation)
        self._bottom = (shape[0] // factor, shape[1] // factor, feats[-1])  # smallest map [h, w, F_L]
        kernel = (self.kernel_size, self.kernel_size)
        conv_stride = (s, s) if self.downsample == "stride" else (1, 1)
        b = dict(use_bias=self.use_bias)
        self.encoder_conv = [nn.Conv(f, kernel, strides=conv_stride, padding="SAME", **b) for f in feats]
        self.encoder_code = nn.Dense(self.code_dim, **b)
        self.decoder_dense = nn.Dense(int(np.prod(self._bottom)), **b)
        # "stride" upsamples inside the transposed conv; "pool" resizes first, then convolves with stride 1.
        up = nn.ConvTranspose if self.downsample == "stride" else nn.Conv
        self.decoder_conv = [up(f, kernel, strides=conv_stride, padding="SAME", **b) for f in feats[-2::-1]]
        self.decoder_out = up(shape[2], kernel, strides=conv_stride, padding="SAME", **b)
        if self.batch_norm:
            bn = dict(use_bias=self.use_bias, use_scale=self.use_bias)
            self.encoder_bn = [nn.BatchNorm(**bn) for _ in feats]
            self.decoder_bn = [nn.BatchNorm(**bn) for _ in feats[:-1]]

    def _check_input(self, x: jax.Array) -> None:
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"Input shape {tuple(x.shape)} does not match the model's input_shape "
                f"{tuple(self.input_shape)} (expected [B, {', '.join(map(str, self.input_shape))}])."
            )

    def _upsample(self, h: jax.Array) -> jax.Array:
        """[B, h, w, c] -> [B, s h, s w, c] by nearest neighbour ("pool" mode only).

        A broadcast and a reshape (each value copied into its s x s block), which is `jax.image.resize(...,
        "nearest")` at an integer factor; its gradient is a sum over each block instead of resize's scatter.
        """
        if self.downsample == "stride":
            return h
        b, height, width, c = h.shape
        s = self.strides
        h = jnp.broadcast_to(h[:, :, None, :, None, :], (b, height, s, width, s, c))
        return h.reshape(b, height * s, width * s, c)

    def _max_pool(self, h: jax.Array) -> jax.Array:
        """[B, H, W, c] -> [B, H / s, W / s, c]: the max over each s x s block ("pool" mode only).

        The same values as `nn.max_pool(h, (s, s), strides=(s, s))` (the sides are multiples of s, checked in
        setup) as a reshape and a max, whose gradient XLA:CPU computes ~1.3x faster than the `reduce_window`
        gradient (select-and-scatter) in a conv AE step (benchmarks/bench_families.py). Only where a block's
        maximum is tied do the gradients differ (split among the tied entries instead of given to the first),
        which after a ReLU happens only for all-zero blocks, whose gradient the ReLU stops anyway.
        """
        b, height, width, c = h.shape
        s = self.strides
        return h.reshape(b, height // s, s, width // s, s, c).max(axis=(2, 4))

    def trunk(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, H, W, C] -> the flattened last feature map [B, h w F_L], before the code layer (the convolutional
        VAE puts its posterior heads here).

        Raises:
          ValueError: if x is not [B, *input_shape].
        """
        self._check_input(x)
        h = x
        for i, conv in enumerate(self.encoder_conv):
            h = conv(h)  # [B, H_i, W_i, F_i] ("stride": already downsampled)
            if self.batch_norm:
                h = self.encoder_bn[i](h, use_running_average=not train)
            h = self._act(h)
            if self.downsample == "pool":
                h = self._max_pool(h)
        return h.reshape(x.shape[0], -1)  # [B, h w F_L]

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, H, W, C] -> code [B, K].

        Raises:
          ValueError: if x is not [B, *input_shape].
        """
        return self._code_act(self.encoder_code(self.trunk(x, train=train)))

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Code [B, K] -> decoder output [B, H, W, C] (logits or mean; the output layer is linear).

        Raises:
          ValueError: if z is not [B, code_dim].
        """
        if z.ndim != 2 or z.shape[1] != self.code_dim:
            raise ValueError(f"Code shape {tuple(z.shape)} is not [B, code_dim={self.code_dim}].")
        h = self._act(self.decoder_dense(z)).reshape(z.shape[0], *self._bottom)  # [B, h, w, F_L]
        for i, conv in enumerate(self.decoder_conv):
            h = conv(self._upsample(h))  # [B, s h, s w, F_{L-1-i}]
            if self.batch_norm:
                h = self.decoder_bn[i](h, use_running_average=not train)
            h = self._act(h)
        return self.decoder_out(self._upsample(h))  # [B, H, W, C]
