"""Contractive report: mean ||J_f(x)||_F, saturated units, the Jacobian spectrum and the contraction curve.

The measurements of Rifai et al. (ICML 2011): the CAE lowers the average Frobenius norm of the encoder's Jacobian,
saturates more sigmoid units (Table 1), concentrates the Jacobian's singular-value spectrum on a few directions
(Fig. 3), and contracts most at small radius (Fig. 4). Jacobians are exact, on the first test points:
`config.analysis.jacobian_points` (default 200) for the norm and the contraction ratio,
`config.analysis.spectrum_points` (default 32) for the spectrum (one eigendecomposition per point). The comparison
against the plain autoencoder is in experiments/regularized_family, which overlays `plot_contraction` of both.
"""

import os

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display
import jax
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np

from aejax.analysis import regularization
from aejax.analysis.reports import REPORTS, RunContext

RADII = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0)  # input units; test digits have ||x|| ~ 9


def plot_contraction(curves: dict[str, dict[str, np.ndarray]], path: str) -> None:
    """Three panels per model: ||J_f||_F histogram, mean singular-value spectrum, contraction ratio vs radius.

    Args:
      curves: label -> {"jacobian_norms": [N], "spectrum": [M], "radii": [R], "ratios": [R, N]}.
      path: the PNG to write.
    """
    fig, (ax_n, ax_s, ax_c) = plt.subplots(1, 3, figsize=(15, 4))
    for label, c in curves.items():
        norms = c["jacobian_norms"]
        ax_n.hist(norms, bins=30, alpha=0.6, label=f"{label} (mean {norms.mean():.3g})")
        ax_s.plot(np.arange(1, len(c["spectrum"]) + 1), c["spectrum"], label=label)
        mean, std = c["ratios"].mean(axis=1), c["ratios"].std(axis=1)
        ax_c.errorbar(c["radii"], mean, yerr=std, marker="o", ms=3, capsize=2, label=label)
    ax_n.set(xlabel="||J_f(x)||_F", ylabel="test points", title="encoder Jacobian norm")
    ax_s.set(xscale="log", yscale="log", xlabel="index", ylabel="singular value", title="mean Jacobian spectrum")
    ax_c.set(xlabel="radius r = ||x1 - x0||", ylabel="||f(x0) - f(x1)|| / r", title="contraction ratio")
    for ax in (ax_n, ax_s, ax_c):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def measure(ctx: RunContext) -> dict[str, np.ndarray]:
    """The first test points' {"jacobian_norms": [N], "spectrum": [min(H, D)], "radii": [R], "ratios": [R, N]}."""
    num_points = int(ctx.config.analysis.get("jacobian_points", 200))
    num_spectrum = int(ctx.config.analysis.get("spectrum_points", 32))
    x = np.asarray(ctx.test_split.x[:num_points])

    def encode(xb):
        return ctx.model.apply(ctx.variables, xb, method="encode")

    rng = jax.random.key(ctx.config.seed)
    return {
        "jacobian_norms": regularization.jacobian_norms(encode, x),
        "spectrum": regularization.jacobian_spectrum(encode, x[:num_spectrum]),
        "radii": np.asarray(RADII),
        "ratios": regularization.contraction_ratios(encode, x, RADII, rng=rng),
    }


@REPORTS.register("contractive")
def report(ctx: RunContext) -> dict:
    """Writes contractive.png and contractive.npz (the arrays of `measure`).

    Returns:
      "mean_jacobian_norm" (mean ||J_f(x)||_F over the test points, code units per input unit),
      "top_singular_value", "singular_values_for_90pct" (how many leading singular values hold 90% of
      sum sigma^2), "contraction_ratio_r<r>" at the smallest and largest radius and, for a sigmoid code,
      "saturated_fraction" (h < 0.05 or h > 0.95 over the whole test set).
    """
    m = measure(ctx)
    label = ", ".join(ctx.config.regularizers.keys()) or "no penalty"
    plot_contraction({label: m}, os.path.join(ctx.workdir, "contractive.png"))
    np.savez(os.path.join(ctx.workdir, "contractive.npz"), **m)
    energy = np.cumsum(m["spectrum"] ** 2) / np.sum(m["spectrum"] ** 2)
    out = {
        "mean_jacobian_norm": float(m["jacobian_norms"].mean()),
        "top_singular_value": float(m["spectrum"][0]),
        "singular_values_for_90pct": int(np.searchsorted(energy, 0.9) + 1),
    }
    for i in (0, -1):
        out[f"contraction_ratio_r{RADII[i]:g}"] = float(m["ratios"][i].mean())
    if ctx.config.model.get("code_activation") == "sigmoid":
        out["saturated_fraction"] = regularization.saturated_fraction(ctx.eval.code)
    return out
