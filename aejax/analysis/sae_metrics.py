"""The sparse-autoencoder metrics as the field defines them (Gao et al. 2024; Rajamanoharan et al. 2024), on host
(numpy) arrays of a whole split: x [N, d], x_hat [N, d] in the data's units, code [N, n].

- FVU = sum_b ||x_b - x_hat_b||^2 / sum_b ||x_b - mean(x)||^2, the mean taken over the split: the fraction of the
  *total* variance left unexplained (not the mean of per-dimension ratios).
- MSE: squared error per component, averaged over the N * d components.
- L0: mean number of non-zero latents per example.
- cosine similarity cos(x, x_hat) and shrinkage ||x_hat|| / ||x||, means over examples (uncentred vectors).
- firing frequency of latent i: the fraction of examples with code_i != 0; its log10 histogram is the feature
  density plot; latents that never fire on the split are reported apart from the training-time dead count.
"""

import numpy as np

LOG10_FLOOR = -10.0  # log10 frequency given to latents that never fire, so they appear at the left of the plot


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).reshape(len(a), -1)


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained over the split (see module docstring). x, x_hat [N, ...].

    Raises:
      ValueError: if x has zero total variance (FVU undefined) or the shapes differ.
    """
    x, x_hat = _flat(x), _flat(x_hat)
    if x.shape != x_hat.shape:
        raise ValueError(f"x {x.shape} and x_hat {x_hat.shape} differ.")
    total = np.sum(np.square(x - x.mean(axis=0, keepdims=True)))
    if total <= 0:
        raise ValueError("FVU is undefined for data with zero total variance.")
    return float(np.sum(np.square(x - x_hat)) / total)


def firing_frequency(code: np.ndarray) -> np.ndarray:
    """[n] fraction of the N examples (rows of code [N, n]) on which each latent is non-zero."""
    return np.mean(np.asarray(code) != 0, axis=0)


def log10_density(freq: np.ndarray) -> np.ndarray:
    """[n] log10 firing frequency, LOG10_FLOOR for latents that never fire."""
    freq = np.asarray(freq, np.float64)
    return np.where(freq > 0, np.log10(np.maximum(freq, 1e-300)), LOG10_FLOOR)


def top_activating(code: np.ndarray, latent: int, m: int) -> np.ndarray:
    """[min(m, N)] row indices of the examples with the largest code[:, latent], largest first."""
    return np.argsort(-np.asarray(code)[:, latent], kind="stable")[:m]


def summary(x: np.ndarray, x_hat: np.ndarray, code: np.ndarray) -> dict[str, float]:
    """{fvu, mse, l0, cos_sim, shrinkage, never_fired_fraction} of a split (see module docstring)."""
    xf, rf = _flat(x), _flat(x_hat)
    xn, rn = np.linalg.norm(xf, axis=1), np.linalg.norm(rf, axis=1)
    safe = np.maximum(xn, 1e-12)
    return {
        "fvu": fvu(xf, rf),
        "mse": float(np.mean(np.square(xf - rf))),
        "l0": float(np.mean(np.sum(np.asarray(code) != 0, axis=1))),
        "cos_sim": float(np.mean(np.sum(xf * rf, axis=1) / (safe * np.maximum(rn, 1e-12)))),
        "shrinkage": float(np.mean(rn / safe)),
        "never_fired_fraction": float(np.mean(firing_frequency(code) == 0)),
    }


def loss_recovered(ce_clean: float, ce_spliced: float, ce_zero: float) -> dict[str, float]:
    """The downstream metrics of an SAE on a model's activations, from three cross-entropies (nats per token):
    the model as it is (ce_clean), with the activations replaced by their reconstruction (ce_spliced) and by zero
    (ce_zero, zero ablation).

    Returns:
      {"delta_loss": ce_spliced - ce_clean, "loss_recovered": (ce_zero - ce_spliced) / (ce_zero - ce_clean)}:
      1 for an exact reconstruction, 0 for one no better than zero ablation.

    Raises:
      ValueError: if ce_zero == ce_clean (zero ablation changes nothing; the fraction is undefined).
    """
    if ce_zero == ce_clean:
        raise ValueError(f"Zero ablation does not change the loss ({ce_zero}); loss recovered is undefined.")
    return {"delta_loss": ce_spliced - ce_clean, "loss_recovered": (ce_zero - ce_spliced) / (ce_zero - ce_clean)}
