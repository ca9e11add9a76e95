"""Report "anomaly": one-class anomaly detection on the test split, the run's scores beside the baselines.

For a run trained on some classes only (`config.train_classes = "3"`), the normal test examples are those of
the train classes and every other test example is an anomaly. Each score (higher = more anomalous) gets its
ROC AUC and PR AUC, with the anomalies and with the normal examples as the positive class
(`aejax.analysis.anomaly.detection`):

- "reconstruction_error": the squared error of the mean reconstruction, summed over pixels (the objective's
  "sq_err"; for a VAE, the reconstruction at z = mu);
- "dae_energy": for a DAE trained with Gaussian noise (`config.corruption.name = "gaussian"`, std sigma), minus
  the log-density its score field implies, -(1/sigma^2) int_0^1 (r(y) - y) . (x - x0) dt along the segment from
  the training mean x0 to x (`aejax.analysis.anomaly.dae_log_density`; Alain & Bengio 2014, Kamyshanska &
  Memisevic 2015), 16 Gauss-Legendre nodes: a density score, not a function of the reconstruction error;
- "neg_elbo", "neg_iwae": -ELBO and -IWAE_k of a VAE run (nats; the objective's "elbo" and "iwae" metrics);
- "svdd_score": ||phi(x) - c||^2 (minus R^2) of a Deep SVDD run (`aejax.objectives.deep_svdd.SCORE`);
- baselines fitted on the same (filtered) train split: "pca_<K>" at the run's code size, "isolation_forest",
  "one_class_svm", "knn_5" (`aejax.analysis.anomaly`).
  They see the splits as the run does: under dynamic binarisation the train split is grey and the test split
  binarised once, as for the model. `config.analysis.anomaly_baselines = False` leaves them out (an experiment
  that scores many runs of one class computes them once; `aejax.analysis.anomaly.baseline_scores`).

  python launch.py --config=configs/mnist_ae.py --config.train_classes=3 --config.analysis.reports=anomaly
  python launch.py --workdir=DIR --eval_only --reports=anomaly        # on a finished one-class run

Writes anomaly_roc.png (ROC curves of every score) and anomaly_extremes.png (the test digits the run's main score
finds most and least anomalous; the main score is the first of MAIN_SCORES the run has), unless
`config.analysis.figures` is False.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aejax import plots  # noqa: E402
from aejax.analysis import anomaly  # noqa: E402
from aejax.analysis.reports import REPORTS, RunContext  # noqa: E402
from aejax.data import classes  # noqa: E402
from aejax.objectives import ELBO, IWAE, SQ_ERR, deep_svdd  # noqa: E402

NUM_IMAGES = 10
MODEL_SCORES = ("svdd_score", "neg_iwae", "dae_energy", "neg_elbo", "reconstruction_error")
MAIN_SCORES = MODEL_SCORES  # the first one a run has is its main score
ENERGY_NODES = 16  # Gauss-Legendre nodes of the DAE's line integral


def dae_energy(ctx: RunContext) -> np.ndarray:
    """[N] -log p(x) + const of the test split implied by a Gaussian DAE's score field (see the module doc).

    Raises:
      ValueError: for a run whose corruption is not Gaussian (Alain & Bengio's estimate needs Gaussian noise).
    """
    corruption = ctx.config.corruption
    if corruption.name != "gaussian":
        raise ValueError(f"The DAE energy needs a Gaussian corruption, got {corruption.name!r}.")

    def reconstruct(x):
        return ctx.likelihood.mean(ctx.model.apply(ctx.variables, x).decoder_output)

    x0 = np.asarray(ctx.train_split.x, np.float64).mean(axis=0)
    log_p = anomaly.dae_log_density(
        reconstruct, np.asarray(ctx.test_split.x), x0, sigma=float(corruption.sigma), num_nodes=ENERGY_NODES
    )
    return -log_p


def model_scores(ctx: RunContext) -> dict[str, np.ndarray]:
    """{score name: [N] scores of the test split} that the run provides (see the module doc)."""
    m, out = ctx.eval.metrics, {}
    if SQ_ERR in m:
        out["reconstruction_error"] = np.asarray(m[SQ_ERR], np.float64)
        if ctx.config.corruption.name == "gaussian":
            out["dae_energy"] = dae_energy(ctx)
    if ELBO in m:
        out["neg_elbo"] = -np.asarray(m[ELBO], np.float64)
    if IWAE in m:
        out["neg_iwae"] = -np.asarray(m[IWAE], np.float64)
    if deep_svdd.SCORE in m:
        out["svdd_score"] = np.asarray(m[deep_svdd.SCORE], np.float64)
    return out


def normal_classes(ctx: RunContext) -> tuple[int, ...]:
    """The run's train classes. Raises ValueError for a run trained on every class (no anomalies defined)."""
    normal = classes.parse_classes(ctx.config.get("train_classes", ""))
    if not normal:
        raise ValueError(
            "The anomaly report needs a run trained on some classes only (the normal ones): set "
            "config.train_classes, e.g. --config.train_classes=3."
        )
    return normal


def _plot_roc(curves: dict, path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        baseline = name not in MODEL_SCORES
        ax.plot(fpr, tpr, ls="--" if baseline else "-", lw=1.2, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right", title="score (ROC AUC)", title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@REPORTS.register("anomaly")
def report(ctx: RunContext) -> dict:
    """One-class anomaly detection of the test split (see the module doc).

    Returns:
      "<score>/roc_auc", "<score>/pr_auc", "<score>/pr_auc_normal" for each score (`anomaly.Detection`),
      "anomaly_fraction" (the PR AUC of chance),
      "normal_classes" (e.g. "3"), "main_score".

    Raises:
      ValueError: for a run trained on every class, or a test split with only normal or only anomalous examples.
    """
    normal = normal_classes(ctx)
    test_x = np.asarray(ctx.test_split.x)
    is_anomaly = ~np.isin(ctx.test_split.labels, np.asarray(normal))
    own = model_scores(ctx)
    scores = dict(own)
    if ctx.config.analysis.get("anomaly_baselines", True):
        code_dim = ctx.eval.code.shape[1]
        scores.update(anomaly.baseline_scores(ctx.train_split.x, test_x, code_dim=code_dim, seed=ctx.config.seed))
    out, curves = {}, {}
    for name, s in scores.items():
        d = anomaly.detection(s, is_anomaly)
        out[f"{name}/roc_auc"], out[f"{name}/pr_auc"] = d.roc_auc, d.pr_auc
        out[f"{name}/pr_auc_normal"] = d.pr_auc_normal
        curves[name] = (*anomaly.roc_curve(s, is_anomaly), d.roc_auc)
    out["anomaly_fraction"] = float(is_anomaly.mean())
    out["normal_classes"] = ",".join(map(str, normal))
    main = next((n for n in MAIN_SCORES if n in own), None)
    out["main_score"] = main or ""
    if not ctx.config.analysis.get("figures", True):
        return out
    title = f"normal = {out['normal_classes']}; {int(is_anomaly.sum())} of {len(is_anomaly)} test anomalous"
    _plot_roc(curves, os.path.join(ctx.workdir, "anomaly_roc.png"), title)
    if main is not None and ctx.test_split.kind == "image":
        order = np.argsort(scores[main], kind="stable")
        most, least = order[::-1][:NUM_IMAGES], order[:NUM_IMAGES]
        rows = [test_x[most], test_x[least]]
        titles = [f"most anomalous\n({main})", "least anomalous"]
        plots.image_rows(rows, titles, os.path.join(ctx.workdir, "anomaly_extremes.png"), n=NUM_IMAGES)
    return out
