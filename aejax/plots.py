"""Figures of a run (matplotlib, Agg backend: no display needed)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aejax.objectives import NLL, eval_key  # noqa: E402


def _as_images(x: np.ndarray) -> np.ndarray:
    """[N, H, W, C] or [N, D] (D a square) -> [N, H, W] or [N, H, W, 3] for imshow."""
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        x = x.reshape(len(x), side, side, 1)
    return x[..., 0] if x.shape[-1] == 1 else x


def _display_range(img: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] are shown as they are; other data (whitened patches, filters) is min-max scaled."""
    if img.min() >= -1e-3 and img.max() <= 1 + 1e-3:
        return np.clip(img, 0, 1)
    lo, hi = img.min(), img.max()
    return (img - lo) / max(hi - lo, 1e-12)


def image_rows(rows: list[np.ndarray], titles: list[str], path: str, *, n: int = 10) -> None:
    """One row of the first n images per array (e.g. originals over reconstructions)."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0), squeeze=False)
    for r, (row, title) in enumerate(zip(rows, titles, strict=True)):
        imgs = _as_images(np.asarray(row)[:n])
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_display_range(imgs[c]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latent_scatter(points: np.ndarray, labels: np.ndarray, path: str, *, title: str) -> None:
    """[N, 2] points coloured by integer label."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    handles, names = sc.legend_elements()
    ax.legend(handles, names, title="label", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curves(rows: list[dict], path: str, *, keys: tuple[str, ...] = ("loss",)) -> None:
    """Curves of logged scalars against step: train keys and every "eval/..." key present."""
    fig, ax = plt.subplots(figsize=(7, 4))
    all_keys = sorted({k for r in rows for k in r if k != "step"})
    plotted = [k for k in all_keys if k in keys or k.startswith("loss/") or k.startswith(eval_key(NLL))]
    for key in plotted:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            s, v = zip(*pts, strict=True)
            ax.plot(s, v, label=key, marker="o" if key.startswith("eval") else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per example")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
