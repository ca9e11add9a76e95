"""TopK / k-sparse autoencoder: keep the k largest pre-activations of each example.

- Makhzani & Frey (2014), "k-Sparse Autoencoders": linear units (`relu=False`), tied weights (`tied=True`), the
  k largest activities kept in training and the alpha*k largest at test time (`eval_k_multiplier=alpha`).
- Gao et al. (2024), "Scaling and evaluating sparse autoencoders", eq. 2: z = ReLU(TopK(W_enc (x - b_pre) +
  b_enc)) (`relu=True`, untied), with AuxK for dead latents (`aux_k`).

Sparsity is the constraint itself: no penalty term.
"""

import jax

from aejax.models import MODELS
from aejax.models.sae_base import AbstractSparseAutoencoder, check_k, scatter_topk


def topk_code(pre: jax.Array, k: int, *, relu: bool) -> jax.Array:
    """The k largest entries of each row of pre [B, n] (by value), others 0; ReLU after the top-k if relu.

    `jax.lax.top_k` per example: exactly k entries are kept (ties broken by index). Returns [B, n].
    """
    vals, idx = jax.lax.top_k(pre, k)  # [B, k]
    return scatter_topk(jax.nn.relu(vals) if relu else vals, idx, pre.shape[1])


@MODELS.register("topk")
class TopKSAE(AbstractSparseAutoencoder):
    """TopK SAE. Attributes (besides AbstractSparseAutoencoder's):

      k: active latents per example in training, 1 <= k <= n_latents.
      relu: ReLU after the top-k (Gao et al.); False keeps linear units (Makhzani & Frey).
      eval_k_multiplier: alpha; evaluation keeps round(alpha * k) latents (capped at n_latents).

    Raises:
      ValueError: at construction, for k <= 0 or k > n_latents, or alpha <= 0.
    """

    k: int = 32
    relu: bool = True
    eval_k_multiplier: float = 1.0

    def __post_init__(self):
        check_k("k", self.k, self.n_latents)
        if self.eval_k_multiplier <= 0:
            raise ValueError(f"eval_k_multiplier must be > 0, got {self.eval_k_multiplier}.")
        super().__post_init__()

    @property
    def eval_k(self) -> int:
        return max(1, min(self.n_latents, round(self.eval_k_multiplier * self.k)))

    def latents(self, x_n, b, *, train):
        pre = self.pre_activations(x_n, b)
        return topk_code(pre, self.k if train else self.eval_k, relu=self.relu), pre, {}
