"""Binary codes that are not learned by an autoencoder, the baselines of semantic hashing, and code diagnostics.

- Random-hyperplane LSH (Charikar 2002): bit j = 1[w_j . (x - mean) > 0], w_j ~ N(0, I).
- PCA sign: bit j = 1[j-th principal component score > 0] (sklearn PCA).
- ITQ, iterative quantisation (Gong & Lazebnik 2011, sec. 2.2): the b-dimensional PCA scores V are rotated by an
  orthogonal R that minimises the quantisation loss ||B - V R||_F^2 over B in {-1, 1}^{N x b}, alternating
  B = sign(V R) and R = the orthogonal Procrustes solution for fixed B (scipy); each half-step minimises the
  loss over one block, so it never increases.
- Code-space ITQ (`code_itq`): the same alternation applied to a model's own real-valued codes [N, b] (an
  autoencoder's pre-threshold code) instead of PCA scores, starting from the identity rotation, i.e. from the
  signs of the centred codes themselves; the learned rotation never has a larger quantisation loss than that.

Every encoder is fitted on the database (training) inputs and maps [N, ...] inputs to [N, b] bits in {0, 1}.
"""

import dataclasses

import numpy as np
import scipy.linalg
from sklearn.decomposition import PCA


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def _check_bits(x: np.ndarray, num_bits: int) -> None:
    if not 1 <= num_bits <= min(x.shape):
        raise ValueError(f"num_bits must be in [1, {min(x.shape)}] for {x.shape[0]} inputs of {x.shape[1]} dims.")


@dataclasses.dataclass(frozen=True)
class LinearHash:
    """bits = 1[(x - mean) @ projection > 0]: LSH, PCA sign and ITQ are all of this form.

    Attributes:
      mean: [D] the training mean; projection: [D, b].
    """

    mean: np.ndarray
    projection: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[N, ...] inputs -> [N, b] uint8 bits."""
        return ((_flat(x) - self.mean) @ self.projection > 0).astype(np.uint8)


def random_hyperplanes(train_x: np.ndarray, num_bits: int, *, seed: int = 0) -> LinearHash:
    """Random-hyperplane LSH through the training mean (Charikar 2002); any num_bits >= 1 (it may exceed D).

    Raises:
      ValueError: if num_bits < 1.
    """
    x = _flat(train_x)
    if num_bits < 1:
        raise ValueError(f"num_bits must be >= 1, got {num_bits}.")
    w = np.random.default_rng(seed).standard_normal((x.shape[1], num_bits))
    return LinearHash(x.mean(axis=0), w)


def pca_sign(train_x: np.ndarray, num_bits: int) -> LinearHash:
    """The signs of the top-b principal component scores. Raises ValueError for bad num_bits."""
    x = _flat(train_x)
    _check_bits(x, num_bits)
    pca = PCA(num_bits, svd_solver="covariance_eigh").fit(x)
    return LinearHash(pca.mean_, pca.components_.T)


def quantisation_loss(v: np.ndarray, rotation: np.ndarray) -> float:
    """min over B in {-1, 1}^{N x b} of ||B - V R||_F^2 / N, attained at B = sign(V R) (Gong & Lazebnik 2011,
    eq. 2). v: [N, b] centred real-valued codes; rotation: [b, b]."""
    vr = np.asarray(v, np.float64) @ rotation
    return float(np.square(np.where(vr >= 0, 1.0, -1.0) - vr).sum() / len(vr))


def itq_rotation(v: np.ndarray, rotation: np.ndarray, *, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The ITQ alternation (Gong & Lazebnik 2011, sec. 2.2) from `rotation`: B = sign(V R), then R = the
    orthogonal Procrustes solution argmin_R ||B - V R||_F (scipy), `iterations` times.

    Args:
      v: [N, b] centred real-valued codes (PCA scores for ITQ).
      rotation: [b, b] orthogonal start.
      iterations: >= 1.

    Returns:
      (R [b, b] orthogonal, losses [iterations]): losses[t] = ||B_t - V R_t||_F^2 / N after iteration t, never
      above `quantisation_loss(v, rotation)` and non-increasing.

    Raises:
      ValueError: if iterations < 1 or the shapes do not match.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    v = np.asarray(v, np.float64)
    if rotation.shape != (v.shape[1], v.shape[1]):
        raise ValueError(f"rotation must be [b, b] for codes [N, b] = {v.shape}, got {rotation.shape}.")
    losses = []
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)  # the best codes for this rotation
        rotation, _ = scipy.linalg.orthogonal_procrustes(v, b)  # the best rotation for these codes
        losses.append(np.square(b - v @ rotation).sum() / len(v))
    return rotation, np.array(losses)


def itq(train_x: np.ndarray, num_bits: int, *, iterations: int = 50, seed: int = 0):
    """Iterative quantisation (Gong & Lazebnik 2011) from a random orthogonal rotation.

    Returns:
      (LinearHash with projection = PCA components [D, b] @ R [b, b], losses [iterations]): losses[t] is
      ||B_t - V R_t||_F^2 / N after iteration t, with V [N, b] the centred PCA scores of train_x.

    Raises:
      ValueError: for bad num_bits or iterations < 1.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    x = _flat(train_x)
    _check_bits(x, num_bits)
    pca = PCA(num_bits, svd_solver="covariance_eigh").fit(x)
    start, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((num_bits, num_bits)))
    rotation, losses = itq_rotation(pca.transform(x), start, iterations=iterations)
    return LinearHash(pca.mean_, pca.components_.T @ rotation), losses


def code_itq(train_codes: np.ndarray, *, iterations: int = 50):
    """Code-space ITQ: an orthogonal rotation of a model's own real-valued codes, learned on the database codes.

    bits = 1[(c - mean) R > 0] with mean the database mean of the codes c and R from `itq_rotation` started at
    the identity (no PCA: the codes are already b-dimensional), so the start is the sign of the centred codes.

    Args:
      train_codes: [N, b] real-valued codes of the database (e.g. a hashing autoencoder's sigmoid(a)).
      iterations: ITQ iterations, >= 1.

    Returns:
      (LinearHash(mean [b], projection R [b, b]), losses [iterations + 1]): losses[0] the quantisation loss
      of the identity start, losses[t] after iteration t (non-increasing).

    Raises:
      ValueError: if train_codes is not [N, b] or iterations < 1.
    """
    c = np.asarray(train_codes, np.float64)
    if c.ndim != 2:
        raise ValueError(f"train_codes must be [N, b], got shape {c.shape}.")
    mean = c.mean(axis=0)
    start = np.eye(c.shape[1])
    rotation, losses = itq_rotation(c - mean, start, iterations=iterations)
    return LinearHash(mean, rotation), np.concatenate([[quantisation_loss(c - mean, start)], losses])


def bit_statistics(bits: np.ndarray, probs: np.ndarray | None = None, *, margin: float = 0.1) -> dict:
    """Diagnostics of a binary code: balance, correlation and (when given) saturation before thresholding.

    Args:
      bits: [N, b] 0/1 codes.
      probs: optional [N, b] code-unit activations in [0, 1] before thresholding (sigmoid of the logits).
      margin: a unit is saturated when its activation is within `margin` of 0 or 1.

    Returns:
      {"bit_balance": [b] fraction of ones per bit, "mean_abs_balance_error": mean |balance - 0.5|,
       "constant_bits": bits that are the same for every item, "mean_abs_correlation": mean |Pearson r| over
       pairs of non-constant bits, "max_abs_correlation", and "saturated_fraction" with `probs`}.
    """
    bits = np.asarray(bits, np.float64)
    balance = bits.mean(axis=0)
    varying = bits.std(axis=0) > 0
    out = {
        "bit_balance": balance,
        "mean_abs_balance_error": float(np.abs(balance - 0.5).mean()),
        "constant_bits": int((~varying).sum()),
    }
    if varying.sum() >= 2:
        corr = np.corrcoef(bits[:, varying], rowvar=False)
        off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
        out["mean_abs_correlation"] = float(off.mean())
        out["max_abs_correlation"] = float(off.max())
    if probs is not None:
        probs = np.asarray(probs)
        out["saturated_fraction"] = float(np.mean((probs < margin) | (probs > 1 - margin)))
    return out
