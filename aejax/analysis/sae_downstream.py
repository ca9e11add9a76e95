"""What an SAE trained on a language model's activations does to the model: the downstream loss with the
reconstruction spliced in, and the text spans on which a latent fires most.

    ce = spliced_cross_entropy(lm_run, "block_1", sae_model, sae_variables)     # nats per predicted byte
    sae_metrics.loss_recovered(ce["clean"], ce["spliced"], ce["zero"])

The splice follows Gao et al. (2024, sec. 4.1) and Rajamanoharan et al. (2024): the residual stream after the
named layer, h [B, T, d], is replaced at every position by the SAE's reconstruction x_hat(h) (or by zero, the
zero-ablation reference) and the rest of the network runs on it; the loss is the next-byte cross-entropy over
the test windows. The language model is any run whose model has the methods `residual(tokens, layer)` ->
[B, T, d] and `logits_from_residual(h, layer)` -> [B, T, V] (`aejax.models.byte_lm`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis.batched import batched_apply

# Bytes of context shown before and after the token a latent fires on (sae_top_text.md).
SPAN_BEFORE, SPAN_AFTER = 40, 8


def next_token_nll(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy per window: logits [B, T, V] at positions 0..T-2 predict tokens [B, T] at
    1..T-1 -> [B] nats per predicted token."""
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    target = tokens[:, 1:].astype(jnp.int32)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    return jnp.mean(nll, axis=1)


def _three_losses(tokens, lm_variables, sae_variables, *, lm, sae, layer):
    h = lm.apply(lm_variables, tokens, layer, method="residual")  # [B, T, d]
    b, t, d = h.shape
    h_hat = sae.apply(sae_variables, h.reshape(b * t, d)).decoder_output.reshape(b, t, d)

    def loss(h_in):
        return next_token_nll(lm.apply(lm_variables, h_in, layer, method="logits_from_residual"), tokens)

    return jnp.stack([loss(h), loss(h_hat), loss(jnp.zeros_like(h))], axis=1)  # [B, 3]


def spliced_cross_entropy(
    lm, lm_variables, tokens: np.ndarray, layer: str, sae, sae_variables, *, batch_size: int = 64
) -> dict[str, float]:
    """The language model's test loss as it is, with the SAE's reconstruction spliced in at `layer`, and with the
    layer's output zero-ablated.

    Args:
      lm, lm_variables: the language model (methods `residual`, `logits_from_residual`) and its variables.
      tokens: [N, T] int token windows (bytes for the byte-level LM).
      layer: the residual-stream layer the SAE was trained on, e.g. "block_1".
      sae, sae_variables: the sparse autoencoder (`aejax.models.sae_base`), trained on that layer's vectors [d].
      batch_size: windows per jitted call.

    Returns:
      {"clean", "spliced", "zero"}: mean next-token cross-entropy over the N windows, nats per predicted token.
    """
    fn = jax.tree_util.Partial(_three_losses, lm=lm, sae=sae, layer=layer)
    per_window = batched_apply(fn, np.asarray(tokens), lm_variables, sae_variables, batch_size=batch_size)
    clean, spliced, zero = (float(v) for v in np.mean(per_window, axis=0))
    return {"clean": clean, "spliced": spliced, "zero": zero}


def text_span(window: np.ndarray, position: int) -> str:
    """The bytes of `window` [T] around `position`, the byte at `position` in [[ ]], newlines shown as a return
    symbol so a span stays on one line."""

    def show(b: np.ndarray) -> str:
        s = bytes(np.asarray(b, np.uint8)).decode("utf-8", errors="replace")
        return s.replace("\n", "⏎").replace("\t", "→").replace("`", "'")

    lo, hi = max(0, position - SPAN_BEFORE), min(len(window), position + 1 + SPAN_AFTER)
    return (
        f"{show(window[lo:position])}[[{show(window[position : position + 1])}]]{show(window[position + 1 : hi])}"
    )


def top_text_spans(
    code: np.ndarray,
    example: np.ndarray,
    position: np.ndarray,
    windows: np.ndarray,
    latents: np.ndarray,
    m: int,
) -> dict[int, list[tuple[float, str]]]:
    """The m rows on which each latent fires most, as text spans.

    Args:
      code: [N, n] latent activations of the N stored test rows.
      example, position: [N] the window each row came from and its position in it (the activation store's).
      windows: [W, T] the token windows those indices refer to.
      latents: which latents to show.
      m: spans per latent (fewer when a latent fires on fewer rows).

    Returns:
      {latent: [(activation, span), ...]} in decreasing activation.
    """
    out = {}
    for i in latents:
        col = code[:, int(i)]
        top = np.argsort(-col, kind="stable")[:m]
        top = top[col[top] > 0]
        out[int(i)] = [(float(col[r]), text_span(windows[example[r]], int(position[r]))) for r in top]
    return out


def write_spans_markdown(spans: dict[int, list[tuple[float, str]]], freq: np.ndarray, path: str) -> None:
    """One section per latent: its firing frequency and its top spans (activation, then the text)."""
    lines = ["# Top-activating text spans of the most frequent live latents (test split)", ""]
    for i, rows in spans.items():
        lines += [f"## latent {i} (fires on {freq[i]:.2%} of test tokens)", ""]
        lines += [f"- {a:8.3f}  `{s}`" for a, s in rows]
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))
