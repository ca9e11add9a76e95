"""Declared input transforms of a config (`config.transforms`): scaling and binarisation.

    config.transforms = dict(scale="auto", binarize="none", threshold=0.5)

- scale: "auto" divides integer pixels by 255 (uint8 0..255 -> [0, 1]) unless the split is already 0/1 (e.g.
  TFDS `binarized_mnist`), and leaves float data as it is; "none" only casts to float32.
- binarize (after scaling; needs values in [0, 1]):
  - "none";
  - "static": x > threshold, the same for every step;
  - "dynamic": a fresh Bernoulli(x) sample of every training batch at every step (the standard protocol for
    binarised MNIST likelihoods, e.g. Burda et al. 2016), drawn from `np.random.default_rng([seed, step,
    process])`, so a resumed run sees the same samples; evaluation splits are binarised once with a fixed seed.
"""

from typing import NamedTuple

import ml_collections
import numpy as np

from aejax.data.datasets import Split

SCALES = ("auto", "none")
BINARIZE = ("none", "static", "dynamic")
_EVAL_BINARIZE_SEED = 12345  # one fixed sample of each evaluation split, the same for every run


class Transforms(NamedTuple):
    """The transforms of a config.

    Attributes:
      scale: one of SCALES.
      binarize: one of BINARIZE.
      threshold: the "static" threshold, in (0, 1).
    """

    scale: str = "auto"
    binarize: str = "none"
    threshold: float = 0.5

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict | dict | None) -> "Transforms":
        """`config.transforms` (a missing one means the defaults).

        Raises:
          ValueError: for an unknown scale or binarisation (listing the known ones) or a threshold outside (0, 1).
        """
        t = cls(**(dict(cfg) if cfg else {}))
        if t.scale not in SCALES:
            raise ValueError(f"Unknown config.transforms.scale {t.scale!r}. Known: {', '.join(SCALES)}.")
        if t.binarize not in BINARIZE:
            raise ValueError(f"Unknown config.transforms.binarize {t.binarize!r}. Known: {', '.join(BINARIZE)}.")
        if not 0.0 < t.threshold < 1.0:
            raise ValueError(f"config.transforms.threshold must be in (0, 1), got {t.threshold}.")
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


def apply(split: Split, t: Transforms, *, train: bool) -> Split:
    """The split as the model sees it, except for dynamic binarisation of training batches.

    Scales; binarises statically, or (dynamic, evaluation splits only: `train=False`) samples once with a
    fixed seed. A training split with dynamic binarisation stays grey: the loader samples every batch
    (`dynamic_binarizer`).

    Raises:
      ValueError: if binarisation is asked for data outside [0, 1].
    """
    x = scale(split.x, t.scale)
    if t.binarize != "none":
        _check_unit_interval(x, t.binarize)
    if t.binarize == "static":
        x = (x > t.threshold).astype(np.float32)
    elif t.binarize == "dynamic" and not train:
        x = bernoulli_sample(x, np.random.default_rng(_EVAL_BINARIZE_SEED))
    return split._replace(x=x)


def dynamic_binarizer(t: Transforms, seed: int, process_index: int = 0):
    """The per-step transform of training batches: `fn(x [b, ...], step) -> x` (None when there is none).

    Each step draws from `np.random.default_rng([seed, step, process_index])`: a pure function of the step.
    """
    if t.binarize != "dynamic":
        return None

    def binarize(x: np.ndarray, step: int) -> np.ndarray:
        return bernoulli_sample(x, np.random.default_rng([seed, step, process_index]))

    return binarize
