"""The language-model objective "lm": next-byte cross-entropy of a causal byte model (`aejax.byte_lm.ByteLM`).

A batch holds windows x [B, T] of bytes (`pystdlib` "tokens"); the model reads x[:, :T-1] and position t predicts
byte t + 1, so each window gives T - 1 predictions:

    loss = mean_{b, t} -log softmax(f(x_b[:T-1]))_t[x_b[t+1]]      (nats per predicted byte)

Bits per byte = nats / ln 2 (the unit of Shannon 1951 and of byte-level LM tables).
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aejax.byte_lm import ByteLM
from aejax.data.batch import Batch
from aejax.objectives import BITS_PER_BYTE, NATS_PER_BYTE, OBJECTIVES, EvalOutput, Objective, refuse_unsupported

LN2 = math.log(2.0)


def next_byte_nats(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Per-position cross-entropy.

    Args:
      logits: [B, T - 1, 256] the model's logits on tokens[:, :T-1].
      tokens: [B, T] integer bytes.

    Returns:
      [B, T - 1] nats: -log p(tokens[:, t + 1] | tokens[:, :t + 1]).
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:].astype(jnp.int32))


def _tokens(batch: Batch) -> jax.Array:
    # The loader carries the stored uint8 bytes (floats are exact too); the embedding wants integers.
    return batch.x.astype(jnp.int32)


def make_loss_fn(model):
    """loss_fn(params, model_state, batch, rng, step) -> ([] nats per predicted byte, ({"loss/bits_per_byte"},
    model_state))."""

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        del rng, step
        tokens = _tokens(batch)
        nats = next_byte_nats(model.apply({"params": params}, tokens[:, :-1], train=True), tokens).mean()
        return nats, ({"loss/bits_per_byte": nats / LN2}, model_state)

    return loss_fn


def make_eval_fn(model):
    """eval_fn(params, model_state, batch, rng) -> EvalOutput(metrics {"nats_per_byte", "bits_per_byte"} [B] (the
    mean over each window's T - 1 predictions), code [B, d_model] the last block's residual stream averaged over
    positions)."""
    last = model.layer_names()[-1]

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        del model_state, rng
        variables = {"params": params}
        tokens = _tokens(batch)
        h = model.apply(variables, tokens[:, :-1], last, method="residual")  # [B, T-1, D]
        nats = next_byte_nats(model.apply(variables, h, last, method="logits_from_residual"), tokens).mean(axis=1)
        return EvalOutput(metrics={NATS_PER_BYTE: nats, BITS_PER_BYTE: nats / LN2}, code=h.mean(axis=1))

    return eval_fn


@OBJECTIVES.register("lm")
def from_config(config: ml_collections.ConfigDict, model, likelihood) -> Objective:
    """Next-byte cross-entropy of `model` (a `ByteLM`); no likelihood, corruption or penalties.

    Raises:
      ValueError: if the config sets regularizers or a corruption (`objectives.refuse_unsupported`), or the
        model is not a `ByteLM`.
    """
    del likelihood  # the categorical over 256 bytes is the model's own output
    refuse_unsupported(config, "lm")
    if not isinstance(model, ByteLM):
        raise ValueError(f"The 'lm' objective needs a byte language model (aejax.byte_lm.ByteLM), got {model!r}.")
    return Objective(make_loss_fn(model), make_eval_fn(model))
