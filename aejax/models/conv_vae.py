"""Convolutional VAE: the convolutional autoencoder's layers around a Gaussian latent.

The encoder is `ConvAutoencoder.trunk` (the conv stack up to the flattened last feature map) with the two
posterior heads of `AbstractVAE` on it; the decoder is `ConvAutoencoder.decode` (Dense to the smallest map, then
the mirrored upsampling convolutions). So the convolutional AE and VAE differ only in the latent: a
deterministic code layer or q(z | x) = N(mu(x), diag exp(logvar(x))) sampled by reparameterisation (Kingma &
Welling 2014; the architecture of the seed tutorials' Keras VAE and of the Flax/pythae convolutional VAEs).
"""

from collections.abc import Sequence

import jax

from aejax.models import MODELS
from aejax.models.conv import ConvAutoencoder
from aejax.models.vae import AbstractVAE


@MODELS.register("conv_vae")
class ConvVAE(AbstractVAE):
    """Conv VAE [H, W, C] -> features... -> (mu, logvar) [K] ; K -> ...reversed(features) -> [H, W, C].

    Attributes:
      input_shape: [H, W, C]; H and W must be multiples of strides**len(features).
      features, kernel_size, strides, downsample, activation: as `ConvAutoencoder`'s.
      code_dim: K, the latent size.
      decoder_variance: "fixed", "scalar" or "per_dim", as the MLP VAE's.

    Parameters: `layers/encoder_conv_i`, `layers/decoder_dense`, `layers/decoder_conv_i`, `layers/decoder_out`
    (the ConvAutoencoder's; its `encoder_code` layer is never created), `encoder_mu`, `encoder_logvar` and, for
    a learned variance, `decoder_logvar`. No BatchNorm: the ELBO objective applies the model in one mode.

    Raises:
      ValueError / KeyError: (at the first call) as `ConvAutoencoder` for bad shapes, widths or modes, and as
        `AbstractVAE.setup_vae` for an unknown decoder_variance.
    """

    input_shape: Sequence[int]
    features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    strides: int = 2
    downsample: str = "stride"
    code_dim: int = 20
    activation: str = "relu"
    decoder_variance: str = "fixed"

    def setup(self):
        self.setup_vae()
        self.layers = ConvAutoencoder(
            input_shape=self.input_shape,
            features=self.features,
            kernel_size=self.kernel_size,
            strides=self.strides,
            downsample=self.downsample,
            code_dim=self.code_dim,
            activation=self.activation,
        )

    def trunk(self, x: jax.Array) -> jax.Array:
        """[B, H, W, C] -> the flattened last feature map [B, h w F_L]."""
        return self.layers.trunk(x)

    def decoder_mean(self, z: jax.Array) -> jax.Array:
        """z [N, K] -> [N, H, W, C] (logits or mean)."""
        return self.layers.decode(z)
