"""Inpainting: fill the missing pixels of an image from the observed ones, measured on the missing pixels only.

Masks (`make_missing`): a centred 12 x 12 square, the right half, and random pixels with 50% or 80% missing
(independent per image, seeded). Fills, each keeping every observed pixel exactly:

- the mean training image on the missing pixels;
- iterated projection (`iterated_projection`): x_miss <- P(x)_miss, x_obs kept, until it settles. P is the
  projection onto the top-k principal subspace (`pca_projector`; the fixed point is the least-squares fit of the
  observed pixels in that subspace, as in PCA with missing values, e.g. Ilin & Raiko 2010) or the autoencoder's
  reconstruction r(x) (the "iterated reconstruction" of a DAE / autoencoder as a projection onto its manifold);
- pseudo-Gibbs sampling with a VAE (`pseudo_gibbs`; Rezende et al. 2014, sec. 5.2 and appendix F): z ~ q(z | x),
  x_miss ~ p(x_miss | z), repeated; the fill is the mean of E[x_miss | z_t] over the steps after burn-in.

Metric (`missing_pixel_errors`): the squared error summed over the missing pixels of each image, and the PSNR
(dB, peak 1) of the mean squared error over the missing pixels.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from sklearn.decomposition import PCA

MASKS = ("center12", "right_half", "random50", "random80")
MAX_PSNR_MSE = 1e-10  # a perfect fill has PSNR 100 dB, not infinity


def make_missing(name: str, shape: tuple[int, ...], num: int, *, seed: int = 0) -> np.ndarray:
    """[num, *shape] bool, True where a pixel is missing.

    Args:
      name: one of MASKS.
      shape: an image's shape (H, W) or (H, W, C); a pixel's channels are missing together.
      num: number of images.
      seed: for the random masks (each image draws its own pixels from `default_rng([seed, index of name])`).

    Raises:
      KeyError: for an unknown mask name, listing the known ones.
      ValueError: for an image smaller than 12 x 12 (center12) or not at least 2-D.
    """
    if name not in MASKS:
        raise KeyError(f"Unknown mask {name!r}; known: {', '.join(MASKS)}.")
    if len(shape) < 2:
        raise ValueError(f"Masks need images [H, W(, C)], got shape {shape}.")
    h, w = shape[:2]
    plane = np.zeros((num, h, w), bool)
    if name == "center12":
        if h < 12 or w < 12:
            raise ValueError(f"A 12 x 12 square does not fit into {h} x {w} images.")
        top, left = (h - 12) // 2, (w - 12) // 2
        plane[:, top : top + 12, left : left + 12] = True
    elif name == "right_half":
        plane[:, :, w // 2 :] = True
    else:
        fraction = {"random50": 0.5, "random80": 0.8}[name]
        plane = np.random.default_rng([seed, MASKS.index(name)]).random((num, h, w)) < fraction
    return np.broadcast_to(plane.reshape(num, h, w, *([1] * (len(shape) - 2))), (num, *shape)).copy()


def applicable_masks(shape: tuple[int, ...]) -> tuple[str, ...]:
    """The masks of MASKS that fit images of `shape` (H, W(, C)): center12 needs H, W >= 12 (not the 8 x 8
    sklearn digits)."""
    return tuple(m for m in MASKS if m != "center12" or min(shape[:2]) >= 12)


def masked_input(x: np.ndarray, missing: np.ndarray, value: float = 0.0) -> np.ndarray:
    """x with the missing pixels set to `value` (0: what masking noise does to a DAE's input)."""
    return np.where(missing, np.asarray(value, x.dtype), x)


def missing_pixel_errors(
    fill: np.ndarray, truth: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(sq_err [N], psnr [N]) on the missing pixels only.

    Args:
      fill, truth: [N, ...] images in [0, 1]; missing: [N, ...] bool. Observed pixels do not count.

    Returns:
      sq_err: squared error summed over each image's missing pixels; psnr: 10 log10(1 / mse) dB with mse the
      mean squared error over its missing pixels (floored at 1e-10, so at most 100 dB).

    Raises:
      ValueError: on differing shapes, or an image with no missing pixel.
    """
    if not fill.shape == truth.shape == missing.shape:
        raise ValueError(
            f"fill {fill.shape}, truth {truth.shape} and missing {missing.shape} must have one shape."
        )
    n = len(fill)
    m = missing.reshape(n, -1)
    count = m.sum(axis=1)
    if np.any(count == 0):
        raise ValueError(f"{int(np.sum(count == 0))} images have no missing pixel.")
    diff = (np.asarray(fill, np.float64) - np.asarray(truth, np.float64)).reshape(n, -1)
    sq_err = np.sum(np.where(m, diff * diff, 0.0), axis=1)
    psnr = 10.0 * np.log10(1.0 / np.maximum(sq_err / count, MAX_PSNR_MSE))
    return sq_err, psnr


class Fill(NamedTuple):
    """x: [N, ...] the filled images (observed pixels exactly the input's); iterations: [N] projections applied
    to each image; converged: [N] bool, whether it settled before the cap."""

    x: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def iterated_projection(
    project: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    missing: np.ndarray,
    *,
    init: np.ndarray | float,
    max_iters: int = 100,
    tol: float = 1e-4,
) -> Fill:
    """Fills the missing pixels by x_miss <- project(x)_miss with the observed pixels kept, until it settles.

    An image settles (and stops changing) when no pixel moves by more than `tol` in one step.

    Args:
      project: [N, ...] -> [N, ...], e.g. a PCA projection or an autoencoder's reconstruction r(x).
      x: [N, ...] images (the values at missing pixels are ignored); missing: [N, ...] bool.
      init: the starting values of the missing pixels, an array broadcastable to x (e.g. the mean image) or a
        number.
      max_iters: the cap on projections per image; tol: the settling threshold (pixel units).

    Raises:
      ValueError: on differing shapes or max_iters < 1.
    """
    if x.shape != missing.shape:
        raise ValueError(f"x {x.shape} and missing {missing.shape} must have one shape.")
    if max_iters < 1:
        raise ValueError(f"max_iters must be >= 1, got {max_iters}.")
    n = len(x)
    current = np.where(missing, np.broadcast_to(np.asarray(init, x.dtype), x.shape), x)
    iterations = np.zeros(n, np.int64)
    active = np.ones(n, bool)
    for _ in range(max_iters):
        if not active.any():
            break
        new = np.where(missing, np.asarray(project(current), x.dtype), x)
        change = np.abs(new - current).reshape(n, -1).max(axis=1)
        current = np.where(active.reshape(n, *([1] * (x.ndim - 1))), new, current)
        iterations += active
        active &= change > tol
    return Fill(current, iterations, ~active)


def pca_projector(train_x: np.ndarray, k: int) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """(project, mean image): project(x) = mean + (x - mean) V^T V onto the top-k principal subspace of train_x
    (sklearn PCA, V [k, D]); x [N, ...] shaped like the training images.

    Raises:
      ValueError: if k is not in [1, min(N, D)].
    """
    a = train_x.reshape(len(train_x), -1).astype(np.float64)
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"PCA code size k={k} must be in [1, {min(a.shape)}].")
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(a)
    shape = train_x.shape[1:]

    def project(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float64)
        return pca.inverse_transform(pca.transform(flat)).reshape(len(x), *shape)

    return project, pca.mean_.reshape(shape)


def pseudo_gibbs(
    step: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    missing: np.ndarray,
    *,
    init: np.ndarray | float,
    num_steps: int = 50,
    burn_in: int = 25,
) -> np.ndarray:
    """Pseudo-Gibbs inpainting with a VAE (Rezende et al. 2014, appendix F).

    Args:
      step: (x [N, ...], t) -> (mean [N, ...], sample [N, ...]): E[x | z_t] and a draw of x ~ p(x | z_t) with
        z_t ~ q(z | x) drawn for step t (the caller folds t into its key).
      x: [N, ...] images; missing: [N, ...] bool; init: starting value of the missing pixels.
      num_steps: chain length; burn_in: steps whose means are not averaged (< num_steps).

    Returns:
      [N, ...] the fill: observed pixels of x, and on the missing ones the mean of E[x_miss | z_t] over
      t = burn_in .. num_steps - 1 (the squared-error estimate of E[x_miss | x_obs] under the chain).

    Raises:
      ValueError: unless 0 <= burn_in < num_steps.
    """
    if not 0 <= burn_in < num_steps:
        raise ValueError(f"Need 0 <= burn_in ({burn_in}) < num_steps ({num_steps}).")
    current = np.where(missing, np.broadcast_to(np.asarray(init, x.dtype), x.shape), x)
    total = np.zeros(x.shape, np.float64)
    for t in range(num_steps):
        mean, sample = step(current, t)
        current = np.where(missing, np.asarray(sample, x.dtype), x)
        if t >= burn_in:
            total += mean
    return np.where(missing, (total / (num_steps - burn_in)).astype(x.dtype), x)
