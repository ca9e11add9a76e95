"""The regularizer contract and its registry.

A regularizer is a keyword-only pure function

    fn(*, params, apply_fn, batch, outputs, rng, **hparams) -> jax.Array  # [] batch mean

with `params` the model's "params" collection, `apply_fn` the model's `apply` with its other collections
(BatchNorm statistics) already bound and evaluation mode (the encoder alone is
`apply_fn({"params": params}, x, method="encode")`), `batch` the clean `Batch`, `outputs` the
`AutoencoderOutput` of the forward pass (`outputs.code` [B, K], `outputs.input` the array the model was applied
to, x~ for a denoising autoencoder, `outputs.decoder_output`, ...), `rng` a PRNG key for stochastic penalties,
and `hparams` Python values closed over by the caller (never traced). A regularizer's docstring says which
fields it reads. Adding `aejax/regularizers/my_penalty.py` with `@register("my_penalty")` is the whole change:
the package imports every module it holds.
"""

from collections.abc import Callable
from typing import Any, Protocol

import jax

from aejax.data.batch import Batch
from aejax.models.base import AutoencoderOutput
from aejax.registry import Registry


class Regularizer(Protocol):
    def __call__(
        self,
        *,
        params: Any,
        apply_fn: Callable[..., Any],
        batch: Batch,
        outputs: AutoencoderOutput,
        rng: jax.Array,
        **hparams: Any,
    ) -> jax.Array: ...


REGULARIZERS = Registry("regularizer", package="aejax.regularizers")
register = REGULARIZERS.register
get = REGULARIZERS.get
known = REGULARIZERS.known
