"""Figures of the sequence autoencoders: reconstructions overlaid on series, and a series with its labelled
anomaly shaded above the per-point scores of several detectors."""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def reconstructions(x: np.ndarray, recon: np.ndarray, lengths: np.ndarray, path: str, *, titles=None, n=6) -> None:
    """Originals [N, T, C] (solid) with reconstructions [N, T, C] (dashed) of the first n series, first channel
    only when C > 3; each series drawn over its valid length."""
    n = min(n, len(x))
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        length = int(lengths[i])
        for c in range(min(3, x.shape[-1])):
            line = ax.plot(x[i, :length, c], lw=1.2)[0]
            ax.plot(recon[i, :length, c], "--", lw=1.0, color=line.get_color())
        ax.set_title(titles[i] if titles is not None else f"series {i}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(["original", "reconstruction"], fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _shade(ax, anomaly: np.ndarray, offset: int) -> None:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], anomaly, [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        ax.axvspan(offset + start - 0.5, offset + stop - 0.5, color="red", alpha=0.25, lw=0)


def detector_scores(
    values: np.ndarray,
    anomaly: np.ndarray,
    scores: dict[str, np.ndarray],
    path: str,
    *,
    offset: int = 0,
    title: str = "",
) -> None:
    """The series [T] with its anomaly [T] 0/1 shaded, and below it one panel per detector's scores [T] (each
    min-max scaled to [0, 1]); x axis in the series' point index starting at `offset`."""
    fig, axes = plt.subplots(1 + len(scores), 1, figsize=(11, 1.3 * (1 + len(scores)) + 0.6), sharex=True)
    t = offset + np.arange(len(values))
    axes[0].plot(t, values, lw=0.6, color="k")
    axes[0].set_title(title, fontsize=9)
    _shade(axes[0], anomaly, offset)
    for ax, (name, s) in zip(axes[1:], scores.items(), strict=True):
        s = np.asarray(s, float)
        s = (s - np.nanmin(s)) / max(np.nanmax(s) - np.nanmin(s), 1e-12)
        ax.plot(t, s, lw=0.7)
        _shade(ax, anomaly, offset)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1].set_xlabel("point")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
