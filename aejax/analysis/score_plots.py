"""Figures of the DAE score analysis (matplotlib, Agg): DL book Figs 14.4 and 14.5, 1-D scores, sweep, samples."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from aejax.analysis import densities
from aejax.analysis.score import Reconstruct, dae_score, tweedie_target

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _curve_line(ax, curve: densities.AbstractCurve) -> None:
    t = jnp.linspace(*curve.t_range, 800)
    pts = np.asarray(curve.point(t))
    ax.plot(pts[:, 0], pts[:, 1], color="tab:blue", lw=1.5, label="manifold")


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def field_quiver(
    reconstruct: Reconstruct, curve: densities.AbstractCurve, data: np.ndarray, path: str, *, n: int = 29
) -> None:
    """DL book Fig 14.5: arrows r(x) - x on an n x n grid around the curve; they point to the manifold.

    Args:
      reconstruct: [B, 2] -> [B, 2].
      curve: the data manifold, drawn as a line.
      data: [N, 2] training samples, drawn faintly.
      path: output .png.
      n: grid points per axis.
    """
    lim = float(np.abs(data).max()) + 0.15
    g = np.linspace(-lim, lim, n, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    disp = np.asarray(reconstruct(jnp.asarray(grid))) - grid
    fig, ax = plt.subplots(figsize=(6.2, 6))
    ax.scatter(data[:800, 0], data[:800, 1], s=2, color="0.75", label="training data")
    _curve_line(ax, curve)
    ax.quiver(
        grid[:, 0],
        grid[:, 1],
        disp[:, 0],
        disp[:, 1],
        angles="xy",
        scale_units="xy",
        scale=1.0,
        width=0.003,
        color="tab:red",
    )
    ax.set_aspect("equal")
    ax.set_title("r(x) - x of a DAE (arrows to scale): toward the manifold")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def corruption_denoising(
    reconstruct: Reconstruct,
    curve: densities.AbstractCurve,
    rng: jax.Array,
    path: str,
    *,
    sigma: float,
    n: int = 40,
) -> None:
    """DL book Fig 14.4: x on the manifold -> corrupted x~ = x + sigma eps (grey) -> r(x~) (red), back to it."""
    p_rng, e_rng = jax.random.split(rng)
    x = np.asarray(curve.sample(p_rng, n))
    x_tilde = x + sigma * np.asarray(jax.random.normal(e_rng, x.shape))
    r = np.asarray(reconstruct(jnp.asarray(x_tilde)))
    fig, ax = plt.subplots(figsize=(6.2, 6))
    _curve_line(ax, curve)
    for a, b, c, style in ((x, x_tilde, "0.5", "--"), (x_tilde, r, "tab:red", "-")):
        for i in range(n):
            ax.annotate("", b[i], a[i], arrowprops=dict(arrowstyle="->", color=c, ls=style, lw=0.9))
    ax.scatter(x[:, 0], x[:, 1], s=10, color="k", label="x (data)", zorder=3)
    ax.scatter(x_tilde[:, 0], x_tilde[:, 1], s=10, color="0.5", label="x~ = x + sigma eps", zorder=3)
    ax.scatter(r[:, 0], r[:, 1], s=10, color="tab:red", label="r(x~)", zorder=3)
    ax.set_aspect("equal")
    ax.set_title(f"corruption (grey) and denoising (red), sigma = {sigma}")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def score_1d(
    estimates: dict[str, Reconstruct], density: densities.GaussianMixture, path: str, *, sigma: float
) -> None:
    """Learned scores (r(x) - x) / sigma^2 against the true score and the Tweedie target, with p(x) below.

    Args:
      estimates: label -> reconstruct [B, 1] -> [B, 1] (e.g. {"DAE": dae, "RCAE": rcae}).
      density: the 1-D mixture.
      path: output .png.
      sigma: the training corruption of every estimate.
    """
    lo, hi = float(density.means.min()) - 1.5, float(density.means.max()) + 1.5
    x = jnp.linspace(lo, hi, 400)[:, None]
    fig, (ax, ax_p) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(3, 1))
    ax.plot(x[:, 0], density.score(x)[:, 0], color="k", lw=1.5, label="true score d log p / dx")
    ax.plot(x[:, 0], tweedie_target(density, x, sigma)[:, 0], color="k", ls="--", label="Tweedie target")
    for label, fn in estimates.items():
        ax.plot(x[:, 0], dae_score(fn, x, sigma)[:, 0], lw=1.2, label=f"{label} (r(x) - x) / sigma^2")
    ax.set_ylim(-12, 12)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_title(f"score estimates at sigma = {sigma}")
    ax.legend(fontsize=8)
    ax_p.plot(x[:, 0], jnp.exp(density.log_prob(x)), color="k", label="p")
    ax_p.plot(x[:, 0], jnp.exp(density.smoothed(sigma).log_prob(x)), color="k", ls="--", label="p_sigma")
    ax_p.legend(fontsize=8)
    ax_p.set_xlabel("x")
    _save(fig, path)


def sigma_sweep(rows: list[dict], path: str) -> None:
    """Bias (to the true score), seed-to-seed std and the Tweedie gap of the score estimate against sigma."""
    s = [r["sigma"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, label, style in (
        ("rel_bias", "bias: ||mean_seeds s - score|| (rel.)", "o-"),
        ("rel_std", "std across seeds (rel.)", "s-"),
        ("tweedie_gap", "exact Tweedie target vs score", "k--"),
    ):
        ax.plot(s, [r[key] for r in rows], style, label=label, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("corruption sigma")
    ax.set_ylabel("relative RMSE (1 = zero field)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


def samples(sets: dict[str, np.ndarray], path: str, *, title: str = "") -> None:
    """Sample sets [N, D], D in {1, 2}: overlaid histograms (1-D) or one scatter panel per set (2-D)."""
    dim = next(iter(sets.values())).shape[1]
    if dim == 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, v in sets.items():
            ax.hist(v[:, 0], bins=80, density=True, histtype="step", label=label)
        ax.legend(fontsize=8)
        ax.set_title(title)
    else:
        fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.4), sharex=True, sharey=True)
        for ax, (label, v) in zip(np.atleast_1d(axes), sets.items(), strict=True):
            ax.scatter(v[:, 0], v[:, 1], s=1.5, alpha=0.6)
            ax.set_title(label, fontsize=9)
            ax.set_aspect("equal")
        fig.suptitle(title)
    _save(fig, path)
