"""After training: the PCA baseline at the same code size, the run's figures and its configured reports.

The default job (`aejax.train`) runs `analyse` at the end of a run and `aejax.train.reanalyse` on a finished run
(`python launch.py --workdir=DIR --eval_only`); it lives outside the trainer so that loading or re-analysing a
run never imports the trainer.
"""

import os
import time

import jax.numpy as jnp
import numpy as np

from aejax import objectives, plots
from aejax.analysis import embedding, pca, reports
from aejax.metric_writer import read_metrics


def analyse(ctx: reports.RunContext) -> dict:
    """Writes reconstructions.png (images only), latent.png, loss_curves.png and each report's files into
    `ctx.workdir`.

    Returns:
      The numbers for results.json: "pca_sq_err" (squared error of the rank-K PCA reconstruction summed over
      the input's components, per test example), "pca_time_s", "beats_pca" (when the objective reports
      `objectives.SQ_ERR` and the code is undercomplete) and "<report>/<key>".

    Raises:
      KeyError: for an unknown report or embedding name.
    """
    config, workdir, ev = ctx.config, ctx.workdir, ctx.eval
    out = {}
    k = ev.code.shape[1]
    dim = int(np.prod(ctx.train_split.x.shape[1:]))
    n = min(10, len(ctx.test_split.x))
    rows, titles = [ctx.test_split.x[:n]], ["original"]
    if ctx.test_split.kind == "image":
        output = ctx.model.apply(ctx.variables, jnp.asarray(ctx.test_split.x[:n])).decoder_output
        rows, titles = rows + [np.asarray(ctx.likelihood.mean(output))], titles + ["autoencoder"]
    sq_err = objectives.SQ_ERR
    if config.analysis.pca_baseline and sq_err in ev.metrics and k < dim:  # overcomplete: no PCA counterpart
        t0 = time.perf_counter()
        recon = pca.pca_reconstruction(ctx.train_split.x, ctx.test_split.x, k)
        pca_err = np.square(recon - ctx.test_split.x).reshape(len(recon), -1).sum(axis=1)
        out["pca_sq_err"] = float(pca_err.mean())
        out["pca_time_s"] = round(time.perf_counter() - t0, 2)
        out["beats_pca"] = bool(ev.metrics[sq_err].mean() < pca_err.mean())
        rows.append(np.clip(recon[:n], 0, 1))  # shown like the pixels; the error above is unclipped
        titles.append(f"PCA, k={k}")
    if ctx.test_split.kind == "image":
        plots.image_rows(rows, titles, os.path.join(workdir, "reconstructions.png"), n=n)
    points, how = embedding.embed_2d(ev.code, config.analysis.embedding, seed=config.seed)
    plots.latent_scatter(
        # A streamed split's evaluation keeps the codes of its first rows only (aejax.loop.EvalResult.code).
        points,
        ctx.test_split.labels[: len(points)],
        os.path.join(workdir, "latent.png"),
        title=f"{how}, test set",
    )
    plots.loss_curves(read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
    out.update(reports.run(config.analysis.reports, ctx))
    return out
