"""The contractive penalty ||J_f(x)||_F^2 of any encoder f (Rifai et al., ICML 2011).

Three ways to compute the squared Frobenius norm of the Jacobian J_f(x) = d f(x) / d x [H, D]:

- exact, forward mode (`jax.jacfwd`): D Jacobian-vector products, cheaper when D < H;
- exact, reverse mode (`jax.jacrev`): H vector-Jacobian products, cheaper when H <= D;
  "auto" picks the cheaper of the two from the shapes (`choose_method`);
- stochastic (Hutchinson): E_v ||J v||^2 = ||J||_F^2 for probes with E[v v^T] = I (Rademacher or
  standard Gaussian), k Jacobian-vector products for k probes; unbiased, variance O(1/k).

And Rifai's closed form for one sigmoid layer h = sigmoid(W^T x + b), `sigmoid_layer_closed_form`,
the only contractive penalty in most public code.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from aejax.models.base import AutoencoderOutput
from aejax.models.mlp import FIRST_ENCODER, encoder_layer
from aejax.regularizers.registry import register

EXACT_METHODS = ("auto", "jacfwd", "jacrev")
METHODS = (*EXACT_METHODS, "hutchinson", "closed_form")
PROBES = ("rademacher", "gaussian")

# fn: [B, *input_shape] -> [B, H], each output row depending on its own input row only.
EncoderFn = Callable[[jax.Array], jax.Array]


def choose_method(d_in: int, d_code: int) -> str:
    """The cheaper exact Jacobian mode.

    Returns:
      "jacfwd" (d_in JVPs) iff d_in < d_code, else "jacrev" (d_code VJPs).
    """
    return "jacfwd" if d_in < d_code else "jacrev"


def _per_example(fn: EncoderFn, event_shape: tuple[int, ...]) -> Callable[[jax.Array], jax.Array]:
    """fn on one flattened example: [D] -> [H], by applying fn to the batch of one x[None]."""

    def single(x_flat: jax.Array) -> jax.Array:
        return fn(x_flat.reshape(1, *event_shape))[0].reshape(-1)

    return single


def encoder_jacobian(fn: EncoderFn, x: jax.Array, method: str = "auto") -> jax.Array:
    """Exact per-example Jacobians of fn with respect to its (flattened) input.

    Args:
      fn: per-example function [B, *input_shape] -> [B, H] (e.g. an encoder); rows must not
        interact across the batch.
      x: [B, *input_shape] where to differentiate.
      method: "auto", "jacfwd" or "jacrev".

    Returns:
      [B, H, D] with D = prod(input_shape): entry [b, i, j] = d fn(x)_{b, i} / d x_{b, j}.

    Raises:
      ValueError: for a method other than "auto", "jacfwd", "jacrev".
    """
    if method not in EXACT_METHODS:
        raise ValueError(f"Unknown exact Jacobian method {method!r}. Known: {', '.join(EXACT_METHODS)}.")
    batch_size, event_shape = x.shape[0], tuple(x.shape[1:])
    d_in = math.prod(event_shape)
    if method == "auto":
        d_code = math.prod(jax.eval_shape(fn, x[:1]).shape[1:])  # shapes only, no compute
        method = choose_method(d_in, d_code)
    jac = jax.jacfwd if method == "jacfwd" else jax.jacrev
    return jax.vmap(jac(_per_example(fn, event_shape)))(x.reshape(batch_size, d_in))


def jacobian_frobenius_sq(
    fn: EncoderFn,
    x: jax.Array,
    *,
    method: str = "auto",
    rng: jax.Array | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
) -> jax.Array:
    """Per-example ||J_fn(x_b)||_F^2 = sum_ij (d fn(x)_{b, i} / d x_{b, j})^2.

    Args:
      fn: per-example function [B, *input_shape] -> [B, H]; Hutchinson differentiates the batched
        fn, so rows must not interact (no batch norm in train mode).
      x: [B, *input_shape] where to differentiate.
      method: "auto" | "jacfwd" | "jacrev" (exact) or "hutchinson" (stochastic, unbiased).
      rng: PRNG key for the Hutchinson probes.
      num_probes: k, Hutchinson probes per example; the estimate averages ||J v_t||^2 over t = 1..k.
      probe: "rademacher" (lower variance) or "gaussian" v ~ N(0, I), both in input space.

    Returns:
      [B] squared Frobenius norms, in (code units / input units)^2.

    Raises:
      ValueError: for an unknown method or probe (listing the known ones), "closed_form" (use
        `sigmoid_layer_closed_form`), Hutchinson without rng, or num_probes < 1.
    """
    if method == "closed_form":
        raise ValueError("closed_form needs the layer's h and W: call sigmoid_layer_closed_form(h, W).")
    if method in EXACT_METHODS:
        jac = encoder_jacobian(fn, x, method)  # [B, H, D]
        return jnp.sum(jnp.square(jac), axis=(1, 2))
    if method != "hutchinson":
        raise ValueError(f"Unknown contractive method {method!r}. Known: {', '.join(METHODS)}.")
    if rng is None:
        raise ValueError("The hutchinson method needs rng (a PRNG key for the probes).")
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}.")
    if probe not in PROBES:
        raise ValueError(f"Unknown probe {probe!r}. Known: {', '.join(PROBES)}.")
    shape = (num_probes, *x.shape)
    if probe == "rademacher":
        v = jax.random.rademacher(rng, shape, dtype=x.dtype)  # [k, B, *input_shape]
    else:
        v = jax.random.normal(rng, shape, dtype=x.dtype)
    # x is shared by the k probes, so only the tangents are batched: k JVPs of the batched fn.
    jv = jax.vmap(lambda t: jax.jvp(fn, (x,), (t,))[1])(v)  # [k, B, H]
    return jnp.mean(jnp.sum(jnp.square(jv.reshape(num_probes, x.shape[0], -1)), axis=2), axis=0)


def sigmoid_layer_closed_form(h: jax.Array, w: jax.Array) -> jax.Array:
    """||J||_F^2 of one sigmoid layer h = sigmoid(W^T x + b), closed form (Rifai et al., ICML 2011).

    J_ij = h_i (1 - h_i) W_ji, so ||J||_F^2 = sum_i (h_i (1 - h_i))^2 sum_j W_ji^2.

    Args:
      h: [B, K] the sigmoid code of the layer.
      w: [D, K] the layer's kernel (Flax Dense layout, input axis first).

    Returns:
      [B] squared Frobenius norms.

    Raises:
      ValueError: if the shapes do not agree.
    """
    if h.ndim != 2 or w.ndim != 2 or h.shape[1] != w.shape[1]:
        raise ValueError(f"Expected h [B, K] and W [D, K], got h {h.shape} and W {w.shape}.")
    col_norms = jnp.sum(jnp.square(w), axis=0)  # [K] sum_j W_ji^2
    return jnp.sum(jnp.square(h * (1.0 - h)) * col_norms[None, :], axis=1)


@register("contractive")
def contractive(
    *,
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Any,
    outputs: AutoencoderOutput,
    rng: jax.Array,
    method: str = "auto",
    num_probes: int = 1,
    probe: str = "rademacher",
) -> jax.Array:
    """The CAE penalty: batch mean of ||J_f(x)||_F^2 of the encoder f (Rifai et al., ICML 2011).

    lambda is the Term weight. The Jacobian is taken at the model input `outputs.input` (for a
    DAE + CAE that is the corrupted x~, where the encoder is applied). The encoder is
    `apply_fn({"params": params}, x, method="encode")`; exact for any encoder with "auto", "jacfwd",
    "jacrev", stochastic with "hutchinson" (`num_probes`, `probe`; draws from rng).

    method="closed_form" is Rifai's one-sigmoid-layer formula: it reads
    `params["encoder_0"]["kernel"]` [D, K] and the code `outputs.code` [B, K], and is right only when
    the code is sigmoid(x W + b) (a one-layer MLP encoder with `code_activation="sigmoid"`); it
    cannot check the activation.

    Returns:
      [] mean over the batch of the squared Frobenius norm, (code units / input units)^2.

    Raises:
      ValueError: for an unknown method (listing the methods); for "closed_form" when the encoder
        has more than one layer ("encoder_1" in params) or no "encoder_0" kernel.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown contractive method {method!r}. Known: {', '.join(METHODS)}.")
    if method == "closed_form":
        del apply_fn, batch, rng
        if encoder_layer(1) in params or FIRST_ENCODER not in params:
            raise ValueError(
                "contractive method='closed_form' needs a one-layer encoder (params 'encoder_0' "
                f"only); got params {sorted(params)}. Use method='auto' for deeper encoders."
            )
        return jnp.mean(sigmoid_layer_closed_form(outputs.code, params[FIRST_ENCODER]["kernel"]))

    def encode(x: jax.Array) -> jax.Array:
        return apply_fn({"params": params}, x, method="encode")

    x = outputs.input
    sq = jacobian_frobenius_sq(encode, x, method=method, rng=rng, num_probes=num_probes, probe=probe)
    return jnp.mean(sq)
