"""How much error per code size: quantised codes, and the subspace a linear autoencoder learns.

- Quantisation: a code of K real numbers is stored in K * q bits by uniform quantisation of each dimension to
  2^q levels over its range on the training codes; the decoder then reconstructs from the quantised code, so the
  error is a function of the bits per image (the x-axis of a rate-distortion / compression curve).
- Baldi & Hornik (1989): a linear autoencoder x -> W2 (W1 x + b1) + b2 trained on squared error has, at its
  global optimum (every local minimum is global), W2 spanning the top-K principal subspace of the training data,
  so its error equals PCA's. The principal angles between the column space of W2 and sklearn's top-K
  components (`scipy.linalg.subspace_angles`) measure how close training came; they go to 0. (Weight decay
  further makes the columns align with the individual principal directions, Kunin et al. 2019; without it only
  the subspace is identified.)
"""

import numpy as np
import scipy.linalg
from sklearn.decomposition import PCA


def code_range(train_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo [K], hi [K]): the per-dimension min and max of the training codes [N, K] (hi > lo)."""
    lo, hi = train_codes.min(axis=0), train_codes.max(axis=0)
    return lo, np.maximum(hi, lo + 1e-12)


def quantise(codes: np.ndarray, bits: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform quantisation of each code dimension to 2^bits levels on [lo, hi] (values outside are clipped).

    Args:
      codes: [N, K]; bits: q >= 1, bits per dimension; lo, hi: [K] the range (e.g. `code_range` of the train
        codes).

    Returns:
      [N, K] the reconstruction levels lo + (i + 1/2) * (hi - lo) / 2^q, i = the bin of each value: the code as
      the decoder would receive it from K * q stored bits.

    Raises:
      ValueError: if bits < 1.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}.")
    levels = 2**bits
    step = (hi - lo) / levels
    index = np.clip(np.floor((codes - lo) / step), 0, levels - 1)
    return lo + (index + 0.5) * step


def pca_errors(
    train_x: np.ndarray, test_x: np.ndarray, k: int, bits: tuple[int, ...] = ()
) -> dict[str | int, float]:
    """Mean test squared error per example (summed over components) of k-component PCA, with the PCA scores
    unquantised ("float") and quantised to each q in `bits` per dimension (ranges from the training scores).

    Raises:
      ValueError: if k is not in [1, min(N, D)].
    """
    a = train_x.reshape(len(train_x), -1).astype(np.float64)
    b = test_x.reshape(len(test_x), -1).astype(np.float64)
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"PCA code size k={k} must be in [1, {min(a.shape)}].")
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(a)
    train_scores, scores = pca.transform(a), pca.transform(b)
    lo, hi = code_range(train_scores)
    out = {"float": float(np.square(pca.inverse_transform(scores) - b).sum(axis=1).mean())}
    for q in bits:
        recon = pca.inverse_transform(quantise(scores, q, lo, hi))
        out[q] = float(np.square(recon - b).sum(axis=1).mean())
    return out


def subspace_angles_to_pca(decoder_kernel: np.ndarray, train_x: np.ndarray) -> np.ndarray:
    """Principal angles, in degrees, between the decoder's column space and the top-K principal subspace.

    Args:
      decoder_kernel: [K, D] the kernel of a linear decoder z -> z @ kernel + bias (flax Dense layout), so its
        column space is that of kernel.T [D, K].
      train_x: [N, ...] the training inputs (D components each) the top-K subspace is computed from (sklearn
        PCA, centred).

    Returns:
      [K] angles in degrees, largest first (scipy.linalg.subspace_angles).

    Raises:
      ValueError: if the kernel's D differs from the inputs' or K > min(N, D).
    """
    x = train_x.reshape(len(train_x), -1).astype(np.float64)
    k, d = decoder_kernel.shape
    if d != x.shape[1] or not 1 <= k <= min(x.shape):
        raise ValueError(f"decoder kernel {decoder_kernel.shape} does not fit inputs of {x.shape[1]} dims.")
    components = PCA(n_components=k, svd_solver="covariance_eigh").fit(x).components_  # [K, D]
    return np.degrees(scipy.linalg.subspace_angles(np.asarray(decoder_kernel, np.float64).T, components.T))
