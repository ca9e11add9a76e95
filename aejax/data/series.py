"""Time series for the sequence autoencoders: checks, z-normalisation, sliding windows, the packed input
format, and the map from window scores back to per-point scores.

Packed format: a sequence model reads `[N, T, C + 1]`, the C channels then a 0/1 validity mask (1 on the first
`length` steps), so variable-length series pass through the shared loaders, sharding and eval (which carry only
x and labels) with their lengths; padding is zero in the channels and 0 in the mask (`pack`, `unpack`).
"""

import importlib
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from aejax.data import builders
from aejax.data.datasets import Split


def check_finite(x: np.ndarray, *, what: str) -> None:
    """Raises ValueError naming `what` and the first bad index if x holds NaN or inf (before any training)."""
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"{what} holds {int(bad.sum())} NaN/inf values (first at index {np.argwhere(bad)[0]}); "
            "fill or drop them before training."
        )


def valid_mask(lengths: np.ndarray, max_length: int) -> np.ndarray:
    """[N, T] bool: True on the first lengths[n] steps of row n."""
    return np.arange(max_length)[None, :] < np.asarray(lengths)[:, None]


def pack(x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """[N, T, C] series (+ [N] lengths, None: all T) -> [N, T, C + 1] float32 with the mask last; padding zeroed.

    Raises:
      ValueError: if x is not [N, T, C], a length is outside [1, T], or a valid value is not finite.
    """
    if x.ndim != 3:
        raise ValueError(f"Series must be [N, T, C], got shape {x.shape}.")
    n, t, _ = x.shape
    lengths = np.full((n,), t, np.int32) if lengths is None else np.asarray(lengths)
    if lengths.shape != (n,) or lengths.min() < 1 or lengths.max() > t:
        raise ValueError(
            f"lengths must be [N={n}] in [1, {t}], got {lengths.shape} in [{lengths.min()}, {lengths.max()}]."
        )
    mask = valid_mask(lengths, t)
    check_finite(x[mask], what="the series")
    x = np.where(mask[..., None], x, 0.0).astype(np.float32)
    return np.concatenate([x, mask[..., None].astype(np.float32)], axis=-1)


def unpack(packed):
    """[..., T, C + 1] -> (x [..., T, C], mask [..., T]); works on numpy and jax arrays."""
    return packed[..., :-1], packed[..., -1]


class ZNorm(NamedTuple):
    """Per-channel z-normalisation (x - mean) / std, fitted on the valid steps of training data only.

    Attributes:
      mean: [C] channel means. std: [C] channel standard deviations (> 0; 1 for a constant channel).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, lengths: np.ndarray | None = None) -> "ZNorm":
        """Fits on x [N, T, C] (only the first lengths[n] steps of each row count)."""
        mask = valid_mask(lengths, x.shape[1]) if lengths is not None else np.ones(x.shape[:2], bool)
        values = x[mask]  # [M, C]
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[..., C] -> [..., C] float32 normalised (padding is re-zeroed by `pack`)."""
        return ((x - self.mean) / self.std).astype(np.float32)


def window_starts(num_points: int, length: int, stride: int) -> np.ndarray:
    """Start indices of sliding windows over T points: 0, s, 2s, ..., plus T - L when the stride would leave
    the last points uncovered, so every point lies in at least one window.

    Raises:
      ValueError: if the window is longer than the series, or length or stride is not positive.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"Window length and stride must be positive, got length={length}, stride={stride}.")
    if length > num_points:
        raise ValueError(f"Window length {length} is longer than the series ({num_points} points).")
    starts = np.arange(0, num_points - length + 1, stride)
    if starts[-1] != num_points - length:
        starts = np.append(starts, num_points - length)
    return starts


def sliding_windows(series: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, C] -> (windows [W, L, C], starts [W]) with the starts of `window_starts`.

    Raises:
      ValueError: as `window_starts`, or if the series holds NaN/inf.
    """
    check_finite(series, what="the series")
    starts = window_starts(len(series), length, stride)
    return np.stack([series[s : s + length] for s in starts]), starts


def point_scores(window_scores: np.ndarray, starts: np.ndarray, length: int, num_points: int) -> np.ndarray:
    """Per-point scores from window scores: point i gets the mean over the windows that contain it.

    Args:
      window_scores: [W] one score per window (spread over its L points) or [W, L] a score per step of each
        window (point i takes step i - start of every window covering it).
      starts: [W] window starts. length: L. num_points: T.

    Returns:
      [T] float64; a point no window covers is NaN.
    """
    w = np.asarray(window_scores, np.float64)
    per_step = w if w.ndim == 2 else np.repeat(w[:, None], length, axis=1)  # [W, L]
    idx = starts[:, None] + np.arange(length)[None, :]  # [W, L] point index of each step
    total = np.zeros(num_points)
    count = np.zeros(num_points)
    np.add.at(total, idx, per_step)
    np.add.at(count, idx, 1.0)
    with np.errstate(invalid="ignore"):
        return total / count


class AnomalySeries(NamedTuple):
    """A long series with per-point labels: values [T, C] float32, anomaly [T] int32 0/1."""

    values: np.ndarray
    anomaly: np.ndarray


def load_anomaly_series(name: str, split: str, *, data_dir: str | None = None) -> AnomalySeries:
    """The one record of a bundled anomaly builder (e.g. `kdd_tsad_135`) with its per-point labels.

    Raises:
      ValueError: if the builder does not store one series with an "anomaly" feature.
    """
    importlib.import_module(f"{builders.__name__}.{name}")
    builder = tfds.builder_cls(name)(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    source = builder.as_data_source(split=split)
    if len(source) != 1 or "anomaly" not in builder.info.features:
        raise ValueError(f"{name!r} is not a single-series anomaly dataset (needs one record with 'anomaly').")
    record = source[0]
    return AnomalySeries(np.asarray(record["series"], np.float32), np.asarray(record["anomaly"], np.int32))


def to_split(windows: np.ndarray, labels: np.ndarray | None = None) -> Split:
    """Fixed-length windows [W, L, C] as a packed `Split` (lengths all L, labels -1 unless given)."""
    n = len(windows)
    return Split(
        x=pack(windows, None),
        labels=np.full((n,), -1, np.int32) if labels is None else np.asarray(labels, np.int32),
        lengths=np.full((n,), windows.shape[1], np.int32),
        kind="series",
    )
