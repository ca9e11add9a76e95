"""Report "inpainting": fill the missing pixels of the test split under four masks, measured on the missing
pixels only (`aejax.analysis.inpainting`), the run's fills beside the mean image and PCA.

Fills, per mask (centre 12 x 12 where it fits, right half, random 50% and 80% missing, seeded by config.seed):
- "mean": the mean training image;
- "pca_<K>": iterated projection onto the top-K principal subspace of the train split, K the run's code size
  (left out when K >= min(N, D));
- "autoencoder": iterated projection x_miss <- r(x)_miss (observed kept) from the mean image, until no pixel
  moves by more than 1e-4, at most 100 reconstructions;
- "one_pass": r(x~) of the masked input x~ (missing pixels 0: the masking corruption a DAE is trained to undo);
- "pseudo_gibbs", VAE runs only: 50 steps z ~ q(z | x), x_miss ~ p(x_miss | z) (Bernoulli draws when the run's
  data are binarised, else the decoder mean), the fill the mean of E[x_miss | z] over the last 25 steps.

  python launch.py --workdir=DIR --eval_only --reports=inpainting     # on any finished image run

`config.analysis.inpainting_images` (when the config has it; default 0 = all) limits the test images used.

Writes inpainting_<mask>.png (masked input / each fill / truth, 10 test images).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aejax.analysis import inpainting  # noqa: E402
from aejax.analysis.batched import batched_apply  # noqa: E402
from aejax.analysis.reports import REPORTS, RunContext  # noqa: E402
from aejax.models.vae import VAE  # noqa: E402

MAX_ITERS, TOL = 100, 1e-4
GIBBS_STEPS, GIBBS_BURN_IN = 50, 25
NUM_IMAGES = 10
CHUNK = 500


def reconstructor(ctx: RunContext):
    """x [N, ...] -> r(x) [N, ...], the mean reconstruction (for a VAE at z = mu)."""

    # One function object for every call: `batched_apply` compiles it once.
    def apply(xb, variables):
        return ctx.likelihood.mean(ctx.model.apply(variables, xb).decoder_output)

    return lambda x: batched_apply(apply, x, ctx.variables, batch_size=CHUNK)


def gibbs_step(ctx: RunContext):
    """The `inpainting.pseudo_gibbs` step of a VAE run: (x, t) -> (E[x | z_t], a draw of x | z_t)."""
    binary = ctx.config.transforms.binarize != "none"
    base = jax.random.key(ctx.config.seed)

    def one(xb, key, variables):
        k_z, k_x = jax.random.split(key)
        mu, logvar = ctx.model.apply(variables, xb, method="posterior")
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape, mu.dtype)
        mean = ctx.likelihood.mean(ctx.model.apply(variables, z, method="decode"))
        sample = jax.random.bernoulli(k_x, mean).astype(mean.dtype) if binary else mean
        return mean, sample

    def step(x, t):
        # Chunk i of step t draws from fold_in(fold_in(base, t), i).
        return batched_apply(one, x, ctx.variables, batch_size=CHUNK, rng=jax.random.fold_in(base, t))

    return step


def fills(ctx: RunContext, x: np.ndarray, missing: np.ndarray, r=None, step=None) -> dict:
    """{fill name: ([N, ...] filled images, {extra numbers})} of x under `missing` (see the module doc); `r`
    and `step` default to `reconstructor(ctx)` and, for a VAE, `gibbs_step(ctx)`."""
    train_x = np.asarray(ctx.train_split.x, np.float32)
    mean = train_x.mean(axis=0)
    out = {"mean": (np.where(missing, mean, x), {})}
    k = ctx.eval.code.shape[1]
    if k < min(len(train_x), int(np.prod(train_x.shape[1:]))):
        project, _ = inpainting.pca_projector(train_x, k)
        f = inpainting.iterated_projection(project, x, missing, init=mean, max_iters=MAX_ITERS, tol=TOL)
        out[f"pca_{k}"] = (f.x, {"iterations": float(f.iterations.mean()), "converged": float(f.converged.mean())})
    r = r or reconstructor(ctx)
    f = inpainting.iterated_projection(r, x, missing, init=mean, max_iters=MAX_ITERS, tol=TOL)
    out["autoencoder"] = (f.x, {"iterations": float(f.iterations.mean()), "converged": float(f.converged.mean())})
    out["one_pass"] = (np.where(missing, r(inpainting.masked_input(x, missing)), x), {})
    if isinstance(ctx.model, VAE):
        filled = inpainting.pseudo_gibbs(
            step or gibbs_step(ctx), x, missing, init=mean, num_steps=GIBBS_STEPS, burn_in=GIBBS_BURN_IN
        )
        out["pseudo_gibbs"] = (filled, {})
    return out


def _figure(rows: list[np.ndarray], titles: list[str], path: str) -> None:
    """One strip per row of images [n, H, W(, 1)] in [0, 1], a 1-pixel grey gap between images; one axes per row
    (image_rows' axes per image cost seconds for figures of this many images)."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.05 * len(rows)), squeeze=False)
    for ax, row, title in zip(axes[:, 0], rows, titles, strict=True):
        imgs = np.asarray(row).reshape(len(row), row.shape[1], row.shape[2])
        gap = np.full((imgs.shape[1], 1), 0.5)
        strip = np.concatenate([np.concatenate([im, gap], axis=1) for im in imgs], axis=1)[:, :-1]
        ax.imshow(np.clip(strip, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@REPORTS.register("inpainting")
def report(ctx: RunContext) -> dict:
    """Inpainting of the test split under every mask of `inpainting.MASKS` by every fill (see the module doc).

    Returns:
      "<mask>/<fill>/sq_err" (mean over test images of the squared error summed over the missing pixels),
      "<mask>/<fill>/psnr" (mean PSNR on the missing pixels, dB), "<mask>/missing_fraction", "num_images", and
      for the iterated fills "<mask>/<fill>/iterations" (mean projections) and ".../converged" (fraction
      settled).
      Nothing is computed for non-image data (returns {}).
    """
    if ctx.test_split.kind != "image":
        return {}
    x = np.asarray(ctx.test_split.x, np.float32)
    limit = int(ctx.config.analysis.get("inpainting_images", 0) or 0)
    x = x[:limit] if limit > 0 else x
    out = {"num_images": len(x)}
    r, step = reconstructor(ctx), gibbs_step(ctx) if isinstance(ctx.model, VAE) else None
    for mask in inpainting.applicable_masks(x.shape[1:]):  # no 12 x 12 square in 8 x 8 digits
        missing = inpainting.make_missing(mask, x.shape[1:], len(x), seed=ctx.config.seed)
        out[f"{mask}/missing_fraction"] = float(missing.mean())
        rows, titles = [np.where(missing, 0.5, x)[:NUM_IMAGES]], [f"{mask}\n(grey: missing)"]
        for name, (filled, extra) in fills(ctx, x, missing, r, step).items():
            sq_err, psnr = inpainting.missing_pixel_errors(filled, x, missing)
            out[f"{mask}/{name}/sq_err"], out[f"{mask}/{name}/psnr"] = float(sq_err.mean()), float(psnr.mean())
            out.update({f"{mask}/{name}/{k}": v for k, v in extra.items()})
            rows.append(np.clip(filled[:NUM_IMAGES], 0, 1))
            titles.append(f"{name}\n{psnr.mean():.1f} dB")
        rows.append(x[:NUM_IMAGES])
        titles.append("truth")
        _figure(rows, titles, os.path.join(ctx.workdir, f"inpainting_{mask}.png"))
    return out
