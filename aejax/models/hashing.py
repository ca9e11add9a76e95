"""Semantic hashing autoencoder (Salakhutdinov & Hinton 2009): an MLP autoencoder whose code is b bits.

The encoder is the MLP of `aejax/models/mlp.py` with a linear code layer: its output is the code pre-activation
a = f(x) [B, b]. In training the decoder sees

    noise (Salakhutdinov & Hinton 2009, sec. 3.2):  h = sigmoid(a + n),   n ~ N(0, noise_std^2)
    straight_through:                                 h = 1[a + n > 0] forward, d sigmoid(a + n) backward

The noise makes a code unit useful to the decoder only when |a| is large compared with noise_std, so training
pushes the units to saturate and h becomes (nearly) binary; the paper used Gaussian noise of variance 16
(noise_std = 4). Their noise was drawn once in advance ("deterministic") so that conjugate gradients saw a fixed
objective; here it is deterministic given the training step: it is drawn from the step's rng (the "dropout"
stream, the one rng stream the autoencoder objective passes in training), so a resumed run draws the same noise
as an uninterrupted one. At evaluation the code is thresholded, h = 1[a > 0] in {0, 1}, and the decoder
reconstructs from the bits, so the test error is that of the b-bit code.

Noise schedule: with `noise_schedule_steps` T > 0 the noise std ramps linearly from `noise_std_initial` to
`noise_std` over the first T training steps, sigma(t) = sigma_0 + (sigma - sigma_0) min(t / T, 1), so the code
units can first learn what to encode and only then be pushed to saturate. The step t is a counter in the model's
"schedule" collection (model state, checkpointed with the parameters and advanced by every training forward
pass that may mutate it), so a resumed run continues the same schedule.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax.models import MODELS
from aejax.models.base import AutoencoderOutput
from aejax.models.mlp import MLPAutoencoder

ESTIMATORS = ("noise", "straight_through")
# Names of the extras of `AutoencoderOutput` this model returns (reports read them by these constants).
CODE_LOGITS = "code_logits"  # [B, b] the pre-binarisation logits a
CODE_PROBS = "code_probs"  # [B, b] sigmoid(a), the real-valued code
NOISE_STREAM = "dropout"  # the rng stream that `objectives.autoencoder.apply_train` provides in training
SCHEDULE = "schedule"  # the mutable collection holding the noise schedule's step counter


def real_valued_code(outputs: AutoencoderOutput) -> jax.Array:
    """The real-valued code [B, K] of a forward pass before thresholding: `extras["code_probs"]` (sigmoid(a),
    without noise) for a hashing model, `outputs.code` flattened to [B, K] for any other model."""
    if CODE_PROBS in outputs.extras:
        return outputs.extras[CODE_PROBS]
    return outputs.code.reshape(outputs.code.shape[0], -1)


def threshold(logits: jax.Array) -> jax.Array:
    """Code pre-activations [B, b] -> bits [B, b], exactly 0.0 or 1.0 (1 where the logit is > 0)."""
    return (logits > 0).astype(jnp.float32)


@MODELS.register("hashing")
class HashingAutoencoder(MLPAutoencoder):
    """MLP autoencoder D -> hidden... -> b bits -> ...reversed(hidden) -> D (Salakhutdinov & Hinton 2009).

    Attributes (besides those of `MLPAutoencoder`; `code_dim` is b, the number of bits):
      noise_std: standard deviation of the Gaussian noise added to the code pre-activation in training
        (0 disables it: a plain sigmoid code, binarised only at test time).
      estimator: "noise" (the decoder sees sigmoid(a + n)) or "straight_through" (it sees the bits
        1[a + n > 0], with the gradient of the sigmoid; Bengio et al. 2013).
      noise_schedule_steps: T > 0 ramps the noise std linearly from noise_std_initial to noise_std over the
        first T training steps (a step counter in the "schedule" collection); 0: constant noise_std.
      noise_std_initial: the noise std at step 0 of the schedule.

    `encode(x)` returns the bits [B, b] at evaluation (`train=False`); `__call__` also exposes
    `extras["code_logits"]` (a [B, b]) and `extras["code_probs"]` (sigmoid(a) [B, b], the real-valued code
    before thresholding, without noise).

    Raises (at init): ValueError for an unknown estimator, a negative noise_std, noise_std_initial or
    noise_schedule_steps, or a code_activation other than "linear" (the code nonlinearity is the sigmoid above).
    """

    noise_std: float = 4.0
    estimator: str = "noise"
    noise_schedule_steps: int = 0
    noise_std_initial: float = 0.0

    def setup(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}.")
        if min(self.noise_std, self.noise_std_initial, self.noise_schedule_steps) < 0:
            raise ValueError(
                f"noise_std, noise_std_initial and noise_schedule_steps must be >= 0, got {self.noise_std}, "
                f"{self.noise_std_initial} and {self.noise_schedule_steps}."
            )
        if self.code_activation != "linear":
            raise ValueError(
                f"The hashing code is sigmoid(logits + noise); set code_activation='linear', got "
                f"{self.code_activation!r}."
            )
        super().setup()
        if self.noise_schedule_steps:
            self.schedule_step = self.variable(SCHEDULE, "step", lambda: jnp.zeros((), jnp.int32))

    def code_logits(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, *input_shape] -> code pre-activations a [B, b]."""
        return MLPAutoencoder.encode(self, x, train=train)

    def current_noise_std(self, *, train: bool) -> jax.Array | float:
        """The noise std of this forward pass: noise_std, or sigma(t) of the schedule (then advancing its step
        counter when the "schedule" collection is mutable, i.e. in a training step)."""
        if self.noise_schedule_steps == 0:
            return self.noise_std
        t = self.schedule_step.value
        if train and self.is_mutable_collection(SCHEDULE) and not self.is_initializing():
            self.schedule_step.value = t + 1
        frac = jnp.minimum(t.astype(jnp.float32) / self.noise_schedule_steps, 1.0)
        return self.noise_std_initial + (self.noise_std - self.noise_std_initial) * frac

    def binarise(self, logits: jax.Array, *, train: bool) -> jax.Array:
        """Logits [B, b] -> the code the decoder sees: noisy sigmoid / straight-through bits in training,
        thresholded bits at evaluation."""
        if not train:
            return threshold(logits)
        std = self.current_noise_std(train=train)
        if self.noise_std > 0 or self.noise_std_initial > 0:
            noise = jax.random.normal(self.make_rng(NOISE_STREAM), logits.shape, logits.dtype)
            logits = logits + std * noise
        probs = nn.sigmoid(logits)
        if self.estimator == "straight_through":
            return probs + jax.lax.stop_gradient(threshold(logits) - probs)
        return probs

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, *input_shape] -> code [B, b]: bits in {0, 1} at evaluation (noisy sigmoid in training)."""
        return self.binarise(self.code_logits(x, train=train), train=train)

    def __call__(self, x: jax.Array, *, train: bool = False) -> AutoencoderOutput:
        """Returns AutoencoderOutput(decoder_output [B, *input_shape], code [B, b] (bits at evaluation), input,
        extras={"code_logits": [B, b], "code_probs": [B, b]})."""
        logits = self.code_logits(x, train=train)
        z = self.binarise(logits, train=train)
        extras = {CODE_LOGITS: logits, CODE_PROBS: nn.sigmoid(logits)}
        return AutoencoderOutput(decoder_output=self.decode(z, train=train), code=z, input=x, extras=extras)
