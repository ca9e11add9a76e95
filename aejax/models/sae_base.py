"""What every sparse autoencoder (SAE) of aejax shares: parameters, input normalisation, the pre-encoder bias,
unit-norm decoder rows, dead-latent tracking and the AuxK loss. The architectures (topk, batchtopk, jumprelu,
gated, relu_l1) are one module each and implement `latents`.

Layout (the one the PyTorch SAE tools use): `W_enc` [d, n], `b_enc` [n], `W_dec` [n, d], `b_dec` [d]. Row i of
`W_dec` is latent i's decoder vector (column i of the papers' d x n decoder matrix). With `tied=True` there is no
`W_enc`: the encoder is `W_dec.T` (Makhzani & Frey 2014).

Forward pass, x [B, d] (images are flattened by the model):

    x_n   = s * x                                  # s: input scale, so that E||x_n||^2 = d (Gao et al. 2024)
    b     = b_dec + c                              # c: the data centre (mean or geometric median of x_n)
    pre   = (x_n - b) W_enc + b_enc                # [B, n] (without "- b" when pre_bias=False)
    f     = latents(pre)                           # [B, n] the architecture's sparse code
    x_hat = (f W_dec + b) / s                      # [B, d] in the data's units

s and c are statistics of the first training batch (the activation-store case: no pass over the whole data
first), stored in the "sae_state" collection with the dead-latent counts, so `TrainState.model_state` carries
them and checkpoints save them. Until that batch they are s = 1, c = 0.

Unit-norm decoder (`unit_norm_decoder=True`, Bricken et al. 2023; Gao et al. 2024): rows of W_dec are rescaled to
unit norm after every step (`project`) and the gradient component parallel to each row is removed before the
optimizer sees it. The removal is an identity with a custom backward pass on W_dec inside the forward pass
(`parallel_grad_removed`), so every optimizer of the config gets the projected gradient with no hook in the
optimizer or the trainer.
"""

import abc
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from aejax.models import sae_select
from aejax.models.base import AbstractAutoencoder, AutoencoderOutput

STATE = "sae_state"  # the mutable collection: dead counts, input scale, data centre (+ BatchTopK threshold)
# A collection only a vmapped sweep passes (`aejax.sweep`): one member's swept coefficients (l1_coeff, l0_coeff)
# as traced values, which override the static attributes of the same name (`hparam`).
HPARAMS = "sweep_hparams"
B_DEC_INITS = ("zeros", "mean", "geometric_median")
MAX_COUNT = 2**30  # examples-since-fired saturate here (int32)

# Names of the loss terms a model returns in SparseOutput.losses (objective metrics "loss/<name>").
MSE, AUXK = "mse", "auxk"


@flax.struct.dataclass
class SparseOutput(AutoencoderOutput):
    """AutoencoderOutput plus what the SAE objective and metrics read.

    Attributes:
      pre_acts: [B, n] encoder pre-activations.
      losses: {name: [B]} the weighted loss terms per example, in normalised units (squared error summed over
        the d components of x_n): "mse" and the architecture's ("l1", "l0", "aux"), "auxk" in training.
      num_dead: [] latents dead (no activation in `dead_after` training examples) after this batch.
    """

    pre_acts: jax.Array | None = None
    losses: dict = flax.struct.field(default_factory=dict)
    num_dead: jax.Array | None = None


@jax.custom_vjp
def parallel_grad_removed(w: jax.Array) -> jax.Array:
    """Identity on W_dec [n, d] whose backward pass removes the gradient component parallel to each row.

    g_i <- g_i - (g_i . u_i) u_i with u_i = w_i / ||w_i|| (Bricken et al. 2023): a step along g_i then changes the
    row's direction, not its norm, to first order.
    """
    return w


def _prg_fwd(w):
    return w, w


def _prg_bwd(w, g):
    u = w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return (g - jnp.sum(g * u, axis=1, keepdims=True) * u,)


parallel_grad_removed.defvjp(_prg_fwd, _prg_bwd)


def unit_rows(w: jax.Array) -> jax.Array:
    """W_dec [n, d] with every row rescaled to unit norm (a zero row stays zero)."""
    return w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def geometric_median(x: jax.Array, num_iters: int = 50, eps: float = 1e-8) -> jax.Array:
    """argmin_c sum_b ||x_b - c|| by Weiszfeld's iterations from the mean.

    Args:
      x: [B, d] points.
    Returns:
      [d] the geometric median.
    """

    def step(c, _):
        w = 1.0 / jnp.maximum(jnp.linalg.norm(x - c[None, :], axis=1), eps)  # [B]
        return jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w), None

    return jax.lax.scan(step, jnp.mean(x, axis=0), None, length=num_iters)[0]


def check_k(name: str, k: int, n: int) -> None:
    """Raises ValueError unless 1 <= k <= n (named `name`)."""
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{name} must be an integer in [1, n_latents={n}], got {k!r}.")


class AbstractSparseAutoencoder(AbstractAutoencoder):
    """Shared parameters and forward pass of the SAEs; subclasses implement `latents`.

    Attributes:
      input_shape: one example's shape; d = prod(input_shape).
      n_latents: n, the dictionary size (n > d: overcomplete).
      tied: the encoder is W_dec.T (no W_enc).
      unit_norm_decoder: rows of W_dec kept at unit norm (see module docstring).
      encoder_init_transpose: W_enc initialised to W_dec.T (Gao et al. 2024; Conerly et al. 2024).
      pre_bias: subtract b_dec from the input before the encoder.
      b_dec_init: "zeros", "mean" or "geometric_median" of the first training batch (B_DEC_INITS).
      normalize_input: scale inputs so E||x||^2 = d (scale estimated on the first training batch).
      dead_after: a latent is dead after this many training examples without a non-zero activation.
      aux_k: k_aux of the AuxK loss (0 disables it): the k_aux largest dead pre-activations reconstruct the
        residual (Gao et al. 2024, Sec. 2.4; their default k_aux = d / 2 at scale).
      auxk_coeff: the AuxK coefficient alpha (Gao et al.: 1/32).
      resample_every: resample the dead latents every this many steps (Bricken et al. 2023; 0 = never), from
        the training batch (`aejax.sae_resample`).
      resample_until: the last step at which resampling may happen (0 = until the end of training).
      resample_encoder_scale: a resampled encoder row's norm as a fraction of the mean alive row's (their 0.2).
    """

    # Encoder columns, decoder rows and per-latent state split over the mesh's "model" axis (aejax.sharding).
    LATENT_AXES: ClassVar[dict[str, int]] = {"W_enc": 1, "b_enc": 0, "W_dec": 0, "examples_since_fired": 0}

    input_shape: Sequence[int]
    n_latents: int = 1024
    tied: bool = False
    unit_norm_decoder: bool = True
    encoder_init_transpose: bool = True
    pre_bias: bool = True
    b_dec_init: str = "geometric_median"
    normalize_input: bool = True
    dead_after: int = 10_000_000
    aux_k: int = 0
    auxk_coeff: float = 1 / 32
    resample_every: int = 0
    resample_until: int = 0
    resample_encoder_scale: float = 0.2

    def __post_init__(self):
        # Runs when the config builds the model: bad options fail before any compute.
        if self.n_latents < 1:
            raise ValueError(f"n_latents must be positive, got {self.n_latents}.")
        if self.b_dec_init not in B_DEC_INITS:
            raise KeyError(f"Unknown b_dec_init {self.b_dec_init!r}. Known: {', '.join(B_DEC_INITS)}.")
        if self.dead_after < 1:
            raise ValueError(f"dead_after must be >= 1 training example, got {self.dead_after}.")
        if self.aux_k:
            check_k("aux_k", self.aux_k, self.n_latents)
        if self.auxk_coeff < 0:
            raise ValueError(f"auxk_coeff must be >= 0, got {self.auxk_coeff}.")
        for name in ("resample_every", "resample_until"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(
                    f"{name} must be an integer number of steps >= 0 (0: off / no end), got {value!r}."
                )
        if self.resample_until and not self.resample_every:
            raise ValueError(f"resample_until={self.resample_until} is set but resample_every=0 (resampling off).")
        if not self.resample_encoder_scale > 0:
            raise ValueError(f"resample_encoder_scale must be > 0, got {self.resample_encoder_scale}.")
        super().__post_init__()

    @property
    def dim(self) -> int:
        return int(np.prod(self.input_shape))

    def setup(self):
        n, d = self.n_latents, self.dim
        self.W_dec = self.param("W_dec", lambda key, shape: unit_rows(jax.random.normal(key, shape)), (n, d))
        if not self.tied:
            if self.encoder_init_transpose:
                enc_init = lambda key, shape: self.W_dec.T  # noqa: E731
            else:
                enc_init = nn.initializers.lecun_normal()
            self.W_enc = self.param("W_enc", enc_init, (d, n))
        self.b_enc = self.param("b_enc", nn.initializers.zeros, (n,))
        self.b_dec = self.param("b_dec", nn.initializers.zeros, (d,))
        self.since_fired = self.variable(STATE, "examples_since_fired", jnp.zeros, (n,), jnp.int32)
        self.scale = self.variable(STATE, "input_scale", jnp.ones, (), jnp.float32)
        self.centre = self.variable(STATE, "data_centre", jnp.zeros, (d,), jnp.float32)
        self.ready = self.variable(STATE, "statistics_ready", jnp.zeros, (), jnp.bool_)

    # -- pieces ----------------------------------------------------------------------------------------------
    def hparam(self, name: str):
        """The hyperparameter `name`: a sweep member's traced value when the HPARAMS collection holds it, else the
        static attribute (every single-model run)."""
        if self.has_variable(HPARAMS, name):
            return self.get_variable(HPARAMS, name)
        return getattr(self, name)

    def encoder_weight(self) -> jax.Array:
        """[d, n]."""
        return self.decoder_weight().T if self.tied else self.W_enc

    def decoder_weight(self) -> jax.Array:
        """[n, d], with the parallel gradient removed when the rows are kept at unit norm."""
        return parallel_grad_removed(self.W_dec) if self.unit_norm_decoder else self.W_dec

    def _normalise(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """x [B, *input_shape] -> (x_n [B, d], b [d]); on the first training batch estimates s and c."""
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"Input shape {tuple(x.shape)} does not match [B, *{tuple(self.input_shape)}].")
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        needs_stats = self.normalize_input or self.b_dec_init != "zeros"
        if train and needs_stats and self.is_mutable_collection(STATE) and not self.is_initializing():

            def estimate(x):
                s = jnp.sqrt(self.dim / jnp.maximum(jnp.mean(jnp.sum(x * x, axis=1)), 1e-12))
                s = s if self.normalize_input else jnp.ones_like(s)
                xs = s * x
                c = {"zeros": lambda: jnp.zeros(self.dim), "mean": lambda: jnp.mean(xs, axis=0),
                     "geometric_median": lambda: geometric_median(xs)}[self.b_dec_init]()  # fmt: skip
                return s.astype(jnp.float32), c.astype(jnp.float32)

            s, c = jax.lax.cond(self.ready.value, lambda x: (self.scale.value, self.centre.value), estimate, x)
            self.scale.value, self.centre.value, self.ready.value = s, c, jnp.ones((), jnp.bool_)
        return self.scale.value * x, self.b_dec + self.centre.value

    def pre_activations(self, x_n: jax.Array, b: jax.Array) -> jax.Array:
        """[B, d] -> [B, n] = (x_n - b) W_enc + b_enc."""
        h = x_n - b[None, :] if self.pre_bias else x_n
        return h @ self.encoder_weight() + self.b_enc[None, :]

    @abc.abstractmethod
    def latents(self, x_n: jax.Array, b: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, dict]:
        """The architecture: (code f [B, n], pre-activations [B, n], weighted loss terms {name: [B]}).

        Args:
          x_n: [B, d] normalised inputs; b: [d] the pre-encoder bias b_dec + c; train: training mode.
        """

    # -- the AbstractAutoencoder interface ---------------------------------------------------------------------
    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """[B, *input_shape] -> code [B, n] (evaluation mode unless train)."""
        x_n, b = self._normalise(x, train)
        return self.latents(x_n, b, train=train)[0]

    def decode(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Code [B, n] -> reconstruction [B, *input_shape] in the data's units."""
        del train
        x_hat = z @ self.decoder_weight() + (self.b_dec + self.centre.value)[None, :]
        return (x_hat / self.scale.value).reshape(z.shape[0], *self.input_shape)

    def __call__(self, x: jax.Array, *, train: bool = False) -> SparseOutput:
        """Returns SparseOutput: decoder_output [B, *input_shape] (x_hat, data units), code [B, n], losses."""
        x_n, b = self._normalise(x, train)
        code, pre, losses = self.latents(x_n, b, train=train)
        w_dec = self.decoder_weight()
        recon = code @ w_dec + b[None, :]  # [B, d] normalised units
        residual = x_n - recon
        losses = {MSE: jnp.sum(residual * residual, axis=1), **losses}
        num_dead = self._track_dead(code, train)
        if train and self.aux_k:
            dead = self.since_fired.value >= self.dead_after  # [n]
            losses[AUXK] = self.auxk_coeff * auxk_loss(
                pre, dead, jax.lax.stop_gradient(residual), w_dec, self.aux_k
            )
        x_hat = (recon / self.scale.value).reshape(x.shape)
        return SparseOutput(
            decoder_output=x_hat, code=code, input=x, pre_acts=pre, losses=losses, num_dead=num_dead
        )

    def _track_dead(self, code: jax.Array, train: bool) -> jax.Array:
        """Updates examples-since-fired in training; returns the number of dead latents []."""
        if train and self.is_mutable_collection(STATE) and not self.is_initializing():
            fired = jnp.any(code != 0, axis=0)  # [n]
            count = jnp.minimum(self.since_fired.value + code.shape[0], MAX_COUNT)
            self.since_fired.value = jnp.where(fired, 0, count).astype(jnp.int32)
        return jnp.sum(self.since_fired.value >= self.dead_after)


def auxk_loss(pre: jax.Array, dead: jax.Array, residual: jax.Array, w_dec: jax.Array, k_aux: int) -> jax.Array:
    """Gao et al. (2024), Sec. 2.4: ||e - e_hat||^2 with e = x - x_hat (constant) and e_hat = W_dec^T of the
    k_aux largest ReLU pre-activations of the dead latents; zero when no latent is dead.

    Args:
      pre: [B, n] pre-activations; dead: [n] bool; residual: [B, d] e; w_dec: [n, d]; k_aux: static.
    Returns:
      [B] squared error per example (unweighted).
    """

    def loss(pre, dead, residual, w_dec):
        masked = jnp.where(dead[None, :], jax.nn.relu(pre), 0.0)  # [B, n]
        e_hat = sae_select.row_topk(masked, k_aux) @ w_dec  # exact also with n sharded over "model"
        return jnp.sum(jnp.square(residual - e_hat), axis=1)

    def none_dead(pre, dead, residual, w_dec):
        return jnp.zeros(pre.shape[:1], pre.dtype)

    # A cond, not a select: with no dead latent the top-k and scatter cost ~55% of a TopK step for nothing
    # (benchmarks/bench_sae.py, d = 256, n = 4,096, batch 4,096).
    return jax.lax.cond(jnp.any(dead), loss, none_dead, pre, dead, residual, w_dec)
