"""Sequence autoencoders on series `[B, T, C]` with an optional validity mask `[B, T]` (1 on the first L_b
steps, 0 on padding; None: every step valid), the `mask` field of `aejax.data.Batch`.

`seq2seq`: the LSTM/GRU encoder-decoder of Srivastava et al. (2015, "Unsupervised learning of video
representations using LSTMs") and Malhotra et al. (2016, "LSTM-based encoder-decoder for multi-sensor anomaly
detection", EncDec-AD). The encoder runs over the L valid steps (`nn.RNN` with `seq_lengths`, so padding never
enters the state); the code is a linear projection of its final state (for the LSTM, [c; h]). The decoder's
state starts from the code and it reconstructs the series in reverse order, x_{L-1}, ..., x_0: at step k it
outputs x^_{L-1-k} from its state and an input that is, with teacher forcing (training only, optional), the
true previous target x_{L-k}, and otherwise (always at evaluation) its own previous output x^_{L-k}; step 0
reads zeros. The outputs are flipped back, so `decoder_output[:, t]` reconstructs x_t.

`conv1d`: a 1-D convolutional autoencoder for fixed-length windows, strided convolutions to a dense code and
mirrored transposed convolutions, the cheap alternative.

Both return `decoder_output` [B, T, C] (the Gaussian mean), zero on padding, and leave the masking of the
likelihood to `aejax.objectives.sequence`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.recurrent import flip_sequences

from aejax.models import MODELS
from aejax.models.base import AbstractAutoencoder, AutoencoderOutput

CELLS = ("lstm", "gru")


def _check_series(x: jax.Array, mask: jax.Array | None, input_shape: Sequence[int]) -> None:
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"Input shape {tuple(x.shape)} is not series [B, T, C] = [B, {', '.join(map(str, input_shape))}]."
        )
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask shape {tuple(mask.shape)} is not [B, T] = {tuple(x.shape[:2])}.")


def lengths_of(mask: jax.Array | None, x: jax.Array) -> jax.Array:
    """[B, T] 0/1 mask (ones first) of series x [B, T, C] -> [B] int32 valid lengths (all T without a mask)."""
    if mask is None:
        return jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    return mask.sum(axis=1).astype(jnp.int32)


def _valid(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return x if mask is None else x * mask[..., None].astype(x.dtype)


def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """[B, T, C] -> [B, T, C] with each row's first lengths[b] steps reversed (padding stays after them):
    out[b, k] = x[b, L_b - 1 - k] for k < L_b. Its own inverse."""
    return flip_sequences(x, lengths, num_batch_dims=1, time_major=False)


def _make_cell(cell: str, hidden: int) -> nn.RNNCellBase:
    if cell not in CELLS:
        raise KeyError(f"Unknown cell {cell!r}. Known cells: {', '.join(CELLS)}.")
    return nn.OptimizedLSTMCell(hidden) if cell == "lstm" else nn.GRUCell(hidden)


class _DecoderStep(nn.Module):
    """One decoder step: (cell carry, previous output x^ [B, C]), (teacher input [B, C], gate [B, 1]) -> new
    carry, output x^ [B, C]. The cell reads the teacher input where gate = 1, its previous output where 0."""

    cell: str
    hidden: int
    channels: int

    @nn.compact
    def __call__(self, carry, xs):
        state, previous = carry
        teacher_input, gate = xs
        inputs = gate * teacher_input + (1.0 - gate) * previous
        state, h = _make_cell(self.cell, self.hidden)(state, inputs)
        out = nn.Dense(self.channels, name="out")(h)  # [B, C]
        return (state, out), out


_DecoderScan = nn.scan(
    _DecoderStep, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1
)


@MODELS.register("seq2seq")
class RecurrentAutoencoder(AbstractAutoencoder):
    """LSTM/GRU encoder-decoder on series [B, T, C] with an optional mask [B, T] (module docstring).

    Attributes:
      input_shape: [T, C] of one example.
      cell: "lstm" (`nn.OptimizedLSTMCell`) or "gru" (`nn.GRUCell`), for encoder and decoder.
      hidden: width of the recurrent state.
      code_dim: K, the width of the code (a linear projection of the encoder's final state).
      teacher_forcing: in training, feed the decoder the true previous value (else its own output).

    Parameters: `encoder` (the RNN), `encoder_code`, `decoder_init` (code -> initial state; for the LSTM also
    `decoder_init_c`), `decoder` (the scanned step: cell and `out`).

    Raises:
      ValueError: (at the first call) for a bad input_shape or non-positive widths, or an input that is not
        [B, *input_shape]. KeyError: for an unknown cell, listing the known ones.
    """

    input_shape: Sequence[int]
    cell: str = "lstm"
    hidden: int = 64
    code_dim: int = 16
    teacher_forcing: bool = True

    def setup(self):
        if len(self.input_shape) != 2 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be [T, C] with T, C >= 1, got {tuple(self.input_shape)}.")
        if self.hidden < 1 or self.code_dim < 1:
            raise ValueError(f"hidden and code_dim must be positive, got {self.hidden}, {self.code_dim}.")
        self.channels = self.input_shape[1]
        self.encoder = nn.RNN(_make_cell(self.cell, self.hidden), return_carry=True)
        self.encoder_code = nn.Dense(self.code_dim)
        self.decoder_init = nn.Dense(self.hidden)
        if self.cell == "lstm":
            self.decoder_init_c = nn.Dense(self.hidden)
        self.decoder = _DecoderScan(self.cell, self.hidden, self.channels)

    def encode(self, x: jax.Array, *, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """Series [B, T, C] (mask [B, T] or None) -> code [B, K], from the state after each series' last valid
        step."""
        del train
        _check_series(x, mask, self.input_shape)
        carry, _ = self.encoder(x, seq_lengths=lengths_of(mask, x))
        state = jnp.concatenate(carry, axis=-1) if self.cell == "lstm" else carry  # LSTM carry: (c, h)
        return self.encoder_code(state)

    def decode(self, z: jax.Array, *, train: bool = False, lengths=None, targets=None) -> jax.Array:
        """Code [B, K] -> reconstruction [B, T, C] in the original order, zero after each length.

        Args:
          z: [B, K] codes.
          train: with `teacher_forcing`, feed the decoder `targets` (required then) instead of its outputs.
          lengths: [B] valid lengths (None: all T).
          targets: [B, T, C] the series being reconstructed (teacher forcing only).
        """
        t, b = self.input_shape[0], z.shape[0]
        lengths = jnp.full((b,), t, jnp.int32) if lengths is None else lengths
        h0 = jnp.tanh(self.decoder_init(z))
        state = (self.decoder_init_c(z), h0) if self.cell == "lstm" else h0
        teacher = train and self.teacher_forcing
        if teacher:
            # Step k reads the previous target of the reversed series, rev[k - 1] = x_{L-k}; step 0 reads zeros.
            rev = reverse_valid(targets, lengths)
            inputs = jnp.concatenate([jnp.zeros_like(rev[:, :1]), rev[:, :-1]], axis=1)
        else:
            inputs = jnp.zeros((b, t, self.channels), z.dtype)
        gate = jnp.full((b, t, 1), 1.0 if teacher else 0.0, z.dtype)
        _, out_rev = self.decoder((state, jnp.zeros((b, self.channels), z.dtype)), (inputs, gate))  # reversed
        mask = (jnp.arange(t)[None, :] < lengths[:, None]).astype(out_rev.dtype)
        return reverse_valid(out_rev, lengths) * mask[..., None]

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, train: bool = False) -> AutoencoderOutput:
        """x [B, T, C] (mask [B, T] or None) -> AutoencoderOutput(decoder_output [B, T, C] zero on padding, code
        [B, K], input x)."""
        z = self.encode(x, mask=mask, train=train)
        out = self.decode(z, train=train, lengths=lengths_of(mask, x), targets=x)
        return AutoencoderOutput(decoder_output=out, code=z, input=x)


@MODELS.register("conv1d")
class Conv1dAutoencoder(AbstractAutoencoder):
    """1-D conv autoencoder on fixed-length windows [B, T, C] (mask [B, T] or None) -> [B, T, C].

    Attributes:
      input_shape: [T, C], any T >= 1: the series is zero-padded at its end to a multiple of 2 ** len(features)
        and the reconstruction cropped back to T.
      features: channel widths of the encoder's stride-2 convolutions; the decoder mirrors them.
      kernel_size: convolution width ("SAME" padding).
      code_dim: K, the width of the dense code layer.

    Raises:
      ValueError: (at the first call) for a bad input_shape, no features, or an input that is not
        [B, *input_shape].
    """

    input_shape: Sequence[int]
    features: Sequence[int] = (16, 32)
    kernel_size: int = 5
    code_dim: int = 16

    def setup(self):
        if len(self.input_shape) != 2 or min(self.input_shape) < 1 or not self.features:
            raise ValueError(
                f"conv1d needs input_shape [T, C] with T, C >= 1 and at least one feature width, got "
                f"input_shape {tuple(self.input_shape)}, features {tuple(self.features)}."
            )
        t, c = tuple(self.input_shape)
        factor = 2 ** len(self.features)
        self._padded = -(-t // factor) * factor  # the strided convolutions halve T exactly
        self._bottom = (self._padded // factor, self.features[-1])
        self.encoder_conv = [nn.Conv(f, (self.kernel_size,), strides=(2,), padding="SAME") for f in self.features]
        self.encoder_code = nn.Dense(self.code_dim)
        self.decoder_dense = nn.Dense(int(np.prod(self._bottom)))
        feats = tuple(self.features[-2::-1]) + (c,)
        self.decoder_conv = [nn.ConvTranspose(f, (self.kernel_size,), strides=(2,), padding="SAME") for f in feats]

    def encode(self, x: jax.Array, *, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        """[B, T, C] (mask [B, T] or None) -> code [B, K]."""
        del train
        _check_series(x, mask, self.input_shape)
        h = _valid(x, mask)
        h = jnp.pad(h, ((0, 0), (0, self._padded - x.shape[1]), (0, 0)))  # [B, T', C], zeros after T
        for conv in self.encoder_conv:
            h = nn.relu(conv(h))
        return self.encoder_code(h.reshape(x.shape[0], -1))

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Code [B, K] -> [B, T, C] (linear output)."""
        del train
        h = nn.relu(self.decoder_dense(z)).reshape(z.shape[0], *self._bottom)
        for i, conv in enumerate(self.decoder_conv):
            h = conv(h)
            if i < len(self.decoder_conv) - 1:
                h = nn.relu(h)
        return h[:, : self.input_shape[0]]  # [B, T, C]: the padding's reconstruction is dropped

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, train: bool = False) -> AutoencoderOutput:
        """x [B, T, C] (mask [B, T] or None) -> AutoencoderOutput(decoder_output [B, T, C] zero on padding, code
        [B, K], input x)."""
        z = self.encode(x, mask=mask, train=train)
        out = _valid(self.decode(z), mask)
        return AutoencoderOutput(decoder_output=out, code=z, input=x)
