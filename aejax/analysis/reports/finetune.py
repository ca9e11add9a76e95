"""Report "finetune": the run's encoder plus a softmax layer fine-tuned on the labels, against the same network
from random init with the same budget (`aejax.jobs.finetune`; Erhan et al. 2010's "does pre-training help?").

For n in `config.analysis.finetune_labels_per_class` (default "40,all": 400 and every label of mnist5k's 4,000
training digits, subset seed 0) and each start ("pretrained", "random"), a classifier is trained through the
shared loop for `config.analysis.finetune_steps` steps (default 1000; batch 100, Adam 1e-3, a warm-up of
min(50, steps / 10) steps, then cosine decay) in
`<workdir>/classifier/<start>_n<n>/`, which is cleared first, so re-running the report retrains from the run's
current weights.

  python launch.py --workdir=runs/mnist_ae --eval_only --reports=finetune

Writes finetune.png (test error against step of every classifier).
"""

import os
import shutil

import matplotlib
import numpy as np

from aejax.analysis import probe
from aejax.analysis.reports import REPORTS, RunContext
from aejax.jobs import finetune
from aejax.metric_writer import read_metrics

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_error_curves(dirs: dict[str, str], path: str) -> None:
    """Test error (logged "eval/error") against step, one line per classifier workdir."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, d in dirs.items():
        pts = [(r["step"], r["eval/error"]) for r in read_metrics(d) if "eval/error" in r]
        if pts:
            steps, err = zip(*pts, strict=True)
            ax.plot(steps, 100 * np.asarray(err), marker="o", ms=3, label=label)
    ax.set(xlabel="fine-tuning step", ylabel="test error (%)", yscale="log")
    ax.set_title("encoder + softmax fine-tuned on labels", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@REPORTS.register("finetune")
def report(ctx: RunContext) -> dict:
    """Fine-tunes from the trained weights and from random init; writes finetune.png.

    Returns:
      "<pretrained|random>/n<n>/test_error" (fraction of the test split misclassified), ".../test_xent" (nats
      per example), "n<n>/num_labels", "num_steps".

    Raises:
      ValueError: for a split without labels or more labels per class than a class has.
    """
    analysis = ctx.config.analysis
    labels_per_class = probe.parse_labels_per_class(analysis.get("finetune_labels_per_class", "40,all"))
    settings = finetune.default_settings()
    settings.num_steps = int(analysis.get("finetune_steps", settings.num_steps))
    settings.eval_every = min(settings.eval_every, settings.num_steps)
    settings.optimizer.warmup_steps = min(settings.optimizer.warmup_steps, settings.num_steps // 10)
    settings.seed = int(ctx.config.seed)
    train = ctx.train_split._replace(x=probe.fixed_train_inputs(ctx.config, ctx.train_split.x))
    out, dirs = {"num_steps": settings.num_steps}, {}
    for n in labels_per_class:
        for start in finetune.INITS:
            workdir = os.path.join(ctx.workdir, "classifier", f"{start}_n{n}")
            shutil.rmtree(workdir, ignore_errors=True)  # this report's own output: retrain, never resume
            res = finetune.finetune(
                ctx.model,
                ctx.variables if start == "pretrained" else None,
                train,
                ctx.test_split,
                labels_per_class=n,
                settings=settings,
                workdir=workdir,
            )
            dirs[f"{start}, {res.num_labels} labels"] = workdir
            out[f"{start}/n{n}/test_error"] = res.test_error
            out[f"{start}/n{n}/test_xent"] = res.test_xent
            out[f"n{n}/num_labels"] = res.num_labels
    plot_error_curves(dirs, os.path.join(ctx.workdir, "finetune.png"))
    return out
