"""The PCA baseline against the closed form: the error of the top-k subspace is the sum of the trailing
eigenvalues of the covariance (Eckart-Young), computed here with numpy, independently of sklearn."""

import numpy as np
import pytest

from aejax.analysis import embedding, pca


def test_pca_error_is_sum_of_trailing_eigenvalues():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) + 3.0
    k = 4
    err = pca.pca_reconstruction_error(x, x, k)  # [N]
    cov = np.cov(x, rowvar=False, bias=True)
    eig = np.sort(np.linalg.eigvalsh(cov))[::-1]
    np.testing.assert_allclose(err.mean(), eig[k:].sum(), rtol=1e-8)


def test_pca_reconstruction_shapes_and_bad_k():
    x = np.random.default_rng(1).uniform(size=(50, 4, 4, 1))
    assert pca.pca_reconstruction(x[:40], x[40:], 3).shape == (10, 4, 4, 1)
    with pytest.raises(ValueError, match="must be in"):
        pca.pca_reconstruction(x, x, 17)


def test_embed_2d_passes_2d_codes_through():
    codes = np.random.default_rng(2).normal(size=(30, 2))
    points, how = embedding.embed_2d(codes)
    np.testing.assert_array_equal(points, codes)
    assert how == "code"
    points, how = embedding.embed_2d(np.random.default_rng(3).normal(size=(30, 5)), "pca")
    assert points.shape == (30, 2) and how == "PCA of codes"
    with pytest.raises(ValueError, match="Known: pca, tsne"):
        embedding.embed_2d(np.zeros((30, 5)), "umap")
