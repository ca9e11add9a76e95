"""BatchTopK SAE (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders").

Training keeps the k*B largest ReLU pre-activations over the whole batch [B, n] (k per example on average, so
examples may use more or fewer latents). Inference uses a global threshold theta instead, so a code does not
depend on the rest of its batch: f = ReLU(pre) * 1[pre > theta]. theta is estimated during training as a
bias-corrected exponential moving average of the smallest positive activation kept in each batch (the paper
averages that minimum over batches), stored in the "sae_state" collection (checkpointed); before the first
training step theta = 0 (plain ReLU).
"""

import jax
import jax.numpy as jnp

from aejax.models import MODELS
from aejax.models.sae_base import STATE, AbstractSparseAutoencoder, check_k


def batch_topk_code(pre: jax.Array, k: int) -> jax.Array:
    """The k*B largest entries of ReLU(pre [B, n]) over the whole batch, others 0. Returns [B, n]."""
    acts = jax.nn.relu(pre).reshape(-1)
    vals, idx = jax.lax.top_k(acts, k * pre.shape[0])
    return jnp.zeros_like(acts).at[idx].set(vals).reshape(pre.shape)


@MODELS.register("batchtopk")
class BatchTopKSAE(AbstractSparseAutoencoder):
    """BatchTopK SAE. Attributes (besides AbstractSparseAutoencoder's):

      k: mean active latents per example in training, 1 <= k <= n_latents.
      threshold_decay: EMA decay of the inference threshold estimate, in [0, 1).

    Raises:
      ValueError: at construction, for k <= 0 or k > n_latents, or a decay outside [0, 1).
    """

    k: int = 32
    threshold_decay: float = 0.99

    def __post_init__(self):
        check_k("k", self.k, self.n_latents)
        if not 0.0 <= self.threshold_decay < 1.0:
            raise ValueError(f"threshold_decay must be in [0, 1), got {self.threshold_decay}.")
        super().__post_init__()

    def setup(self):
        super().setup()
        self.threshold_ema = self.variable(STATE, "threshold_ema", jnp.zeros, (), jnp.float32)
        self.threshold_updates = self.variable(STATE, "threshold_updates", jnp.zeros, (), jnp.int32)

    def threshold(self) -> jax.Array:
        """[] the inference threshold theta (bias-corrected EMA; 0 before training)."""
        t = self.threshold_updates.value
        return jnp.where(
            t > 0, self.threshold_ema.value / (1 - self.threshold_decay ** t.astype(jnp.float32)), 0.0
        )

    def latents(self, x_n, b, *, train):
        pre = self.pre_activations(x_n, b)
        if not train:
            return jnp.where(pre > self.threshold(), jax.nn.relu(pre), 0.0), pre, {}
        code = batch_topk_code(pre, self.k)
        if self.is_mutable_collection(STATE) and not self.is_initializing():
            kept = jax.lax.stop_gradient(code)
            smallest = jnp.min(jnp.where(kept > 0, kept, jnp.inf))
            smallest = jnp.where(jnp.isfinite(smallest), smallest, self.threshold())
            d = self.threshold_decay
            self.threshold_ema.value = d * self.threshold_ema.value + (1 - d) * smallest
            self.threshold_updates.value = self.threshold_updates.value + 1
        return code, pre, {}
