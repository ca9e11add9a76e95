"""Sparsity report: the code activation histogram, the mean activation, and the learned filters.

The numbers of the Keras / Dutch tutorials (mean code activation, 6.6 unregularized vs 0.8 with L1) and of Ng's
KL sparsity (per-unit mean activation rho_hat near rho). The comparison against the plain autoencoder is in
experiments/regularized_family, which trains both and overlays `plot_histograms` of the two.
"""

import os

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np

from aejax.analysis import regularization
from aejax.analysis.reports import REPORTS, RunContext
from aejax.models.mlp import FIRST_ENCODER

MAX_FILTERS = 100


def plot_histograms(
    stats: dict[str, regularization.CodeStatistics], path: str, *, rho: float | None = None
) -> None:
    """Histogram of code activations (log counts) per model, each labelled with its mean activation."""
    fig, (ax_h, ax_u) = plt.subplots(1, 2, figsize=(11, 4))
    for label, s in stats.items():
        centers = 0.5 * (s.hist_edges[1:] + s.hist_edges[:-1])
        density = s.hist_counts / max(s.hist_counts.sum(), 1)
        ax_h.step(centers, density, where="mid", label=f"{label} (mean {s.mean_activation:.3g})")
        ax_u.hist(s.unit_means, bins=40, alpha=0.6, label=label)
    if rho is not None:
        ax_u.axvline(rho, color="k", ls="--", lw=1, label=f"rho = {rho}")
    ax_h.set(yscale="log", xlabel="code activation h_j", ylabel="fraction of activations")
    ax_h.set_title("code activations, test set")
    ax_u.set(xlabel="mean activation of a unit over the test set (rho_hat_j)", ylabel="units")
    for ax in (ax_h, ax_u):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_filters(kernel: np.ndarray, input_shape: tuple[int, ...], path: str, *, title: str = "") -> None:
    """The first-layer filters: columns of the encoder kernel [D, K] as images, each min-max scaled."""
    k = min(kernel.shape[1], MAX_FILTERS)
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            img = kernel[:, i].reshape(input_shape)
            img = img[..., 0] if img.shape[-1] == 1 else img
            ax.imshow((img - img.min()) / max(float(np.ptp(img)), 1e-12), cmap="gray")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@REPORTS.register("sparsity")
def report(ctx: RunContext) -> dict:
    """Writes sparsity_histogram.png, sparsity_filters.png (image data only) and sparsity.npz (histogram, per-unit
    means).

    Returns:
      {"mean_activation", "fraction_near_zero" (|h| <= 0.05), "median_unit_activation"} and, with a KL
      sparsity penalty, its target "rho".
    """
    stats = regularization.code_statistics(ctx.eval.code)
    rho = (
        ctx.config.regularizers["kl_sparsity"].get("rho", 0.05)
        if "kl_sparsity" in ctx.config.regularizers
        else None
    )
    penalties = ", ".join(ctx.config.regularizers.keys()) or "no penalty"
    plot_histograms({penalties: stats}, os.path.join(ctx.workdir, "sparsity_histogram.png"), rho=rho)
    if ctx.test_split.kind == "image":  # a vector's or series' filters are not pictures
        kernel = np.asarray(ctx.params[FIRST_ENCODER]["kernel"])  # [D, K]: the filters of the first layer
        plot_filters(
            kernel,
            tuple(ctx.test_split.x.shape[1:]),
            os.path.join(ctx.workdir, "sparsity_filters.png"),
            title=penalties,
        )
    np.savez(
        os.path.join(ctx.workdir, "sparsity.npz"),
        hist_counts=stats.hist_counts,
        hist_edges=stats.hist_edges,
        unit_means=stats.unit_means,
    )
    out = {
        "mean_activation": stats.mean_activation,
        "fraction_near_zero": stats.fraction_near_zero,
        "median_unit_activation": float(np.median(stats.unit_means)),
    }
    if rho is not None:
        out["rho"] = float(rho)
    return out
