"""Time series for the sequence autoencoders: checks, sliding windows, and the map from window scores back to
per-point scores.

A series split is `[N, T, C]` with its lengths as the optional `Split.mask` ([N, T], 1 on the first L_n steps;
None when every series has all T steps), which the loaders carry on `Batch.mask`; z-normalisation is the declared
transform `aejax.data.transforms` (`standardize`).
"""

import importlib
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from aejax.data import builders, datasets
from aejax.data.batch import Split


def check_finite(x: np.ndarray, *, what: str) -> None:
    """Raises ValueError naming `what` and the first bad index if x holds NaN or inf (before any training)."""
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"{what} holds {int(bad.sum())} NaN/inf values (first at index {np.argwhere(bad)[0]}); "
            "fill or drop them before training."
        )


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
    builder = datasets.prepare(lambda: tfds.builder_cls(name)(data_dir=data_dir, file_format="array_record"))
    source = builder.as_data_source(split=split)
    if len(source) != 1 or "anomaly" not in builder.info.features:
        raise ValueError(f"{name!r} is not a single-series anomaly dataset (needs one record with 'anomaly').")
    record = source[0]
    return AnomalySeries(np.asarray(record["series"], np.float32), np.asarray(record["anomaly"], np.int32))


def to_split(windows: np.ndarray, labels: np.ndarray | None = None) -> Split:
    """Fixed-length windows [W, L, C] as a series `Split` (float32, no mask: every step valid; labels -1 unless
    given).

    Raises:
      ValueError: if the windows are not [W, L, C] or hold NaN/inf.
    """
    if windows.ndim != 3:
        raise ValueError(f"Windows must be [W, L, C], got shape {windows.shape}.")
    check_finite(windows, what="the windows")
    n = len(windows)
    return Split(
        x=np.asarray(windows, np.float32),
        labels=np.full((n,), -1, np.int32) if labels is None else np.asarray(labels, np.int32),
        kind="series",
    )
