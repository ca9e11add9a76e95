"""Benchmark: steps and wall time of jitted ISTA / FISTA to a relative energy gap (PSD-sized).

Problem: 12x12 = 144-dim patches of scikit-image's bundled `camera` image (mean removed; the
higher-contrast half of 2 * batch random patches, each scaled to unit norm), a random Gaussian
dictionary of K = 256 unit-norm atoms, batch 1000. The optimum E* per example comes from
scikit-learn's coordinate-descent Lasso in float64, independent of the code under test. A method
"reaches" the gap at the first step k where every example has (E(z_k) - E*) / E* <= gap.

Run by hand (a minute or two on 2 CPU cores):

    python benchmarks/bench_inference.py [--batch 1000] [--lam 0.1] [--gap 1e-4]
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import skimage.data
from sklearn.linear_model import Lasso

from aejax.sparse_coding import fista, ista


def patches(batch: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """[batch, size * size] zero-mean, unit-norm patches of the camera image."""
    image = skimage.data.camera().astype(np.float64) / 255.0
    rows = rng.integers(0, image.shape[0] - size, 2 * batch)
    cols = rng.integers(0, image.shape[1] - size, 2 * batch)
    x = np.stack([image[r : r + size, c : c + size].ravel() for r, c in zip(rows, cols, strict=True)])
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1)
    # Flat patches (sky) would be coded by z = 0 in one step and flatter the median step count.
    keep = np.argsort(norm)[batch:]
    return x[keep] / norm[keep, None]


def lasso_optimum(x: np.ndarray, D: np.ndarray, lam: float) -> np.ndarray:
    """E* [B] in float64 from sklearn (objective 1/(2n) ||y - D w||^2 + (lam / n) ||w||_1)."""
    n = D.shape[0]
    lasso = Lasso(alpha=lam / n, fit_intercept=False, tol=1e-10, max_iter=50_000)
    z = lasso.fit(D, x.T).coef_  # multi-target fit: one Lasso per example, [B, K]
    return 0.5 * ((x - z @ D.T) ** 2).sum(1) + lam * np.abs(z).sum(1)


def steps_to_gap(trace: jax.Array, f_star: np.ndarray, gap: float) -> tuple[int | None, float]:
    """(first step where all examples are within gap, median over examples of their first step)."""
    rel = (np.asarray(trace, np.float64) - f_star) / f_star  # [T, B]
    reached = rel <= gap
    per_example = np.where(reached.any(0), reached.argmax(0) + 1, np.nan)
    all_reached = reached.all(1)
    first = int(all_reached.argmax()) + 1 if all_reached.any() else None
    return first, float(np.median(per_example))


def wall_ms(fn, repeats: int = 5) -> float:
    """Best-of-repeats wall time in ms of a compiled call (the first call compiles, untimed)."""
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--atoms", type=int, default=256)
    parser.add_argument("--size", type=int, default=12)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--gap", type=float, default=1e-4)
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x64 = patches(args.batch, args.size, rng)
    D64 = rng.normal(size=(args.size**2, args.atoms))
    D64 /= np.linalg.norm(D64, axis=0)
    start = time.perf_counter()
    f_star = lasso_optimum(x64, D64, args.lam)
    ref_s = time.perf_counter() - start
    x, D = jnp.asarray(x64, jnp.float32), jnp.asarray(D64, jnp.float32)

    solvers = {
        "ISTA": ista,
        "FISTA (no restart)": functools.partial(fista, restart=False),
        "FISTA (restart)": fista,
    }
    rows = []
    for name, solver in solvers.items():
        _, info = solver(x, D, lam=args.lam, num_steps=args.max_steps, return_info=True)
        first, median = steps_to_gap(info.objective, f_star, args.gap)
        if first is None:
            rows.append(f"| {name} | > {args.max_steps} | {median:.0f} | - | - |")
            continue
        ms = wall_ms(lambda s=solver, k=first: s(x, D, lam=args.lam, num_steps=k))
        rows.append(f"| {name} | {first} | {median:.0f} | {ms:.1f} | {ms / first:.3f} |")
    z, info = fista(x, D, lam=args.lam, tol=1e-4, max_steps=args.max_steps, return_info=True)
    k = int(info.num_steps)
    ms = wall_ms(lambda: fista(x, D, lam=args.lam, tol=1e-4, max_steps=args.max_steps))
    rel = np.max((np.asarray(info.objective[k - 1], np.float64) - f_star) / f_star)
    rows.append(f"| FISTA (restart, tol=1e-4; max gap {rel:.1e}) | {k} | - | {ms:.1f} | {ms / k:.3f} |")

    nnz = float((np.asarray(z) != 0).sum(1).mean())
    lipschitz = jax.jit(lambda d: jnp.linalg.norm(d, 2) ** 2)
    svd_ms = wall_ms(lambda: lipschitz(D))
    print(f"x [{args.batch}, {args.size**2}], D [{args.size**2}, {args.atoms}], lam {args.lam}")
    print(f"mean nonzeros {nnz:.1f} / {args.atoms}, sklearn reference {ref_s:.1f} s")
    print(f"wall ms include L = ||D||_2^2 by SVD, {svd_ms:.1f} ms (skip it with lipschitz=)")
    print()
    print(f"| method | steps to {args.gap:g} gap (all) | median steps | wall ms | ms / step |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
