"""SAE report: FVU, MSE, L0, cosine similarity, shrinkage and dead fraction of the test split, the feature-density
histogram, and the top-activating test examples of a few latents (images for image data).

Writes sae_density.png (log10 firing frequency per latent), sae_top_examples.png (image data: the TOP_M test
images with the largest activation of each of NUM_LATENTS latents, the most frequent live ones) and
sae_density.npz (firing frequency per latent). Numbers: `aejax.analysis.sae_metrics`.

On a language model's activations (a config with `activations`, the job "sae") it also reports the downstream
loss: the LM's next-byte cross-entropy over the stored test windows as it is (ce_clean), with the SAE's
reconstruction spliced in at the layer (ce_spliced) and with the layer zero-ablated (ce_zero), in nats per
byte, delta_loss and loss_recovered (`aejax.analysis.sae_downstream`); and writes sae_top_text.md, the TOP_M
text spans of the stored test tokens with the largest activation of each of NUM_LATENTS latents.
"""

import os

import jax
import numpy as np

from aejax import plots
from aejax.analysis import sae_downstream, sae_metrics
from aejax.analysis.batched import batched_apply
from aejax.analysis.reports import REPORTS, RunContext
from aejax.models.sae_base import STATE, AbstractSparseAutoencoder

NUM_LATENTS, TOP_M = 6, 8


def plot_density(log10_freq: np.ndarray, path: str, *, title: str = "") -> None:
    """Histogram of log10 firing frequency per latent; never-firing latents in their own bar at the floor."""
    import matplotlib.pyplot as plt

    live = log10_freq[log10_freq > sae_metrics.LOG10_FLOOR]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lo = min(-6.0, float(live.min()) if live.size else -6.0)
    ax.hist(live, bins=np.linspace(lo, 0, 41), color="C0", label=f"{live.size} latents that fire")
    never = int(np.sum(log10_freq <= sae_metrics.LOG10_FLOOR))
    ax.bar([lo - 0.5], [never], width=0.4, color="C3", label=f"{never} never fire")
    ax.set(xlabel="log10 firing frequency (fraction of test examples)", ylabel="latents", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _decode(z, variables, *, model):
    return model.apply(variables, z, method="decode")


@REPORTS.register("sae")
def report(ctx: RunContext) -> dict:
    """The SAE metrics of the test split (see module docstring).

    Returns:
      {rows (the test rows the numbers cover: all, or the first config.analysis.max_code_rows of a streamed
      split), fvu, mse, l0, cos_sim, shrinkage, never_fired_fraction, dead_fraction (latents with no activation
      in the model's last `dead_after` training examples, from the checkpointed counts), median_log10_density},
      and on LM activations {ce_clean, ce_spliced, ce_zero (nats per byte), delta_loss, loss_recovered}.

    Raises:
      TypeError: if the run's model is not a sparse autoencoder.
    """
    model = ctx.model
    if not isinstance(model, AbstractSparseAutoencoder):
        raise TypeError(f"The 'sae' report needs a sparse autoencoder model, got {type(model).__name__}.")
    code = np.asarray(ctx.eval.code)
    # A streamed test split keeps the codes of its first rows only (config.analysis.max_code_rows): the report
    # covers those rows, and says how many ("rows").
    x = np.asarray(ctx.test_split.x[: len(code)])
    variables = jax.tree.map(np.asarray, ctx.variables)
    decode = jax.tree_util.Partial(_decode, model=model)
    x_hat = batched_apply(decode, code, variables)
    out = sae_metrics.summary(x, x_hat, code)
    out["rows"] = len(code)
    since = np.asarray(variables[STATE]["examples_since_fired"])
    out["dead_fraction"] = float(np.mean(since >= model.dead_after))
    freq = sae_metrics.firing_frequency(code)
    log10 = sae_metrics.log10_density(freq)
    out["median_log10_density"] = float(np.median(log10))
    name = ctx.config.get("model_name", type(model).__name__)
    plot_density(log10, os.path.join(ctx.workdir, "sae_density.png"), title=f"{name}: feature density, test set")
    np.savez(os.path.join(ctx.workdir, "sae_density.npz"), firing_frequency=freq)
    if ctx.test_split.kind == "image":
        latents = np.argsort(-freq, kind="stable")[: min(NUM_LATENTS, int(np.sum(freq > 0)))]
        rows = [x[sae_metrics.top_activating(code, int(i), TOP_M)] for i in latents]
        if rows:
            titles = [f"latent {i}\n{freq[i]:.1%}" for i in latents]
            n = min(TOP_M, len(x))
            plots.image_rows(rows, titles, os.path.join(ctx.workdir, "sae_top_examples.png"), n=n)
    if ctx.config.get("activations") is not None:
        out.update(_on_the_lm(ctx, code, freq))
    return out


def _on_the_lm(ctx, code: np.ndarray, freq: np.ndarray) -> dict:
    """Downstream loss with the reconstruction spliced into the LM, and the top text spans (sae_top_text.md)."""
    from aejax.data import activation_store
    from aejax.jobs import lm as lm_job
    from aejax.jobs import sae as sae_job

    src = ctx.config.activations
    lm = lm_job.load_lm(src.lm_workdir)
    windows = lm_job.load_data(lm.config)[1].x  # [W, T] uint8 test windows
    store = activation_store.ActivationStore(sae_job.store_dir(ctx.config))
    example, position = store.examples("test"), store.positions("test")
    used = windows[: int(example.max()) + 1]  # the test windows the store's rows came from, in order
    ce = sae_downstream.spliced_cross_entropy(
        lm.model, lm.variables, used, src.layer, ctx.model, jax.tree.map(np.asarray, ctx.variables)
    )
    out = {f"ce_{k}": v for k, v in ce.items()}
    out.update(sae_metrics.loss_recovered(ce["clean"], ce["spliced"], ce["zero"]))
    latents = np.argsort(-freq, kind="stable")[: min(NUM_LATENTS, int(np.sum(freq > 0)))]
    spans = sae_downstream.top_text_spans(code, example, position, windows, latents, TOP_M)
    sae_downstream.write_spans_markdown(spans, freq, os.path.join(ctx.workdir, "sae_top_text.md"))
    return out
