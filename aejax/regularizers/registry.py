"""The regularizer registry: one decorator, one lookup, one list of names.

A regularizer is a keyword-only pure function

    fn(*, params, apply_fn, batch, outputs, rng, **hparams) -> jax.Array  # [] batch mean

with `params` the model's "params" collection, `apply_fn` the model's `apply` (the encoder alone is
`apply_fn({"params": params}, x, method="encode")`), `batch` the clean `Batch`, `outputs` the
`(decoder_output, aux)` of the forward pass on the model input, `rng` a PRNG key for stochastic
penalties, and `hparams` Python values closed over by the caller (never traced). Adding
`aejax/regularizers/my_penalty.py` with `@register("my_penalty")` is the whole change: the package
imports every module it holds.
"""

from collections.abc import Callable
from typing import Any, Protocol

import jax

from aejax.data.batch import Batch

# Optional aux key: the array the model was applied to, [B, *input_shape]. A loss whose model input
# differs from batch.x (a DAE feeds the corrupted x~) sets it; penalties at the model input read it.
MODEL_INPUT_KEY = "input"


class Regularizer(Protocol):
    def __call__(
        self,
        *,
        params: Any,
        apply_fn: Callable[..., Any],
        batch: Batch,
        outputs: tuple[jax.Array, dict[str, jax.Array]],
        rng: jax.Array,
        **hparams: Any,
    ) -> jax.Array: ...


_REGISTRY: dict[str, Regularizer] = {}


def register(name: str) -> Callable[[Regularizer], Regularizer]:
    """Decorator that registers a regularizer under `name` and returns it unchanged.

    Raises:
      ValueError: if `name` is already registered (two files claiming one name is a bug).
    """

    def decorator(fn: Regularizer) -> Regularizer:
        if name in _REGISTRY:
            raise ValueError(f"Regularizer {name!r} is already registered (by {_REGISTRY[name].__module__}).")
        _REGISTRY[name] = fn
        return fn

    return decorator


def get(name: str) -> Regularizer:
    """The regularizer registered under `name`.

    Raises:
      KeyError: for an unknown name; the message lists the known names.
    """
    if name not in _REGISTRY:
        raise KeyError(f"Unknown regularizer {name!r}. Known regularizers: {', '.join(known())}.")
    return _REGISTRY[name]


def known() -> list[str]:
    """Sorted names of all registered regularizers."""
    return sorted(_REGISTRY)


def model_input(batch: Batch, outputs: tuple[jax.Array, dict[str, jax.Array]]) -> jax.Array:
    """The array the model was applied to: `aux["input"]` if set (DAE: x~), else `batch.x`.

    Returns:
      [B, *input_shape].
    """
    aux = outputs[1]
    return aux[MODEL_INPUT_KEY] if MODEL_INPUT_KEY in aux else batch.x
