"""The typed data containers: `Batch`, what every model, loss and regularizer receives, and `Split`, a whole
split in host memory.

A variable-length series travels with its validity mask as a field (`mask`), never packed into x, so a model or
objective that needs the mask reads `batch.mask` and every other one ignores it.
"""

from typing import NamedTuple

import jax
import numpy as np

KINDS = ("image", "series", "vector", "text")


class Batch(NamedTuple):
    """One (global or host-local) batch.

    Attributes:
      x: [B, *input_shape] float32 inputs; images are [B, H, W, C] with pixels in [0, 1], series [B, T, C]
        (zero after each series' length), vectors [B, D].
      label: [B] int32 class labels (-1 where a dataset has none).
      mask: optional [B, T] float32 validity of the steps of a series: 1 on the first L_b steps, 0 on padding;
        None means every step is valid (and is what non-series data carries).
    """

    x: jax.Array
    label: jax.Array
    mask: jax.Array | None = None


class Split(NamedTuple):
    """One split in memory, as the source stores it (no scaling; see `aejax.data.transforms`).

    Attributes:
      x: [N, *example_shape] the model inputs as stored: images [N, H, W, C] (uint8 0..255 for the digit
        sets, float for patches), series [N, T, C], feature vectors [N, D].
      labels: [N] int32 class labels (-1 where the dataset has none).
      mask: optional [N, T] float32 validity of the steps of variable-length series (1 on the first L_n steps,
        0 on padding); None: every step valid.
      kind: one of KINDS, what x holds ("image", "series", "vector" or "text": [N, T] uint8 byte windows).
    """

    x: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None = None
    kind: str = "vector"

    @property
    def lengths(self) -> np.ndarray | None:
        """[N] int32 valid lengths along axis 1 (None without a mask)."""
        return None if self.mask is None else self.mask.sum(axis=1).astype(np.int32)


def mask_from_lengths(lengths: np.ndarray, max_length: int) -> np.ndarray:
    """[N] valid lengths -> [N, T] float32 mask, 1 on the first lengths[n] steps of row n.

    Raises:
      ValueError: if lengths is not [N] or a length is outside [1, T].
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (len(lengths) and (lengths.min() < 1 or lengths.max() > max_length)):
        raise ValueError(f"lengths must be [N] in [1, {max_length}], got shape {lengths.shape}.")
    return (np.arange(max_length)[None, :] < lengths[:, None]).astype(np.float32)
