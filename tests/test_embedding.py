"""2-D views of codes (`aejax.analysis.embedding`) against sklearn's trustworthiness and PCA."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.metrics import silhouette_score

from aejax.analysis import embedding


def _clusters(num_clusters=4, per_cluster=20, dim=10, seed=0):
    """[num_clusters * per_cluster, dim] points: unit-variance blobs whose centres are 20 apart."""
    rng = np.random.default_rng(seed)
    centres = 20.0 * np.eye(dim)[:num_clusters]
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_tsne_keeps_well_separated_clusters_separated():
    codes, labels = _clusters()
    points, how = embedding.embed_2d(codes, "tsne", seed=0)
    assert how == "t-SNE of codes" and points.shape == (len(codes), 2)
    # Independent checks: neighbourhoods are kept (sklearn's trustworthiness, 1 = every 2-D neighbour is a
    # neighbour in 10-D), and the clusters stay apart in 2-D (silhouette near 1; random points give ~0).
    assert trustworthiness(codes, points, n_neighbors=5) > 0.9
    assert silhouette_score(points, labels) > 0.7
    # Every point's nearest 2-D neighbour is of its own cluster.
    d = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.diag(np.full(len(points), np.inf))
    np.testing.assert_array_equal(labels[d.argmin(axis=1)], labels)


def test_pca_is_sklearns_and_small_codes_pass_through():
    codes, _ = _clusters(per_cluster=10)
    points, how = embedding.embed_2d(codes, "pca")
    want = PCA(n_components=2).fit_transform(codes)
    # Components are defined up to sign: compare per column.
    np.testing.assert_allclose(np.abs(points), np.abs(want), rtol=1e-6, atol=1e-8)
    two = codes[:, :2]
    assert embedding.embed_2d(two)[0] is two
    one, how = embedding.embed_2d(codes[:, :1])
    np.testing.assert_array_equal(one, np.stack([codes[:, 0], np.zeros(len(codes))], axis=1))
    assert how == "code (1-D)"


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="Known: pca, tsne"):
        embedding.embed_2d(np.zeros((5, 3)), "umap")
