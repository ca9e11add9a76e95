"""Declared input transforms of a config (`config.transforms`): scaling, z-normalisation and binarisation.

    config.transforms = dict(scale="auto", standardize="none", binarize="none", threshold=0.5)

Applied in this order to both splits (`apply_splits`):
- scale: "auto" divides integer pixels by 255 (uint8 0..255 -> [0, 1]) unless the split is already 0/1 (e.g.
  TFDS `binarized_mnist`), and leaves float data as it is; "none" only casts to float32.
- standardize (z-normalisation, z = (x - mean) / std; a constant feature gets std 1):
  - "none";
  - "per_feature": one mean and std per entry of the last axis (a vector's feature, a series' or an image's
    channel), pooled over the examples and every other axis (the valid steps only, `Split.mask`), fitted on the
    *train* split and applied to both, so nothing of the test split leaks into the inputs;
  - "per_series": every series [T, C] by its own mean and std per channel over its valid steps (the UCR
    convention; series data only), so no statistics cross examples.
  Padding after a series' length stays zero.
- binarize (after scaling; needs values in [0, 1], so not with standardize):
  - "none";
  - "static": x > threshold, the same for every step;
  - "dynamic": a fresh Bernoulli(x) sample of every training batch at every step (the standard protocol for
    binarised MNIST likelihoods, e.g. Burda et al. 2016), drawn from `np.random.default_rng([seed, step,
    process])`, so a resumed run sees the same samples; evaluation splits are binarised once with a fixed seed.
"""

from typing import NamedTuple

import ml_collections
import numpy as np

from aejax.data.batch import Split

SCALES = ("auto", "none")
STANDARDIZE = ("none", "per_feature", "per_series")
BINARIZE = ("none", "static", "dynamic")
_EVAL_BINARIZE_SEED = 12345  # one fixed sample of each evaluation split, the same for every run


class Transforms(NamedTuple):
    """The transforms of a config.

    Attributes:
      scale: one of SCALES.
      binarize: one of BINARIZE.
      threshold: the "static" threshold, in (0, 1).
      standardize: one of STANDARDIZE.
    """

    scale: str = "auto"
    binarize: str = "none"
    threshold: float = 0.5
    standardize: str = "none"

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict | dict | None) -> "Transforms":
        """`config.transforms` (a missing one means the defaults).

        Raises:
          ValueError: for an unknown scale, standardisation or binarisation (listing the known ones), a threshold
            outside (0, 1), or binarisation of standardised values.
        """
        t = cls(**(dict(cfg) if cfg else {}))
        if t.scale not in SCALES:
            raise ValueError(f"Unknown config.transforms.scale {t.scale!r}. Known: {', '.join(SCALES)}.")
        if t.binarize not in BINARIZE:
            raise ValueError(f"Unknown config.transforms.binarize {t.binarize!r}. Known: {', '.join(BINARIZE)}.")
        if not 0.0 < t.threshold < 1.0:
            raise ValueError(f"config.transforms.threshold must be in (0, 1), got {t.threshold}.")
        if t.standardize not in STANDARDIZE:
            raise ValueError(
                f"Unknown config.transforms.standardize {t.standardize!r}. Known: {', '.join(STANDARDIZE)}."
            )
        if t.standardize != "none" and t.binarize != "none":
            raise ValueError(
                f"config.transforms.binarize={t.binarize!r} needs values in [0, 1], which "
                f"standardize={t.standardize!r} does not give; set one of them to 'none'."
            )
        return t


def scale(x: np.ndarray, how: str = "auto") -> np.ndarray:
    """[N, ...] -> float32 [N, ...]: integer pixels / 255 for "auto" (unless they are already 0/1)."""
    out = x.astype(np.float32)
    if how == "auto" and np.issubdtype(x.dtype, np.integer) and x.size and x.max() > 1:
        out /= np.float32(255.0)
    return out


def bernoulli_sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 float32 sample with P(1) = x elementwise; x must lie in [0, 1]."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def _check_unit_interval(x: np.ndarray, what: str) -> None:
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"Binarisation ({what}) needs inputs in [0, 1], got [{x.min():.3g}, {x.max():.3g}]; "
            "use config.transforms.scale='auto' on pixels, or no binarisation."
        )


class Standardizer(NamedTuple):
    """Per-feature z-normalisation z = (x - mean) / std with statistics of a training split.

    Attributes:
      mean: [F] means of the entries of the last axis. std: [F] standard deviations (1 for a constant feature).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, mask: np.ndarray | None = None) -> "Standardizer":
        """Fits on x [N, ..., F], pooled over every axis but the last; with a mask [N, T] (series [N, T, F])
        only the valid steps count."""
        values = x.reshape(-1, x.shape[-1]) if mask is None else x[mask > 0]  # [M, F]
        mean = values.mean(axis=0)
        return cls(mean, _nonzero_std(values.std(axis=0), mean))

    def apply(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """[N, ..., F] -> [N, ..., F] float32 standardised; padding (mask 0) set to zero."""
        return _zero_padding(((x - self.mean) / self.std).astype(np.float32), mask)


def _nonzero_std(std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # A constant feature leaves a rounding residue (std 7e-9 for seven float32 0.1s), not 0: treat a std within
    # a few float32 ulps of the mean as 0, and divide by 1 there.
    return np.where(std > 4 * np.finfo(np.float32).eps * np.abs(mean), std, 1.0)


def _zero_padding(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x if mask is None else np.where(mask[..., None] > 0, x, 0.0).astype(np.float32)


def per_series(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Each series [T, C] of x [N, T, C] z-normalised by its own mean and std per channel over its valid steps
    (std 1 where a channel is constant); float32, padding zero.

    Raises:
      ValueError: if x is not [N, T, C].
    """
    if x.ndim != 3:
        raise ValueError(f"standardize='per_series' needs series [N, T, C], got shape {x.shape}.")
    w = np.ones(x.shape[:2]) if mask is None else (mask > 0).astype(np.float64)
    w = w[..., None] / w.sum(axis=1)[:, None, None]  # [N, T, 1] weights of the valid steps, summing to 1
    mean = (x * w).sum(axis=1, keepdims=True)
    std = np.sqrt((np.square(x - mean) * w).sum(axis=1, keepdims=True))
    return _zero_padding(((x - mean) / _nonzero_std(std, mean)).astype(np.float32), mask)


def fit(train: Split, t: Transforms) -> Standardizer | None:
    """The train statistics `apply` needs for standardize="per_feature" (None for the other settings), of the
    train split after scaling."""
    if t.standardize != "per_feature":
        return None
    return Standardizer.fit(scale(train.x, t.scale), train.mask)


def apply(split: Split, t: Transforms, *, train: bool, standardizer: Standardizer | None = None) -> Split:
    """The split as the model sees it, except for dynamic binarisation of training batches.

    Scales; standardises (per feature with `standardizer`, the train statistics of `fit`, or per series);
    binarises statically, or (dynamic, evaluation splits only: `train=False`) samples once with a fixed seed. A
    training split with dynamic binarisation stays grey: the loader samples every batch (`dynamic_binarizer`).

    Raises:
      ValueError: if binarisation is asked for data outside [0, 1], standardize="per_feature" comes without a
        standardizer, or "per_series" with data that is not series.
    """
    x = scale(split.x, t.scale)
    if t.standardize == "per_feature":
        if standardizer is None:
            raise ValueError("standardize='per_feature' needs the train statistics: `transforms.fit(train, t)`.")
        x = standardizer.apply(x, split.mask)
    elif t.standardize == "per_series":
        x = per_series(x, split.mask)
    if t.binarize != "none":
        _check_unit_interval(x, t.binarize)
    if t.binarize == "static":
        x = (x > t.threshold).astype(np.float32)
    elif t.binarize == "dynamic" and not train:
        x = bernoulli_sample(x, np.random.default_rng(_EVAL_BINARIZE_SEED))
    return split._replace(x=x)


def apply_splits(train: Split, test: Split, t: Transforms) -> tuple[Split, Split]:
    """(train, test) as the model sees them: `apply` to both, per-feature statistics from `train` only.

    Raises:
      ValueError: as `apply`.
    """
    standardizer = fit(train, t)
    return apply(train, t, train=True, standardizer=standardizer), apply(
        test, t, train=False, standardizer=standardizer
    )


def dynamic_binarizer(t: Transforms, seed: int, process_index: int = 0):
    """The per-step transform of training batches: `fn(x [b, ...], step) -> x` (None when there is none).

    Each step draws from `np.random.default_rng([seed, step, process_index])`: a pure function of the step.
    """
    if t.binarize != "dynamic":
        return None

    def binarize(x: np.ndarray, step: int) -> np.ndarray:
        return bernoulli_sample(x, np.random.default_rng([seed, step, process_index]))

    return binarize
