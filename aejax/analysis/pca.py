"""PCA as the reference for an autoencoder with code size k (Baldi & Hornik 1989; Hinton & Salakhutdinov 2006).

A linear autoencoder with squared error spans the top-k principal subspace, so PCA's reconstruction error at
the same code size is the baseline a nonlinear autoencoder must beat. scikit-learn's PCA is the reference.
"""

import numpy as np
from sklearn.decomposition import PCA


def pca_reconstruction(train_x: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    """Fits PCA with k components on train_x and returns the reconstruction of test_x.

    Args:
      train_x: [N, ...] training inputs (flattened per example).
      test_x: [M, ...] test inputs.
      k: code size; must be <= min(N, D).

    Returns:
      [M, ...] reconstructions, float64, shaped like test_x.

    Raises:
      ValueError: if k is out of range.
    """
    a = train_x.reshape(len(train_x), -1).astype(np.float64)
    b = test_x.reshape(len(test_x), -1).astype(np.float64)
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"PCA code size k={k} must be in [1, {min(a.shape)}].")
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(a)
    return pca.inverse_transform(pca.transform(b)).reshape(test_x.shape)


def pca_reconstruction_error(train_x: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    """[M] squared error per test example summed over pixels of the k-component PCA reconstruction (same
    units as the autoencoder's `sq_err`). Raises ValueError if k is out of range."""
    recon = pca_reconstruction(train_x, test_x, k)
    return np.square(recon - test_x).reshape(len(test_x), -1).sum(axis=1)
