"""Report "inpainting": fill the missing pixels of the test split under four masks, measured on the missing
pixels only (`aejax.analysis.inpainting`), the run's fills beside the mean image and PCA.

Fills, per mask (centre 12 x 12 where it fits, right half, random 50% and 80% missing):
- "mean": the mean training image (always);
- "pca_<K>" ("pca"): iterated projection onto the top-K principal subspace of the train split, K the run's code
  size (left out when K >= min(N, D));
- "autoencoder": iterated projection x_miss <- r(x)_miss (observed kept) from the mean image, until no pixel
  moves by more than 1e-4, at most 100 reconstructions;
- "one_pass": r(x~) of the masked input x~ (missing pixels 0: the masking corruption a DAE is trained to undo);
- "code_fit", not for VAEs: the code that best explains the observed pixels under the run's likelihood
  (`latent_inpainting.fit_codes`: `fit_steps` Adam steps, peak step `fit_lr`, from the encoder's code of the
  mean fill), decoded on the missing pixels; "code_fit_prior": the same plus the Gaussian fitted to the
  training codes, weight `prior_weight` (1: the MAP code under that Gaussian);
- "pseudo_gibbs", VAE runs only: 50 steps z ~ q(z | x), x_miss ~ p(x_miss | z) (Bernoulli draws when the run's
  data are binarised, else the decoder mean), the fill the mean of E[x_miss | z] over the last 25 steps;
- "map", VAE runs only: the code fit with the VAE's N(0, I) prior (weight 1), the MAP code of p(z | x_obs);
- "importance", VAE runs only: E[x_miss | x_obs] by `samples` importance samples from q(z | the MAP fill)
  (`latent_inpainting.importance_fill`); its effective sample size is reported.

  python launch.py --workdir=DIR --eval_only --reports=inpainting     # on any finished image run

Settings read from `config.analysis.inpainting_<name>` when the config has them: `images` (test images used, 0 =
all), `fills` (comma separated, default every fill that applies), `mask_seed` (default config.seed: set it to
fill the same masks across training seeds), and `fit_steps`, `fit_lr`, `prior_weight`, `samples` (DEFAULTS).

Writes inpainting_<mask>.png (masked input / each fill / truth, 10 test images).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aejax.analysis import inpainting, latent_inpainting  # noqa: E402
from aejax.analysis.batched import batched_apply  # noqa: E402
from aejax.analysis.reports import REPORTS, RunContext  # noqa: E402
from aejax.models.vae import AbstractVAE  # noqa: E402

MAX_ITERS, TOL = 100, 1e-4
GIBBS_STEPS, GIBBS_BURN_IN = 50, 25
NUM_IMAGES = 10
CHUNK = 500
# The code-space fills' defaults (`config.analysis.inpainting_<name>` overrides each): Adam steps and peak step
# size of `latent_inpainting.fit_codes`, the weight of the training codes' Gaussian in "code_fit_prior" (a VAE's
# MAP fill always weighs its N(0, I) prior by 1), importance samples. 50 steps at 0.2 fit the main job's AE on
# random50 as well as 100 at 0.1 (squared error 5.3 vs 5.2 on 300 test digits) at half the cost.
DEFAULTS = dict(fit_steps=50, fit_lr=0.2, prior_weight=1.0, samples=200)
FILLS = ("pca", "autoencoder", "one_pass", "code_fit", "code_fit_prior", "pseudo_gibbs", "map", "importance")
VAE_ONLY = ("pseudo_gibbs", "map", "importance")
NOT_VAE = ("code_fit", "code_fit_prior")  # a VAE's code fill is "map", under its own prior


def setting(ctx: RunContext, name: str):
    """`config.analysis.inpainting_<name>` when the config has it, else DEFAULTS[name] (mask_seed: config.seed)."""
    default = ctx.config.seed if name == "mask_seed" else DEFAULTS.get(name)
    value = ctx.config.analysis.get(f"inpainting_{name}", None)
    return default if value is None else value


def chosen_fills(ctx: RunContext) -> tuple[str, ...]:
    """The fills `config.analysis.inpainting_fills` names (comma separated; default all that apply to the model).

    Raises:
      KeyError: for an unknown fill, listing the known ones; ValueError: for a VAE-only fill on another model.
    """
    vae = isinstance(ctx.model, AbstractVAE)
    spec = ctx.config.analysis.get("inpainting_fills", "") or ""
    names = [f.strip() for f in spec.split(",") if f.strip()]
    if not names:
        return tuple(f for f in FILLS if f not in (NOT_VAE if vae else VAE_ONLY))
    unknown = sorted(set(names) - set(FILLS))
    if unknown:
        raise KeyError(f"Unknown inpainting fills {unknown}; known: {', '.join(FILLS)}.")
    refused = [f for f in names if f in (NOT_VAE if vae else VAE_ONLY)]
    if refused:
        why = "a VAE's code fill is 'map', under its N(0, I) prior" if vae else "they need a VAE"
        raise ValueError(f"Fills {refused} do not apply to the run's {type(ctx.model).__name__}: {why}.")
    return tuple(names)


def encoder(ctx: RunContext):
    """x [N, ...] -> codes [N, K] (a VAE's posterior mean)."""

    def apply(xb, variables):
        return ctx.model.apply(variables, xb, method="encode")

    return lambda x: batched_apply(apply, x, ctx.variables, batch_size=CHUNK)


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


def code_filler(ctx: RunContext, with_prior: bool):
    """(x, missing, z0) -> (fill, objective [N]): `latent_inpainting.fit_codes` with the run's likelihood, from
    codes z0 [N, K]; with_prior: for a VAE the MAP code under N(0, I), else under the Gaussian fitted to the
    training codes with weight `prior_weight`; without: the observed pixels alone."""
    prior, weight = None, 0.0
    if with_prior and isinstance(ctx.model, AbstractVAE):
        prior, weight = latent_inpainting.standard_normal_prior(ctx.model.code_dim), 1.0
    elif with_prior:
        weight = float(setting(ctx, "prior_weight"))
        prior = latent_inpainting.gaussian_code_prior(encoder(ctx)(np.asarray(ctx.train_split.x, np.float32)))
    steps, lr = int(setting(ctx, "fit_steps")), float(setting(ctx, "fit_lr"))

    def one(batch, variables):
        xb, mb, zb = batch

        def decode(z):
            return ctx.model.apply(variables, z, method="decode")

        fit = latent_inpainting.fit_codes(
            decode, ctx.likelihood.elementwise_nll, ctx.likelihood.mean, xb, mb, zb,
            prior=prior, prior_weight=weight, steps=steps, learning_rate=lr,
        )  # fmt: skip
        return fit.x, fit.objective

    return lambda x, missing, z0: batched_apply(one, (x, missing, z0), ctx.variables, batch_size=CHUNK)


def importance_filler(ctx: RunContext):
    """(x, missing, x_proposal) -> (fill, ess [N]): `latent_inpainting.importance_fill` of a VAE run with the
    proposal q(z | x_proposal), `samples` draws per image."""
    samples = int(setting(ctx, "samples"))

    def one(batch, key, variables):
        xb, mb, pb = batch
        mu, logvar = ctx.model.apply(variables, pb, method="posterior")
        return latent_inpainting.importance_fill(
            lambda z: ctx.model.apply(variables, z, method="decode"),
            ctx.likelihood.elementwise_nll, ctx.likelihood.mean, xb, mb, mu, logvar, key, num_samples=samples,
        )  # fmt: skip

    key = jax.random.fold_in(jax.random.key(ctx.config.seed), 1)
    return lambda x, missing, xp: batched_apply(one, (x, missing, xp), ctx.variables, batch_size=CHUNK, rng=key)


def fills(ctx: RunContext, x: np.ndarray, missing: np.ndarray, cache: dict | None = None) -> dict:
    """{fill name: ([N, ...] filled images, {extra numbers})} of x under `missing` for the fills `chosen_fills`
    names (see the module doc); `cache` holds the jitted appliers across masks (filled on first use)."""
    cache = {} if cache is None else cache

    def get(name, make):  # built once per report, so each jitted applier compiles once across masks
        if name not in cache:
            cache[name] = make(ctx)
        return cache[name]

    chosen = chosen_fills(ctx)
    train_x = np.asarray(ctx.train_split.x, np.float32)
    mean = train_x.mean(axis=0)
    mean_fill = np.where(missing, mean, x)
    out = {"mean": (mean_fill, {})}
    k = ctx.eval.code.shape[1]
    if "pca" in chosen and k < min(len(train_x), int(np.prod(train_x.shape[1:]))):
        project, _ = inpainting.pca_projector(train_x, k)
        f = inpainting.iterated_projection(project, x, missing, init=mean, max_iters=MAX_ITERS, tol=TOL)
        out[f"pca_{k}"] = (f.x, {"iterations": float(f.iterations.mean()), "converged": float(f.converged.mean())})
    r = get("r", reconstructor)
    if "autoencoder" in chosen:
        f = inpainting.iterated_projection(r, x, missing, init=mean, max_iters=MAX_ITERS, tol=TOL)
        extra = {"iterations": float(f.iterations.mean()), "converged": float(f.converged.mean())}
        out["autoencoder"] = (f.x, extra)
    if "one_pass" in chosen:
        out["one_pass"] = (np.where(missing, r(inpainting.masked_input(x, missing)), x), {})
    if "pseudo_gibbs" in chosen:
        step = get("step", gibbs_step)
        filled = inpainting.pseudo_gibbs(step, x, missing, init=mean, num_steps=GIBBS_STEPS, burn_in=GIBBS_BURN_IN)
        out["pseudo_gibbs"] = (filled, {})
    code_fill = None
    for name, with_prior in (("code_fit", False), ("code_fit_prior", True), ("map", True)):
        if name in chosen or (name == "map" and "importance" in chosen):
            z0 = get("encode", encoder)(mean_fill)
            code_fill, objective = get(name, lambda c, p=with_prior: code_filler(c, p))(x, missing, z0)
            if name in chosen:
                out[name] = (code_fill, {"objective": float(objective.mean())})
    if "importance" in chosen:  # the proposal q(z | MAP fill): near the posterior, and blind to x_miss
        filled, ess = get("importance", importance_filler)(x, missing, code_fill)
        out["importance"] = (filled, {"ess": float(ess.mean())})
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
    cache = {}
    for mask in inpainting.applicable_masks(x.shape[1:]):  # no 12 x 12 square in 8 x 8 digits
        missing = inpainting.make_missing(mask, x.shape[1:], len(x), seed=int(setting(ctx, "mask_seed")))
        out[f"{mask}/missing_fraction"] = float(missing.mean())
        rows, titles = [np.where(missing, 0.5, x)[:NUM_IMAGES]], [f"{mask}\n(grey: missing)"]
        for name, (filled, extra) in fills(ctx, x, missing, cache).items():
            sq_err, psnr = inpainting.missing_pixel_errors(filled, x, missing)
            out[f"{mask}/{name}/sq_err"], out[f"{mask}/{name}/psnr"] = float(sq_err.mean()), float(psnr.mean())
            out.update({f"{mask}/{name}/{k}": v for k, v in extra.items()})
            rows.append(np.clip(filled[:NUM_IMAGES], 0, 1))
            titles.append(f"{name}\n{psnr.mean():.1f} dB")
        rows.append(x[:NUM_IMAGES])
        titles.append("truth")
        _figure(rows, titles, os.path.join(ctx.workdir, f"inpainting_{mask}.png"))
    return out
