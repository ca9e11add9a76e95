"""A small causal byte-level transformer language model: the activation source of the sparse autoencoders
(issue 20). Not an autoencoder, so it lives beside `aejax.models` (whose registry and contract test are for
encoder/decoder pairs); the "lm" job (`aejax.jobs.lm`) trains it through the one loop.

GPT-2-style (Radford et al. 2019): byte embedding plus a learned positional embedding, L pre-LayerNorm blocks
h <- h + Attn(LN(h)), h <- h + MLP(LN(h)) with causal multi-head attention, a final LayerNorm and an untied
unembedding to 256 logits. The residual stream is addressable by layer name, for SAEs and their spliced loss:

    model = ByteLM(context=128, d_model=128, n_layers=2, n_heads=4, d_mlp=512)
    logits = model.apply(variables, tokens)                                 # [B, T, 256]
    h = model.apply(variables, tokens, "block_0", method="residual")       # [B, T, d_model]: resid_post
    logits = model.apply(variables, h, "block_0", method="logits_from_residual")   # == the line above's logits

Layer names (`layer_names()`): "embed" (token + position embeddings, before any block), then "block_0", ...,
"block_{L-1}" (the residual stream after that block). The blocks are submodules of those names, so
`capture_intermediates` on them yields the same activations as `residual`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

VOCAB = 256  # bytes
EMBED = "embed"


class Block(nn.Module):
    """One pre-LayerNorm transformer block. __call__: h [B, T, D] -> [B, T, D], the residual stream after it."""

    n_heads: int
    d_mlp: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        t = h.shape[1]
        causal = nn.make_causal_mask(jnp.ones((1, t), jnp.int32))  # [1, 1, T, T]: position t sees s <= t
        a = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, deterministic=True, name="attn")(
            nn.LayerNorm(name="ln_attn")(h), mask=causal
        )
        h = h + a
        m = nn.Dense(self.d_mlp, name="mlp_in")(nn.LayerNorm(name="ln_mlp")(h))
        return h + nn.Dense(h.shape[-1], name="mlp_out")(nn.gelu(m))


class ByteLM(nn.Module):
    """Causal byte-level transformer.

    Attributes:
      context: the longest sequence T it reads (rows of the positional embedding).
      d_model: D, the width of the residual stream.
      n_layers: L, the number of blocks.
      n_heads: attention heads; must divide d_model.
      d_mlp: hidden width of each block's MLP.

    Raises:
      ValueError: at construction, for a non-positive size or n_heads not dividing d_model.
    """

    context: int = 128
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 512

    def __post_init__(self):
        for name in ("context", "d_model", "n_layers", "n_heads", "d_mlp"):
            if getattr(self, name) < 1:
                raise ValueError(f"ByteLM.{name}={getattr(self, name)} must be >= 1.")
        if self.d_model % self.n_heads:
            raise ValueError(f"ByteLM.n_heads={self.n_heads} must divide d_model={self.d_model}.")
        super().__post_init__()

    def setup(self):
        self.embed = nn.Embed(VOCAB, self.d_model, embedding_init=nn.initializers.normal(0.02))
        self.pos_embedding = self.param(
            "pos_embedding", nn.initializers.normal(0.02), (self.context, self.d_model)
        )
        for i in range(self.n_layers):  # attributes, so the submodules are named block_i
            setattr(self, f"block_{i}", Block(self.n_heads, self.d_mlp))
        self.ln_f = nn.LayerNorm()
        self.unembed = nn.Dense(VOCAB)

    def layer_names(self) -> tuple[str, ...]:
        """("embed", "block_0", ..., "block_{L-1}"): where the residual stream can be read."""
        return (EMBED, *(f"block_{i}" for i in range(self.n_layers)))

    def _layer_index(self, layer: str) -> int:
        names = self.layer_names()
        if layer not in names:
            raise KeyError(f"Unknown layer {layer!r} of ByteLM. Known layers: {', '.join(names)}.")
        return names.index(layer)  # 0 for "embed", i + 1 for block_i

    def _check_tokens(self, tokens: jax.Array) -> None:
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be [B, T] integers in 0..255, got {tokens.dtype} {tokens.shape}.")
        if tokens.shape[1] > self.context:
            raise ValueError(f"tokens have T={tokens.shape[1]} positions; the model's context is {self.context}.")

    def residual(self, tokens: jax.Array, layer: str) -> jax.Array:
        """The residual stream after `layer`.

        Args:
          tokens: [B, T] integer bytes 0..255, T <= context.
          layer: one of `layer_names()`.

        Returns:
          [B, T, d_model] float32.

        Raises:
          KeyError: for an unknown layer (listing the known ones); ValueError: for tokens that are not [B, T]
            integers or longer than the context.
        """
        stop = self._layer_index(layer)
        self._check_tokens(tokens)
        h = self.embed(tokens) + self.pos_embedding[None, : tokens.shape[1]]
        for i in range(stop):
            h = getattr(self, f"block_{i}")(h)
        return h

    def logits_from_residual(self, h: jax.Array, layer: str) -> jax.Array:
        """The rest of the network from the residual stream after `layer`: the later blocks, final LayerNorm and
        unembedding. `logits_from_residual(residual(x, L), L)` is `__call__(x)` for every L.

        Args:
          h: [B, T, d_model] residual stream after `layer` (e.g. an SAE's reconstruction of it).
          layer: one of `layer_names()`.

        Returns:
          [B, T, 256] next-byte logits (position t predicts byte t + 1).

        Raises:
          KeyError: for an unknown layer (listing the known ones); ValueError: if h is not [B, T, d_model].
        """
        start = self._layer_index(layer)
        if h.ndim != 3 or h.shape[-1] != self.d_model or h.shape[1] > self.context:
            raise ValueError(f"h must be [B, T <= {self.context}, {self.d_model}], got {h.shape}.")
        for i in range(start, self.n_layers):
            h = getattr(self, f"block_{i}")(h)
        return self.unembed(self.ln_f(h))

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        """Next-byte logits [B, T, 256] of tokens [B, T] (integers 0..255, T <= context); position t sees bytes
        0..t only. `train` is accepted for the loop's convention; the model has no dropout.

        Raises:
          ValueError: for tokens that are not [B, T] integers or longer than the context.
        """
        del train
        return self.logits_from_residual(self.residual(tokens, EMBED), EMBED)


def param_count(params) -> int:
    """The number of scalars in a parameter tree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
