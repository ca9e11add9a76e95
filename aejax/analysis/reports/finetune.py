"""Report "finetune": the run's encoder plus a softmax layer fine-tuned on the labels, against the same network
from random init with the same budget (Erhan et al. 2010's "does pre-training help?"). Each classifier is a run of
the registered job "finetune" (`aejax.jobs.finetune`) on this run's workdir, so the report trains nothing itself.

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

from aejax import jobs
from aejax.analysis import probe
from aejax.analysis.reports import REPORTS, RunContext
from aejax.jobs import finetune as finetune_job
from aejax.metric_writer import read_metrics
from aejax.objectives import ERROR, eval_key

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_error_curves(dirs: dict[str, str], path: str) -> None:
    """Test error (logged "eval/error") against step, one line per classifier workdir."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, d in dirs.items():
        pts = [(r["step"], r[eval_key(ERROR)]) for r in read_metrics(d) if eval_key(ERROR) in r]
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
    job = jobs.get_job("finetune")
    config = finetune_job.default_config()
    config.num_train_steps = int(analysis.get("finetune_steps", config.num_train_steps))
    config.eval_every = min(config.eval_every, config.num_train_steps)
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, config.num_train_steps // 10)
    config.seed = int(ctx.config.seed)
    config.finetune.pretrained_workdir = ctx.workdir
    out, dirs = {"num_steps": config.num_train_steps}, {}
    for n in labels_per_class:
        for start in finetune_job.INITS:
            workdir = os.path.join(ctx.workdir, "classifier", f"{start}_n{n}")
            shutil.rmtree(workdir, ignore_errors=True)  # this report's own output: retrain, never resume
            config.finetune.init, config.finetune.labels_per_class = start, str(n)
            res = job.train_and_evaluate(config, workdir)
            dirs[f"{start}, {res['num_labels']} labels"] = workdir
            out[f"{start}/n{n}/test_error"] = res["test_error"]
            out[f"{start}/n{n}/test_xent"] = res["test_xent"]
            out[f"n{n}/num_labels"] = res["num_labels"]
    plot_error_curves(dirs, os.path.join(ctx.workdir, "finetune.png"))
    return out
