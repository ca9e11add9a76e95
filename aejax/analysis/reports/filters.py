"""Report "filters": the learned filters of a patch model and their orientation selectivity.

Writes `<workdir>/filters.png`: the dictionary atoms (PSD: columns of D) and the encoder filters (PSD: columns of
W^T, the `encoder` kernel; an MLP autoencoder: its first-layer kernel `encoder_0`), next to Gaussian random filters
of the same size, each titled with its mean orientation selectivity (`aejax.analysis.filters`). For PSD it also
returns the encoder's relative code-prediction error and the sparsity of the optimal codes h* on the test set,
from the objective's eval outputs.
"""

import os

import numpy as np

from aejax.analysis import filters
from aejax.analysis.reports import REPORTS, RunContext
from aejax.models.mlp import FIRST_ENCODER
from aejax.models.psd import DICTIONARY
from aejax.objectives import ACTIVE, CODE_SQ_NORM, PRED_SQ_ERR


def filter_banks(params, patch_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Named [F, h, w] filter banks of a model's params: "dictionary" and/or "encoder".

    Args:
      params: a PSD model's params (`dictionary` [n, K], `encoder/kernel` [n, K]) or an MLP autoencoder's
        (`encoder_0/kernel` [n, K]).
      patch_shape: one example's shape (h, w[, 1]).

    Raises:
      KeyError: if params hold none of these kernels.
    """
    banks = {}
    if DICTIONARY in params:
        banks["dictionary"] = filters.columns_as_filters(params[DICTIONARY], patch_shape)
    for key in ("encoder", FIRST_ENCODER):  # PSD's encoder Dense, an MLP's first layer
        if key in params and "kernel" in params[key]:
            banks["encoder"] = filters.columns_as_filters(params[key]["kernel"], patch_shape)
    if not banks:
        raise KeyError(f"No dictionary or first-layer encoder kernel in params (keys: {sorted(params)}).")
    return banks


@REPORTS.register("filters")
def report(ctx: RunContext) -> dict:
    """Draws `filters.png`; returns {"<bank>_selectivity": mean S, "random_selectivity": baseline S} and, for
    PSD, "rel_pred_err" = sum ||f(x) - h*||^2 / sum ||h*||^2 and "active_fraction" (non-zero entries of h*)."""
    patch_shape = tuple(ctx.train_split.x.shape[1:])
    banks = filter_banks(ctx.params, patch_shape)
    num = max(len(b) for b in banks.values())
    banks["random"] = filters.random_filters(num, *patch_shape[:2], seed=ctx.config.seed)
    scores = {name: filters.selectivity_score(bank) for name, bank in banks.items()}
    panels = {f"{name}, S={scores[name]:.2f}": bank for name, bank in banks.items()}
    filters.plot_filter_panels(panels, os.path.join(ctx.workdir, "filters.png"))
    out = {f"{name}_selectivity": score for name, score in scores.items()}
    metrics = ctx.eval.metrics
    if PRED_SQ_ERR in metrics:
        out["rel_pred_err"] = float(metrics[PRED_SQ_ERR].sum() / max(metrics[CODE_SQ_NORM].sum(), 1e-12))
        out["active_fraction"] = float(metrics[ACTIVE].mean())
    return out
