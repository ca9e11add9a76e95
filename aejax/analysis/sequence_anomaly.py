"""Anomaly scores of a sequence autoencoder and the field's metrics (Malhotra et al. 2016, EncDec-AD).

Two scores per window of a long series, both mapped to per-point scores by `aejax.data.series.point_scores`:
- reconstruction error: the squared error of each step (mean over channels), averaged over the windows that
  contain a point;
- EncDec-AD: the error vector e = |x - x^| of a window ([L C] values) under a Gaussian N(mu, Sigma) fitted on
  held-out *normal* windows; the score is the squared Mahalanobis distance (e - mu)^T Sigma^-1 (e - mu).
  Malhotra et al. fit Sigma by maximum likelihood; with L C = 64 values and a few hundred held-out windows that
  estimate is near singular, so the Ledoit-Wolf shrinkage estimate (sklearn) is used instead.

For one-class detection on whole series (`code_scores`), the codes of the test series are also scored by their
distance to the codes of the normal training series: Euclidean distance to their mean (the Deep SVDD centre
distance without its training objective, Ruff et al. 2018), squared Mahalanobis distance under their Ledoit-Wolf
Gaussian, and the mean distance to the k nearest (kNN in code space).
"""

from collections.abc import Callable

import jax
import numpy as np

from aejax.analysis.batched import batched_apply

CODE_SCORES = ("code_mean", "code_mahalanobis", "code_knn")


def reconstruct_fn(model, variables, *, teacher_forcing: bool = False) -> Callable:
    """The jitted (x [B, T, C], mask [B, T] or None) -> (reconstruction [B, T, C], code [B, K]) of a model in
    evaluation mode; its one argument is the pair, so `batched_apply` chunks both. With `teacher_forcing` the
    model runs in training mode, where a recurrent decoder with `teacher_forcing` reads the true previous value
    of the series instead of its own output (a one-step-ahead reconstruction); deterministic models only."""
    train = bool(teacher_forcing)
    return jax.jit(
        lambda xm: (lambda o: (o.decoder_output, o.code))(model.apply(variables, xm[0], mask=xm[1], train=train))
    )


def reconstruct(
    apply_fn: Callable, x: np.ndarray, mask: np.ndarray | None = None, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation-mode reconstructions of series in batches of one shape (`batched_apply`).

    Args:
      apply_fn: `reconstruct_fn(model, variables)`.
      x: [N, T, C] series; mask: [N, T] their valid steps (`Split.mask`), None: every step.
      batch_size: rows per call (rounded up to a multiple of the devices); the last batch is padded to it.

    Returns:
      (reconstruction [N, T, C] zero on padding, code [N, K]).
    """
    return batched_apply(apply_fn, (x, mask), batch_size=batch_size)


def step_errors(recon: np.ndarray, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[N, T, C] absolute errors |x - x^| of series x [N, T, C] on the valid steps of mask [N, T] (None: all),
    0 on padding."""
    err = np.abs(x - recon)
    return err if mask is None else err * mask[..., None]


def fit_error_gaussian(errors: np.ndarray):
    """Gaussian of held-out normal window errors [M, L, C] (Ledoit-Wolf covariance); returns the fitted
    sklearn estimator, whose `.mahalanobis(e [N, L C])` is the squared distance.

    Raises:
      ValueError: with fewer than 2 windows.
    """
    from sklearn.covariance import LedoitWolf

    if len(errors) < 2:
        raise ValueError(f"The error Gaussian needs at least 2 held-out windows, got {len(errors)}.")
    return LedoitWolf().fit(errors.reshape(len(errors), -1))


def mahalanobis_scores(gaussian, errors: np.ndarray) -> np.ndarray:
    """[N] squared Mahalanobis distances of window errors [N, L, C] under `fit_error_gaussian`'s Gaussian."""
    return gaussian.mahalanobis(errors.reshape(len(errors), -1))


def code_scores(train_codes: np.ndarray, codes: np.ndarray, *, k: int = 1) -> dict[str, np.ndarray]:
    """Code-space anomaly scores of codes [N, K] against the codes [M, K] of normal training series.

    Returns:
      {"code_mean": [N] Euclidean distance to the mean training code, "code_mahalanobis": [N] squared Mahalanobis
      distance under the Ledoit-Wolf Gaussian of the training codes (sklearn), "code_knn": [N] mean Euclidean
      distance to the k nearest training codes}; higher = more anomalous.

    Raises:
      ValueError: with fewer than 2 training codes, k outside [1, M], or codes of different widths.
    """
    from sklearn.covariance import LedoitWolf
    from sklearn.neighbors import NearestNeighbors

    train_codes, codes = np.asarray(train_codes, np.float64), np.asarray(codes, np.float64)
    if train_codes.ndim != 2 or codes.ndim != 2 or train_codes.shape[1] != codes.shape[1]:
        raise ValueError(f"Codes must be [M, K] and [N, K], got {train_codes.shape} and {codes.shape}.")
    if len(train_codes) < 2 or not 1 <= k <= len(train_codes):
        raise ValueError(f"Need at least 2 training codes and 1 <= k <= M, got M={len(train_codes)}, k={k}.")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(train_codes).kneighbors(codes)
    return {
        "code_mean": np.linalg.norm(codes - train_codes.mean(axis=0), axis=1),
        "code_mahalanobis": LedoitWolf().fit(train_codes).mahalanobis(codes),
        "code_knn": dist.mean(axis=1),
    }


def detection_metrics(labels: np.ndarray, scores: np.ndarray, *, vus: bool = False) -> dict[str, float]:
    """Point-wise and range-based metrics of per-point scores (aeon.benchmarking.metrics.anomaly_detection).

    Args:
      labels: [T] 0/1 anomaly labels. scores: [T] higher = more anomalous (NaN not allowed).
      vus: also the volume-under-surface metrics (Paparrizos et al. 2022), about 4 s each for 6,000 points.

    Returns:
      {"roc_auc", "pr_auc" (point-wise), "range_roc_auc", "range_pr_auc" (range-based, Paparrizos et al. 2022),
      and with vus "range_roc_vus", "range_pr_vus"}.

    Raises:
      ValueError: if the scores hold NaN or the labels have a single class.
    """
    from aeon.benchmarking.metrics import anomaly_detection as m

    labels, scores = np.asarray(labels, int), np.asarray(scores, float)
    if np.isnan(scores).any():
        raise ValueError("Scores hold NaN (a point no window covers?).")
    if labels.min() == labels.max():
        raise ValueError("The labels have a single class; AUCs are undefined.")
    out = {
        "roc_auc": m.roc_auc_score(labels, scores),
        "pr_auc": m.pr_auc_score(labels, scores),
        "range_roc_auc": m.range_roc_auc_score(labels, scores),
        "range_pr_auc": m.range_pr_auc_score(labels, scores),
    }
    if vus:
        out["range_roc_vus"] = m.range_roc_vus_score(labels, scores)
        out["range_pr_vus"] = m.range_pr_vus_score(labels, scores)
    return {k: float(v) for k, v in out.items()}
