"""2-D views of codes for the latent scatter: the codes themselves when K <= 2, else PCA or t-SNE (sklearn)."""

import numpy as np
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits


def embed_2d(codes: np.ndarray, method: str = "tsne", seed: int = 0) -> tuple[np.ndarray, str]:
    """[N, K] codes -> ([N, 2] points, description). K == 2 codes are returned as they are.

    Raises:
      ValueError: for an unknown method (known: "pca", "tsne").
    """
    if codes.shape[1] == 2:
        return codes, "code"
    if codes.shape[1] == 1:
        return np.concatenate([codes, np.zeros_like(codes)], axis=1), "code (1-D)"
    if method == "pca":
        return PCA(n_components=2).fit_transform(codes), "PCA of codes"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(codes) - 1) / 3)
        tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity)
        # One thread: on a shared 2-core machine the default threads only contend (measured, 1000 codes of
        # K=8, two interleaved repeats: 89 and 94 s with the default threads, 19 and 19 s with one).
        with threadpool_limits(limits=1):
            return tsne.fit_transform(codes), "t-SNE of codes"
    raise ValueError(f"Unknown embedding {method!r}. Known: pca, tsne.")
