"""The probabilistic-PCA baseline of a linear VAE: the exact test log-likelihood it can at best reach.

A linear-Gaussian VAE with K latents and one decoder variance has probabilistic PCA (Tipping & Bishop 1999) as
its maximum-likelihood solution (Lucas et al. 2019), so its IWAE bound on the test set is at most, and after
training close to, the PPCA log-likelihood of the same K fitted on the training set.
"""

import numpy as np
from sklearn.decomposition import PCA

from aejax.analysis.reports import REPORTS, RunContext
from aejax.objectives import IWAE


def ppca_log_lik(train_x: np.ndarray, test_x: np.ndarray, k: int) -> float:
    """Mean test log-likelihood (nats per example) of PPCA with k components fitted on train_x.

    Args:
      train_x: [N, *shape]; test_x: [M, *shape]; k: latent size.
    """
    flat = lambda a: np.asarray(a, np.float64).reshape(len(a), -1)  # noqa: E731
    return float(PCA(n_components=k).fit(flat(train_x)).score(flat(test_x)))


@REPORTS.register("ppca")
def report(ctx: RunContext) -> dict:
    """{"ppca_log_lik": nats per test example, "iwae_gap_to_ppca": ppca_log_lik - mean test IWAE bound (when
    the objective reports "iwae")}, with K the run's code size."""
    out = {"ppca_log_lik": ppca_log_lik(ctx.train_split.x, ctx.test_split.x, ctx.eval.code.shape[1])}
    if IWAE in ctx.eval.metrics:
        out["iwae_gap_to_ppca"] = out["ppca_log_lik"] - float(np.mean(ctx.eval.metrics[IWAE]))
    return out
