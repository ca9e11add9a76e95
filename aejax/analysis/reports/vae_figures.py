"""Report "vae_figures": what a trained VAE's generative model draws.

Writes `<workdir>/prior_samples.png`, the mean images E[x | z] of z ~ N(0, I) drawn from the prior, and, for a
2-D latent space, `<workdir>/manifold.png`: E[x | z] on a grid of z at the prior's quantiles 0.05 ... 0.95 in
each coordinate (Kingma & Welling 2014, Fig. 4), so equal steps are equal prior probability mass; and
`<workdir>/interpolation.png`: for pairs of test digits of different labels, E[x | z] along the straight line
between their posterior means, with the two digits themselves at the ends of each row.
"""

import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from aejax.analysis.reports import REPORTS, RunContext  # noqa: E402


def tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[rows * cols, h, w] images -> one [rows * h, cols * w] image, row-major (image i at row i // cols)."""
    n, h, w = images.shape
    if n != rows * cols:
        raise ValueError(f"tile needs rows * cols = {rows * cols} images, got {n}.")
    return images.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def manifold_grid(n: int) -> np.ndarray:
    """[n * n, 2] latent points at the N(0, 1) quantiles linspace(0.05, 0.95, n) per axis; row r, column c is
    z = (q_c, q_{n-1-r}), so the second coordinate grows upwards."""
    q = stats.norm.ppf(np.linspace(0.05, 0.95, n))
    return np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(n * n, 2).astype(np.float32)


def interpolation_codes(z_start: np.ndarray, z_end: np.ndarray, steps: int) -> np.ndarray:
    """Codes along the segments from z_start to z_end: [P, K], [P, K] -> [P * steps, K], row p * steps + t is
    (1 - a_t) z_start[p] + a_t z_end[p] with a_t = t / (steps - 1), so each row begins and ends at the pair.

    Raises:
      ValueError: for steps < 2 or endpoints of different shapes.
    """
    if steps < 2 or z_start.shape != z_end.shape:
        raise ValueError(f"Need steps >= 2 and equal shapes, got {steps}, {z_start.shape}, {z_end.shape}.")
    a = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]  # [1, steps, 1]
    path = (1.0 - a) * z_start[:, None, :] + a * z_end[:, None, :]  # [P, steps, K]
    return path.reshape(-1, z_start.shape[1])


def interpolation_pairs(labels: np.ndarray, num_pairs: int, seed: int) -> np.ndarray:
    """[num_pairs, 2] test indices of pairs with different labels, drawn with `seed` (so a re-analysis draws
    the same pairs); fewer when the split has one label only."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(20 * num_pairs):
        i, j = rng.choice(len(labels), size=2, replace=False)
        if labels[i] != labels[j]:
            pairs.append((i, j))
        if len(pairs) == num_pairs:
            break
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _save(image: np.ndarray, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1] + 0.4))  # room for the title
    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@REPORTS.register("vae_figures")
def report(ctx: RunContext) -> dict:
    """Draws prior_samples.png (8 x 8 samples), interpolation.png (8 pairs, 10 steps) and, when K = 2,
    manifold.png (15 x 15); returns {"num_prior_samples": 64, "manifold_drawn": 0 or 1, "interpolation_pairs":
    8}. Nothing is drawn for non-image data."""
    k = ctx.eval.code.shape[1]
    shape = tuple(ctx.test_split.x.shape[1:])
    if ctx.test_split.kind != "image":
        return {"num_prior_samples": 0, "manifold_drawn": 0, "interpolation_pairs": 0}

    def images(z: np.ndarray) -> np.ndarray:
        out = ctx.model.apply(ctx.variables, z, method="decode")
        return np.asarray(ctx.likelihood.mean(out)).reshape(len(z), *shape[:2])

    z = np.asarray(jax.random.normal(jax.random.key(ctx.config.seed), (64, k)))
    _save(tile(images(z), 8, 8), os.path.join(ctx.workdir, "prior_samples.png"), "E[x | z], z ~ N(0, I)")
    drawn = k == 2
    if drawn:
        grid = manifold_grid(15)
        _save(tile(images(grid), 15, 15), os.path.join(ctx.workdir, "manifold.png"), "E[x | z] at prior quantiles")

    pairs = interpolation_pairs(np.asarray(ctx.test_split.labels), 8, ctx.config.seed)
    steps = 10
    if len(pairs):
        x = np.asarray(ctx.test_split.x)
        mu = np.asarray(ctx.model.apply(ctx.variables, x[pairs.ravel()], method="encode")).reshape(-1, 2, k)
        path = images(interpolation_codes(mu[:, 0], mu[:, 1], steps)).reshape(len(pairs), steps, *shape[:2])
        ends = x[pairs].reshape(len(pairs), 2, *shape[:2])
        rows = np.concatenate([ends[:, :1], path, ends[:, 1:]], axis=1)  # [P, steps + 2, h, w]
        _save(
            tile(rows.reshape(-1, *shape[:2]), len(pairs), steps + 2),
            os.path.join(ctx.workdir, "interpolation.png"),
            "test digit | E[x | z] from mu(a) to mu(b) | test digit",
        )
    return {"num_prior_samples": 64, "manifold_drawn": int(drawn), "interpolation_pairs": len(pairs)}
