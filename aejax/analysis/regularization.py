"""Numbers that show a regularizer working: code sparsity, denoising error, encoder Jacobian statistics.

- Sparse codes: mean code activation, fraction of near-zero activations, the activation histogram (the Keras
  tutorial's `encoded_imgs.mean()`; Ng's rho_hat per unit).
- Denoising: squared error of reconstructing the clean x from a corrupted x~, and PSNR (Vincent et al. 2010).
- Contraction (Rifai et al., ICML 2011): mean ||J_f(x)||_F, the mean sorted singular values of J_f(x), the
  fraction of saturated sigmoid units (h < 0.05 or h > 0.95), and the contraction ratio
  ||f(x0) - f(x1)|| / ||x0 - x1|| with x1 = x0 + r u, u a random unit direction, against the radius r.

Jacobians are exact (`aejax.regularizers.contractive`) and computed in fixed-size chunks
(`aejax.analysis.batched`) so that each analysis compiles once and memory stays at chunk_size * H * D floats.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aejax import corruptions
from aejax.analysis.batched import batched_apply
from aejax.regularizers.contractive import encoder_jacobian, jacobian_frobenius_sq

# [B, *input_shape] -> [B, ...]: an encoder f (codes [B, H]) or a reconstruction map (x~ -> E[x | f(x~)]).
BatchFn = Callable[[jax.Array], jax.Array]


def _chunked(fn: BatchFn, x: np.ndarray, chunk_size: int) -> np.ndarray:
    """fn over the float32 rows of x in chunks of chunk_size (`batched_apply`): one compilation for any N."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    return batched_apply(fn, np.asarray(x, np.float32), batch_size=chunk_size)


def singular_values(jac: np.ndarray) -> np.ndarray:
    """[B, H, D] -> [B, min(H, D)] singular values, descending, from the eigenvalues of the smaller Gram matrix.

    The float64 Gram matrix J J^T (or J^T J) and a symmetric eigensolver are several times faster on CPU than an
    SVD of J; singular values below ~1e-8 of the largest are not resolved.
    """
    jac = np.asarray(jac, np.float64)
    gram = jac @ jac.transpose(0, 2, 1) if jac.shape[1] <= jac.shape[2] else jac.transpose(0, 2, 1) @ jac
    eig = np.linalg.eigvalsh(gram)[:, ::-1]  # ascending -> descending
    return np.sqrt(np.maximum(eig, 0.0))


class CodeStatistics(NamedTuple):
    """Activation statistics of codes z [N, K].

    Attributes:
      mean_activation: mean of z over examples and units (code units).
      unit_means: [K] rho_hat_j, the mean activation of each unit over the examples.
      fraction_near_zero: fraction of entries with |z| <= zero_tol.
      hist_counts: [bins] histogram counts of all N * K activations.
      hist_edges: [bins + 1] bin edges.
    """

    mean_activation: float
    unit_means: np.ndarray
    fraction_near_zero: float
    hist_counts: np.ndarray
    hist_edges: np.ndarray


def code_statistics(z: np.ndarray, *, zero_tol: float = 0.05, bins: int = 50) -> CodeStatistics:
    """Sparsity statistics of codes.

    Args:
      z: [N, K] codes (e.g. the test set's).
      zero_tol: activations with |z| <= zero_tol count as near zero (code units; 0.05 is the sigmoid
        saturation threshold of Rifai et al. 2011).
      bins: histogram bins over [min(z), max(z)].

    Returns:
      CodeStatistics.

    Raises:
      ValueError: if z is not [N, K] with N, K >= 1.
    """
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or z.size == 0:
        raise ValueError(f"Expected codes [N, K] with N, K >= 1, got shape {z.shape}.")
    counts, edges = np.histogram(z, bins=bins)
    return CodeStatistics(float(z.mean()), z.mean(axis=0), float(np.mean(np.abs(z) <= zero_tol)), counts, edges)


def psnr(x_hat: np.ndarray, x: np.ndarray, *, max_value: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image: 10 log10(max_value^2 / MSE), MSE averaged over the pixels.

    Args:
      x_hat: [N, ...] reconstructions.
      x: [N, ...] clean images, pixels in [0, max_value].
      max_value: the peak pixel value.

    Returns:
      [N] decibels (+inf for a perfect reconstruction).

    Raises:
      ValueError: if the shapes differ or max_value <= 0.
    """
    x_hat, x = np.asarray(x_hat, np.float64), np.asarray(x, np.float64)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {x_hat.shape} and x {x.shape} must have the same shape.")
    if max_value <= 0:
        raise ValueError(f"max_value must be > 0, got {max_value}.")
    mse = np.square(x_hat - x).reshape(len(x), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(max_value**2 / mse)


class DenoisingResult(NamedTuple):
    """Denoising of one corruption over N images.

    Attributes:
      x_tilde: [N, ...] the corrupted inputs.
      recon: [N, ...] reconstructions from x_tilde.
      sq_err: [N] ||recon - x||^2 summed over pixels (the denoising error).
      psnr: [N] PSNR of recon against the clean x, dB.
      corrupted_sq_err: [N] ||x_tilde - x||^2, the error of not denoising at all.
      corrupted_psnr: [N] PSNR of x_tilde, dB.
    """

    x_tilde: np.ndarray
    recon: np.ndarray
    sq_err: np.ndarray
    psnr: np.ndarray
    corrupted_sq_err: np.ndarray
    corrupted_psnr: np.ndarray


def denoising_error(
    reconstruct: BatchFn, x: np.ndarray, corruption: str, rng: jax.Array, *, chunk_size: int = 500, **hparams
) -> DenoisingResult:
    """Error of reconstructing the clean x from x~ ~ C(x~ | x) (Vincent et al. 2010, the denoising criterion).

    Args:
      reconstruct: [B, *input_shape] -> [B, *input_shape] mean reconstruction, e.g.
        `lambda x: likelihood.mean(model.apply(variables, x)[0])`.
      x: [N, *input_shape] clean images, pixels in [0, 1].
      corruption: a name in `aejax.corruptions.CORRUPTIONS`.
      rng: PRNG key of the corruption.
      chunk_size: rows per reconstruction call.
      **hparams: the corruption's hyperparameters (sigma, nu, ...).

    Returns:
      DenoisingResult; squared errors summed over pixels, PSNR with peak 1.

    Raises:
      KeyError: for an unknown corruption. ValueError: for out-of-range hyperparameters.
    """
    x = np.asarray(x, np.float32)
    x_tilde, _ = corruptions.corrupt(corruption, rng, jnp.asarray(x), **hparams)
    x_tilde = np.asarray(x_tilde)
    recon = _chunked(reconstruct, x_tilde, chunk_size)

    def sq(a):
        return np.square(a.astype(np.float64) - x).reshape(len(x), -1).sum(axis=1)

    return DenoisingResult(x_tilde, recon, sq(recon), psnr(recon, x), sq(x_tilde), psnr(x_tilde, x))


def jacobian_norms(encode: BatchFn, x: np.ndarray, *, chunk_size: int = 50, method: str = "auto") -> np.ndarray:
    """Per-example ||J_f(x)||_F of the encoder, exact (Rifai et al. 2011, eq. 2 without the square).

    Args:
      encode: the encoder f, [B, *input_shape] -> [B, H].
      x: [N, *input_shape] points.
      chunk_size: examples per Jacobian computation (memory chunk_size * H * D floats).
      method: "auto", "jacfwd" or "jacrev" (see `jacobian_frobenius_sq`).

    Returns:
      [N] Frobenius norms, code units per input unit.

    Raises:
      ValueError: for an unknown method or chunk_size < 1.
    """
    sq = _chunked(lambda xb: jacobian_frobenius_sq(encode, xb, method=method), x, chunk_size)
    return np.sqrt(sq)


def jacobian_spectrum(encode: BatchFn, x: np.ndarray, *, chunk_size: int = 8) -> np.ndarray:
    """Mean over points of the sorted singular values of J_f(x) (Rifai et al. 2011, Fig. 3).

    Args:
      encode: the encoder f, [B, *input_shape] -> [B, H].
      x: [N, *input_shape] points; the cost is N SVDs of [H, D] matrices, so keep N in the tens to hundreds.
      chunk_size: examples per Jacobian and SVD call.

    Returns:
      [min(H, D)] singular values in descending order, averaged over the N points.

    Raises:
      ValueError: for chunk_size < 1.
    """

    def jacobians(xb):
        return encoder_jacobian(encode, xb)

    # A chunk's [B, H, D] Jacobians at a time (one function object: compiled once), reduced on the host.
    total = sum(
        singular_values(_chunked(jacobians, x[i : i + chunk_size], chunk_size)).sum(axis=0)
        for i in range(0, len(x), max(chunk_size, 1))
    )
    return total / len(x)


def saturated_fraction(h: np.ndarray, *, low: float = 0.05, high: float = 0.95) -> float:
    """Fraction of sigmoid activations in saturation, h < low or h > high (Rifai et al. 2011, Table 1).

    Args:
      h: [N, H] sigmoid codes in (0, 1).
      low, high: the saturation thresholds.

    Returns:
      The fraction of the N * H activations that are saturated, in [0, 1].

    Raises:
      ValueError: unless low < high.
    """
    if not low < high:
        raise ValueError(f"Need low < high, got low={low}, high={high}.")
    h = np.asarray(h)
    return float(np.mean((h < low) | (h > high)))


def random_unit_directions(rng: jax.Array, shape: Sequence[int]) -> np.ndarray:
    """[N, *event_shape] directions uniform on the unit sphere of the flattened event (normalised Gaussians)."""
    v = np.asarray(jax.random.normal(rng, tuple(shape)), np.float64).reshape(shape[0], -1)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).reshape(shape).astype(np.float32)


def contraction_ratios(
    encode: BatchFn,
    x: np.ndarray,
    radii: Sequence[float],
    *,
    rng: jax.Array | None = None,
    directions: np.ndarray | None = None,
    chunk_size: int = 500,
) -> np.ndarray:
    """Contraction ratio ||f(x0) - f(x1)|| / ||x0 - x1||, x1 = x0 + r u (Rifai et al. 2011, Fig. 4).

    For small r the ratio tends to ||J_f(x0) u||, between the smallest and largest singular value of J_f(x0);
    for a linear encoder f(x) = x W + b it is ||W^T u|| at every r.

    Args:
      encode: the encoder f, [B, *input_shape] -> [B, H].
      x: [N, *input_shape] the points x0.
      radii: R radii r > 0, in input units (the Euclidean distance ||x1 - x0||).
      rng: PRNG key for random unit directions (one per point, shared by all radii); or pass `directions`.
      directions: [N, *input_shape] unit-norm directions u.
      chunk_size: rows per encoder call.

    Returns:
      [R, N] ratios, code distance per input distance.

    Raises:
      ValueError: if neither or both of rng and directions are given, a direction shape differs from x, or a
        radius is not positive.
    """
    x = np.asarray(x, np.float32)
    if (rng is None) == (directions is None):
        raise ValueError("Pass exactly one of rng (random directions) and directions.")
    if directions is None:
        directions = random_unit_directions(rng, x.shape)
    if directions.shape != x.shape:
        raise ValueError(f"directions {directions.shape} must have the shape of x {x.shape}.")
    if any(r <= 0 for r in radii):
        raise ValueError(f"Radii must be positive, got {list(radii)}.")
    n = len(x)
    h0 = _chunked(encode, x, chunk_size).reshape(n, -1).astype(np.float64)
    ratios = []
    for r in radii:
        h1 = _chunked(encode, x + np.float32(r) * directions, chunk_size).reshape(n, -1)
        ratios.append(np.linalg.norm(h1 - h0, axis=1) / r)
    return np.stack(ratios)
