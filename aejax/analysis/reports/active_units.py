"""Report "active_units": how many latent dimensions a VAE uses (Burda, Grosse & Salakhutdinov 2016, Sec. 5.2).

Unit j is active when A_j = Cov_x(E_{q(z|x)}[z_j]) > threshold (0.01 in the paper): its posterior mean moves with
the input. Inactive units have collapsed to the prior, which the KL term rewards. Reads the test split's codes,
which are the posterior means for a VAE (`EvalOutput.code`); for a deterministic autoencoder it counts code units
whose value varies across inputs.
"""

import numpy as np

from aejax.analysis.reports import REPORTS, RunContext

THRESHOLD = 0.01


def activity(mu: np.ndarray) -> np.ndarray:
    """[N, K] posterior means -> [K] A_j, the variance over examples of each coordinate (ddof 0)."""
    mu = np.asarray(mu, np.float64)
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"Expected posterior means [N, K] with N >= 2, got shape {mu.shape}.")
    return mu.var(axis=0)


@REPORTS.register("active_units")
def report(ctx: RunContext) -> dict:
    """Returns {"active_units": the number of units with A_j > 0.01, "code_dim": K, "activity": [K] A_j sorted
    in decreasing order}."""
    a = activity(ctx.eval.code)
    return {
        "active_units": int(np.sum(a > THRESHOLD)),
        "code_dim": int(a.shape[0]),
        "activity": [float(v) for v in np.sort(a)[::-1]],
    }
