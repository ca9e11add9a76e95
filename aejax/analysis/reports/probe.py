"""Report "probe": few-label linear probes of the run's frozen codes, with three baselines on the same subsets.

For n in `config.analysis.probe_labels_per_class` (default "1,10,100,all") labelled train examples per class
(`config.analysis.probe_seeds` subsets, default 5, for each integer n), a logistic regression on
- "encoder": the trained encoder's codes (for a VAE the posterior mean, which is what `encode` returns);
- "random_init": the same encoder at a random init (`model.init` with seed `config.seed + 1`), which separates
  what training added from what the architecture gives (Erhan et al. 2010's question, for a linear read-out);
- "pca": PCA scores of the same size K, PCA fit on the whole unlabelled train split;
- "pixels": the raw inputs.
Test accuracy on the whole test split (`aejax.analysis.probe`). Labels are read only here.

  python launch.py --workdir=runs/mnist_ae --eval_only --reports=probe     # on a finished run

Writes probe.png (accuracy against labels per class, one line per representation) and probe.json (every
subset's accuracy).
"""

import json
import os

import jax
import numpy as np

from aejax.analysis import probe
from aejax.analysis.reports import REPORTS, RunContext

REPRESENTATIONS = ("encoder", "random_init", "pca", "pixels")


def representations(ctx: RunContext, train_x: np.ndarray) -> dict[str, probe.Representation]:
    """The four representations of the train split `train_x` [N, ...] and the test split: name ->
    Representation(train [N, K_rep], test [M, K_rep])."""
    test_x = ctx.test_split.x
    # One function object for the four splits and both variables: compiled once (batched_apply).
    encode = lambda x, v: ctx.model.apply(v, x, method="encode")  # noqa: E731
    # Jitted: an eager init compiles every initializer separately (measured 4.8 s for the runlocal MLP).
    random_vars = jax.jit(ctx.model.init)(jax.random.key(int(ctx.config.seed) + 1), train_x[:1])

    def codes(variables):
        return probe.Representation(
            probe.encode_split(encode, train_x, variables),
            probe.encode_split(encode, test_x, variables),
        )

    trained = codes(ctx.variables)
    k = trained.train.shape[1]
    return {
        "encoder": trained,
        "random_init": codes(random_vars),
        "pca": probe.pca_codes(train_x, test_x, min(k, *train_x.reshape(len(train_x), -1).shape)),
        "pixels": probe.Representation(train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)),
    }


def _key(n) -> str:
    return f"n{n}"


@REPORTS.register("probe")
def report(ctx: RunContext) -> dict:
    """Runs the probes; writes probe.png and probe.json.

    Returns:
      "<representation>/n<n>/accuracy_mean" and ".../accuracy_std" (test accuracy in [0, 1], mean and standard
      deviation over the labelled subsets; n is labels per class or "all"), "labels_per_class", "seeds",
      "code_dim".

    Raises:
      ValueError: for a split without labels, or more labels per class than a class has.
    """
    analysis = ctx.config.analysis
    labels_per_class = probe.parse_labels_per_class(analysis.get("probe_labels_per_class", "1,10,100,all"))
    seeds = int(analysis.get("probe_seeds", 5))
    if np.any(ctx.train_split.labels < 0) or np.any(ctx.test_split.labels < 0):
        raise ValueError(f"The probe needs labels; dataset {ctx.config.dataset!r} has none (label -1).")
    train_x = probe.fixed_train_inputs(ctx.config, ctx.train_split.x)
    reps = representations(ctx, train_x)
    curves = probe.probe_curves(
        reps,
        ctx.train_split.labels,
        ctx.test_split.labels,
        labels_per_class=labels_per_class,
        seeds=seeds,
        c=float(analysis.get("probe_c", 1.0)),
    )
    num_all = len(ctx.train_split.labels) / len(np.unique(ctx.train_split.labels))
    k = reps["encoder"].train.shape[1]
    names = {
        "encoder": f"{ctx.config.model_name} encoder, trained (K={k})",
        "random_init": f"same encoder, random init (K={k})",
        "pca": f"PCA (K={reps['pca'].train.shape[1]})",
        "pixels": f"pixels (D={reps['pixels'].train.shape[1]})",
    }
    probe.plot_curves(
        {names[r]: curves[r] for r in REPRESENTATIONS}, num_all, os.path.join(ctx.workdir, "probe.png")
    )
    with open(os.path.join(ctx.workdir, "probe.json"), "w") as f:
        json.dump({r: {_key(n): v for n, v in curves[r].items()} for r in REPRESENTATIONS}, f, indent=2)
    out = {"labels_per_class": [str(n) for n in labels_per_class], "seeds": seeds, "code_dim": int(k)}
    for r in REPRESENTATIONS:
        for n, v in curves[r].items():
            out[f"{r}/{_key(n)}/accuracy_mean"] = v["mean"]
            out[f"{r}/{_key(n)}/accuracy_std"] = v["std"]
    return out
