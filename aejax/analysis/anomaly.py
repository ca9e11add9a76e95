"""Anomaly detection by a score: high = anomalous. ROC AUC and PR AUC of a score, and the baselines a model's
score must beat, all from scikit-learn.

The one-class protocol (e.g. Ruff et al. 2018, Deep SVDD; Schlegl et al. 2017): train on the "normal" classes
only, score every test example; the anomalies are the test examples of the other classes. A score is any
function of the example; here the autoencoder's reconstruction error (Japkowicz et al. 1995), the DAE's
log-density implied by its score field (`dae_log_density`: r(x) - x ~ sigma^2 d log p / dx, Alain & Bengio
2014, integrated along a line), the VAE's negative ELBO / IWAE bound (An & Cho 2015) and the Deep SVDD distance
(Ruff et al. 2018, `aejax.objectives.deep_svdd`), against

- PCA reconstruction error at the same code size (Hoffmann 2007, kernel PCA for novelty detection, linear case);
- Isolation Forest (Liu et al. 2008): the negated `score_samples` (shorter average path = more anomalous);
- One-class SVM (Schoelkopf et al. 2001), RBF kernel, gamma "scale", nu = 0.1: the negated decision function;
- k-nearest-neighbour distance (Ramaswamy et al. 2000): the Euclidean distance to the k-th nearest training
  example, k = 5.

All baselines see the flattened pixels [N, D] of the same splits as the model.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import metrics
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from aejax.analysis import pca


class Detection(NamedTuple):
    """How well a score finds the anomalies, areas in [0, 1]: roc_auc; pr_auc, the average precision (sklearn's
    step-wise area under the precision-recall curve) with the anomalies as the positive class, whose chance
    level is `anomaly_fraction`; pr_auc_normal, the same with the normal examples as the positive class and the
    negated score (chance level 1 - anomaly_fraction), informative when the anomalies are most of the data."""

    roc_auc: float
    pr_auc: float
    pr_auc_normal: float
    anomaly_fraction: float


def _check(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64)
    is_anomaly = np.asarray(is_anomaly)
    if scores.ndim != 1 or scores.shape != is_anomaly.shape:
        raise ValueError(f"scores {scores.shape} and is_anomaly {is_anomaly.shape} must be the same [N] shape.")
    if is_anomaly.dtype != bool:
        raise ValueError(f"is_anomaly must be boolean, got {is_anomaly.dtype}.")
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("is_anomaly must hold both normal and anomalous examples to rank them.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} scores are not finite.")
    return scores, is_anomaly


def detection(scores: np.ndarray, is_anomaly: np.ndarray) -> Detection:
    """ROC AUC and PR AUC (average precision) of anomaly scores.

    Args:
      scores: [N] anomaly scores, higher = more anomalous (any units: both areas depend only on the ranking).
      is_anomaly: [N] bool, True for the anomalies.

    Returns:
      Detection(roc_auc, pr_auc, pr_auc_normal, anomaly_fraction).

    Raises:
      ValueError: on shapes that differ, non-boolean labels, labels of one kind only, or non-finite scores.
    """
    scores, is_anomaly = _check(scores, is_anomaly)
    return Detection(
        roc_auc=float(metrics.roc_auc_score(is_anomaly, scores)),
        pr_auc=float(metrics.average_precision_score(is_anomaly, scores)),
        pr_auc_normal=float(metrics.average_precision_score(~is_anomaly, -scores)),
        anomaly_fraction=float(is_anomaly.mean()),
    )


def roc_curve(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate [T], true positive rate [T]) of the score thresholds (sklearn `roc_curve`).
    Raises as `detection`."""
    scores, is_anomaly = _check(scores, is_anomaly)
    fpr, tpr, _ = metrics.roc_curve(is_anomaly, scores)
    return fpr, tpr


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def pca_scores(train_x: np.ndarray, test_x: np.ndarray, k: int) -> np.ndarray:
    """[M] squared reconstruction error of the k-component PCA fitted on train_x (summed over pixels).
    Raises ValueError if k is not in [1, min(N, D)]."""
    return pca.pca_reconstruction_error(train_x, test_x, k)


def isolation_forest_scores(train_x: np.ndarray, test_x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """[M] -score_samples of a 100-tree IsolationForest fitted on train_x (higher = shorter paths)."""
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(_flat(train_x))
    return -forest.score_samples(_flat(test_x))


def one_class_svm_scores(train_x: np.ndarray, test_x: np.ndarray, *, nu: float = 0.1) -> np.ndarray:
    """[M] -decision_function of an RBF OneClassSVM (gamma "scale") fitted on train_x."""
    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=nu).fit(_flat(train_x))
    return -svm.decision_function(_flat(test_x))


def knn_scores(train_x: np.ndarray, test_x: np.ndarray, *, k: int = 5) -> np.ndarray:
    """[M] Euclidean distance from each test example to its k-th nearest training example.

    Raises:
      ValueError: if k exceeds the number of training examples.
    """
    if not 1 <= k <= len(train_x):
        raise ValueError(f"kNN k={k} must be in [1, {len(train_x)}] (the training examples).")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(_flat(train_x)).kneighbors(_flat(test_x))
    return dist[:, -1]


def baseline_scores(train_x: np.ndarray, test_x: np.ndarray, *, code_dim: int, seed: int = 0) -> dict:
    """{"pca_<code_dim>", "isolation_forest", "one_class_svm", "knn_5"}: [M] scores of each baseline fitted on
    train_x [N, ...] for test_x [M, ...]; PCA is left out when code_dim >= min(N, D), where it has no
    undercomplete counterpart."""
    out = {}
    if code_dim < min(len(train_x), _flat(train_x[:1]).shape[1]):
        out[f"pca_{code_dim}"] = pca_scores(train_x, test_x, code_dim)
    out["isolation_forest"] = isolation_forest_scores(train_x, test_x, seed=seed)
    out["one_class_svm"] = one_class_svm_scores(train_x, test_x)
    out["knn_5"] = knn_scores(train_x, test_x, k=5)
    return out


def dae_log_density(
    reconstruct: Callable[[jax.Array], jax.Array],
    x: np.ndarray,
    x0: np.ndarray,
    *,
    sigma: float,
    num_nodes: int = 16,
    batch_size: int = 250,
) -> np.ndarray:
    """log p(x) - log p(x0) as the line integral of a DAE's score estimate (r(y) - y) / sigma^2 (Alain & Bengio
    2014, eq. 8: r(y) - y ~ sigma^2 d log p / dy for a DAE trained with Gaussian noise of std sigma) along the
    straight segment y(t) = x0 + t (x - x0), t in [0, 1]:

        L(x) = (1 / sigma^2) int_0^1 (r(y(t)) - y(t)) . (x - x0) dt,

    by Gauss-Legendre quadrature with `num_nodes` nodes. Where r(y) - y = -grad E(y) is a gradient field (a
    tied-weight AE with a linear decoder: the potential energy of Kamyshanska & Memisevic 2015) this is
    (E(x0) - E(x)) / sigma^2 exactly, up to the quadrature error, whatever the path; a learned field need not be
    conservative, and the value is then that of this path. The anomaly score is its negation.

    Args:
      reconstruct: r, [B, *S] -> [B, *S], the mean reconstruction of the DAE (e.g. `likelihood.mean` of the
        decoder output), jit-compatible.
      x: [N, *S] the points. x0: [*S] the reference point (e.g. the training mean).
      sigma: the training noise std (in the units of x); only scales the result.
      num_nodes: quadrature nodes (exact for polynomial integrands of degree < 2 num_nodes).
      batch_size: points per call of `reconstruct` (each call evaluates num_nodes * batch_size inputs).

    Returns:
      [N] float64 log-density differences, nats (under the approximation).

    Raises:
      ValueError: for x0 not of one example's shape, sigma <= 0 or num_nodes < 1.
    """
    x = np.asarray(x, np.float32)
    x0 = np.asarray(x0, np.float32)
    if x0.shape != x.shape[1:]:
        raise ValueError(f"x0 {x0.shape} must have the shape of one example {x.shape[1:]}.")
    if not sigma > 0 or num_nodes < 1:
        raise ValueError(f"sigma={sigma} must be > 0 and num_nodes={num_nodes} >= 1.")
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)  # on [-1, 1]
    t = jnp.asarray((nodes + 1.0) / 2.0, jnp.float32)  # [T] on [0, 1]
    w = jnp.asarray(weights / 2.0, jnp.float32)  # [T], sum 1

    @jax.jit
    def integral(xb):  # [B, *S] -> [B]
        delta = xb - x0[None]  # [B, *S]
        y = x0[None, None] + t.reshape((-1,) + (1,) * xb.ndim) * delta[None]  # [T, B, *S]
        flat = y.reshape(-1, *xb.shape[1:])  # [T B, *S]
        field = (reconstruct(flat) - flat).reshape(y.shape)  # r(y) - y
        along = jnp.sum((field * delta[None]).reshape(len(t), xb.shape[0], -1), axis=-1)  # [T, B]
        return jnp.einsum("t,tb->b", w, along)

    out = [np.asarray(integral(jnp.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64) / sigma**2
