"""Denoising report: corrupted / reconstructed / clean test images and the denoising error of each corruption.

Every run gets it for all three corruptions of `aejax.corruptions` at the config's levels
(`config.corruption.sigma` and `.nu`), so a plain autoencoder and a denoising one are measured the same way;
experiments/regularized_family puts the two side by side. Reference: Vincent et al. (JMLR 2010), the
denoising criterion.
"""

import os

import jax
import numpy as np

from aejax import plots
from aejax.analysis import regularization
from aejax.analysis.reports import REPORTS, RunContext

CORRUPTIONS = {"gaussian": ("sigma",), "masking": ("nu",), "salt_and_pepper": ("nu",)}
NUM_IMAGES = 10


def corruption_levels(corruption_cfg) -> dict[str, dict[str, float | bool]]:
    """{corruption name: its hyperparameters} taken from `config.corruption` (sigma, nu; the Gaussian noise is
    clipped to [0, 1] when the run's corruption clips it, so a DAE is measured on its own corruption)."""
    levels = {name: {k: float(corruption_cfg[k]) for k in keys} for name, keys in CORRUPTIONS.items()}
    levels["gaussian"]["clip"] = bool(corruption_cfg.get("clip", False))
    return levels


def evaluate(ctx: RunContext, x: np.ndarray) -> dict[str, regularization.DenoisingResult]:
    """DenoisingResult per corruption of x [N, *input_shape], with keys fixed by the config's seed."""

    def reconstruct(xb):
        return ctx.likelihood.mean(ctx.model.apply(ctx.variables, xb).decoder_output)

    rng = jax.random.key(ctx.config.seed)
    return {
        name: regularization.denoising_error(reconstruct, x, name, jax.random.fold_in(rng, i), **hparams)
        for i, (name, hparams) in enumerate(corruption_levels(ctx.config.corruption).items())
    }


@REPORTS.register("denoising")
def report(ctx: RunContext) -> dict:
    """Writes denoising.png (per corruption: corrupted and reconstructed rows; the clean row last).

    Returns:
      Per corruption c: "c/sq_err" (mean squared error to the clean test image, summed over pixels), "c/psnr"
      (mean PSNR, dB, peak 1), and the same for the corrupted input itself, "c/corrupted_sq_err",
      "c/corrupted_psnr" (the error of not denoising).
    """
    x = np.asarray(ctx.test_split.x)
    results = evaluate(ctx, x)
    out, rows, titles = {}, [], []
    for name, res in results.items():
        out[f"{name}/sq_err"] = float(res.sq_err.mean())
        out[f"{name}/psnr"] = float(res.psnr.mean())
        out[f"{name}/corrupted_sq_err"] = float(res.corrupted_sq_err.mean())
        out[f"{name}/corrupted_psnr"] = float(res.corrupted_psnr.mean())
        rows += [res.x_tilde[:NUM_IMAGES], res.recon[:NUM_IMAGES]]
        titles += [name, f"denoised ({res.psnr.mean():.1f} dB)"]
    # Gaussian noise leaves [0, 1]: clip so the figure shows the pixels, not a rescaled range.
    rows = [np.clip(r, 0.0, 1.0) for r in rows] + [x[:NUM_IMAGES]]
    plots.image_rows(rows, titles + ["clean"], os.path.join(ctx.workdir, "denoising.png"), n=NUM_IMAGES)
    return out
