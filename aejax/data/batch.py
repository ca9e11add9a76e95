"""The batch every model, loss and regularizer receives."""

from typing import NamedTuple

import jax


class Batch(NamedTuple):
    """One (global or host-local) batch.

    Attributes:
      x: [B, *input_shape] float32 inputs; images are [B, H, W, C] with pixels in [0, 1].
      label: [B] int32 class labels (-1 where a dataset has none).
    """

    x: jax.Array
    label: jax.Array
