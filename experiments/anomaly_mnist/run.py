"""One-class anomaly detection on mnist5k: for each digit, train on that digit only, score the whole test split.

  python -m experiments.anomaly_mnist.run --workdir=runs/anomaly_mnist          # the README table, 3 seeds
  python -m experiments.anomaly_mnist.run --models=ae,svdd --digits=3 --seeds=0  # a few runs
  python -m experiments.anomaly_mnist.run --runlocal --workdir=/tmp/anomaly_rl    # smoke test, tiny networks
  python -m experiments.anomaly_mnist.run --table_only --workdir=runs/anomaly_mnist  # table.md of what finished

Each (seed, model, digit) trains in <workdir>/s<seed>/<model>_<digit> with config.train_classes = digit and the
"anomaly" report (its baselines off: they are computed once per digit here, `baselines`); a finished workdir is
reused, so a relaunch continues where it stopped. The runs go model by model (in the order of --models), each
over its seeds and digits, so a model's row is complete before the next model starts; `--table_only` writes the
table from the finished runs on disk (e.g. of several processes that trained disjoint --models). Models:
- ae: configs/mnist_ae.py (784-1000-500-250-30, Bernoulli): reconstruction error;
- dae: the same network with Gaussian noise sigma = 0.3: its reconstruction error and the energy of its score
  field (-log p(x) + const by a line integral of (r - x) / sigma^2 from the training mean; the report's
  "dae_energy");
- vae: configs/vae.py (784-512-256, K = 20, dynamically binarised): -ELBO, -IWAE_k, reconstruction error;
- conv_ae: configs/conv_ae.py (32-64 channels, max pooling, K = 30): reconstruction error;
- conv_vae: configs/vae.py:conv (32-64 channels, stride 2, K = 20): -ELBO, -IWAE_k, reconstruction error;
- svdd_mlp: configs/deep_svdd.py:mlp, one-class Deep SVDD on the bias-free MLP AE 784-512-256-32 it pre-trains
  (whose reconstruction error is a row too);
- svdd: configs/deep_svdd.py, the same on the bias-free LeNet-type conv AE (8-4 channels, 5x5, BatchNorm
  without affine parameters, K = 32; Ruff et al.'s MNIST network);
- svdd_soft: the soft-boundary objective (nu = 0.1) on the same pre-trained network (run after svdd).
The baselines (PCA at k = 30, IsolationForest, OneClassSVM, the 5-NN distance on the grey pixels; PCA at k = 20
and 5-NN on the binarised test split that the VAEs see) are fitted once per digit (seed 0). Writes
<workdir>/table.md (per-digit seed means; the mean over digits as the mean of the seeds and their min-max) and
rows.json.
"""

import argparse
import json
import os

import jax
import ml_collections
import numpy as np

from aejax import build, runs
from aejax.analysis import anomaly
from configs import conv_ae, deep_svdd, mnist_ae
from configs import vae as vae_config

MODELS = ("svdd_mlp", "dae", "svdd", "conv_ae", "ae", "vae", "conv_vae", "svdd_soft")  # the order they run in
SVDD = ("svdd", "svdd_mlp", "svdd_soft")  # Deep SVDD runs (the first two pre-train their own network)
# (model, score, label): model rows; the baselines follow (BASELINE_ROWS).
ROWS = (
    ("ae", "reconstruction_error", "AE reconstruction error"),
    ("dae", "reconstruction_error", "DAE (Gaussian 0.3) reconstruction error"),
    ("dae", "dae_energy", "DAE energy -log p (line integral of the score field)"),
    ("vae", "neg_elbo", "VAE -ELBO"),
    ("vae", "neg_iwae", "VAE -IWAE_k"),
    ("vae", "reconstruction_error", "VAE reconstruction error (z = mu)"),
    ("conv_ae", "reconstruction_error", "conv AE reconstruction error"),
    ("conv_vae", "neg_elbo", "conv VAE -ELBO"),
    ("conv_vae", "neg_iwae", "conv VAE -IWAE_k"),
    ("conv_vae", "reconstruction_error", "conv VAE reconstruction error (z = mu)"),
    ("svdd_mlp_pretrain", "reconstruction_error", "bias-free MLP AE reconstruction error (SVDD pre-training)"),
    ("svdd_mlp", "svdd_score", "Deep SVDD, one-class, MLP encoder"),
    ("svdd_pretrain", "reconstruction_error", "bias-free LeNet conv AE reconstruction error (SVDD pre-training)"),
    ("svdd", "svdd_score", "Deep SVDD, one-class, LeNet conv encoder"),
    ("svdd_soft", "svdd_score", "Deep SVDD, soft-boundary (nu = 0.1), LeNet conv encoder"),
)
BASELINE_ROWS = (
    ("pca_30", "PCA reconstruction error, k = 30"),
    ("isolation_forest", "IsolationForest"),
    ("one_class_svm", "OneClassSVM (RBF, nu = 0.1)"),
    ("knn_5", "5-NN distance"),
    ("bin_pca_20", "PCA, k = 20 (binarised test, as the VAEs see it)"),
    ("bin_knn_5", "5-NN distance (binarised test)"),
)
REFERENCE = "knn_5"  # the baseline each row is counted against per digit


def _common(c: ml_collections.ConfigDict, digit: int, seed: int, args) -> None:
    c.seed = seed
    c.train_classes = str(digit)
    if args.data_dir:
        c.data_dir = args.data_dir


def _analysis(c: ml_collections.ConfigDict, seed: int) -> None:
    c.analysis.embedding = "pca"  # t-SNE would dominate the time of these short runs
    c.analysis.reports = "anomaly"
    c.analysis.pca_baseline = False
    c.analysis.anomaly_baselines = False  # once per digit, `baselines`
    c.analysis.figures = seed == 0


def _steps(c: ml_collections.ConfigDict, steps: int, log_every: int) -> None:
    c.num_epochs = 0
    c.num_train_steps = steps
    c.eval_every = c.checkpoint_every = steps
    c.log_every = log_every


def make_config(model: str, digit: int, seed: int, args) -> ml_collections.ConfigDict:
    """The config of one run. Raises KeyError for an unknown model."""
    rl = "runlocal" if args.runlocal else ""
    log_every = 5 if args.runlocal else 50
    if model in SVDD:
        variant = {"svdd": "", "svdd_mlp": "mlp", "svdd_soft": "soft"}[model]
        c = deep_svdd.get_config(",".join(filter(None, [rl, variant])))
        c.unlock()
        _common(c, digit, seed, args)
        _steps(c, args.svdd_steps, log_every)
        _steps(c.pretrain, args.pretrain_steps, log_every)
        _analysis(c, seed)
        _analysis(c.pretrain, seed)
        if model == "svdd_soft":  # the one-class run's pre-trained network
            c.deep_svdd.pretrained_workdir = os.path.join(run_dir(args, "svdd", digit, seed), "pretrain")
            c.deep_svdd.warmup_steps = min(c.deep_svdd.warmup_steps, args.svdd_steps // 2)
        return c.lock()
    if model in ("vae", "conv_vae"):
        c = vae_config.get_config(",".join(filter(None, [rl, "conv" if model == "conv_vae" else ""])))
    elif model == "conv_ae":
        c = conv_ae.get_config(rl)
    elif model in ("ae", "dae"):
        c = mnist_ae.get_config(rl)
    else:
        raise KeyError(f"Unknown model {model!r}; known: {', '.join(MODELS)}.")
    c.unlock()
    _common(c, digit, seed, args)
    _steps(c, args.steps, log_every)
    _analysis(c, seed)
    if model == "dae":
        c.corruption.name = "gaussian"
        c.corruption.sigma = 0.3
        c.corruption.clip = False
    if model in ("vae", "conv_vae"):
        c.vae.eval_samples = args.eval_samples if model == "vae" else args.conv_eval_samples
        c.vae.eval_chunk = min(c.vae.eval_chunk, c.vae.eval_samples)
    return c.lock()


def run_dir(args, model: str, digit: int, seed: int) -> str:
    return os.path.join(args.workdir, f"s{seed}", f"{model}_{digit}")


def run_one(model: str, digit: int, seed: int, args) -> dict[str, dict]:
    """{row model: its results.json}: a Deep SVDD run also yields its pre-training run ("<model>_pretrain")."""
    runs.train_or_load(make_config(model, digit, seed, args), run_dir(args, model, digit, seed))
    return finished(model, digit, seed, args)


def finished(model: str, digit: int, seed: int, args) -> dict[str, dict]:
    """As `run_one` for a run finished on disk, without training; {} for a run that is not."""
    workdir = run_dir(args, model, digit, seed)
    paths = {model: os.path.join(workdir, "results.json")}
    if model in ("svdd", "svdd_mlp"):
        paths[f"{model}_pretrain"] = os.path.join(workdir, "pretrain", "results.json")
    out = {}
    for name, path in paths.items():
        if os.path.exists(path):
            with open(path) as f:
                out[name] = json.load(f)
    return out


def baselines(digit: int, args) -> dict[str, float]:
    """{baseline: ROC AUC, "<baseline>/pr_auc_normal": ...} of the baselines fitted on the digit's training images
    (grey, and the VAE's binarised test split); cached in <workdir>/baselines_<digit>.json."""
    path = os.path.join(args.workdir, f"baselines_{digit}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    out = {}
    for prefix, config, k in (
        ("", make_config("ae", digit, 0, args), 30),
        ("bin_", make_config("vae", digit, 0, args), 20),
    ):
        train, test = build.load_data(config)
        is_anomaly = ~np.isin(test.labels, [digit])
        scores = anomaly.baseline_scores(train.x, test.x, code_dim=k, seed=0)
        if prefix:
            scores = {n: s for n, s in scores.items() if n in (f"pca_{k}", "knn_5")}
        for name, s in scores.items():
            d = anomaly.detection(s, is_anomaly)
            out[f"anomaly/{prefix}{name}/roc_auc"] = d.roc_auc
            out[f"anomaly/{prefix}{name}/pr_auc_normal"] = d.pr_auc_normal
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    return out


def _cell(values: list[float]) -> str:
    return "" if not values else f"{np.mean(values):.3f}"


def table(results: dict, base: dict, digits: list[int], seeds: list[int], metric: str) -> str:
    """Model rows over the seeds that finished every digit: per digit the mean over those seeds; "mean" = the mean
    over digits, with the min-max over seeds of the per-seed digit means (and which seeds, when not all);
    "> 5-NN": digits whose seed-mean beats the 5-NN distance. A row with no complete seed shows what finished."""
    head = "| score | mean (min-max over seeds) | > 5-NN | " + " | ".join(map(str, digits)) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(digits)]
    ref = [base.get(d, {}).get(f"anomaly/{REFERENCE}/{metric}") for d in digits]
    for model, score, name in ROWS:
        key = f"anomaly/{score}/{metric}"
        have = {(d, s) for d in digits for s in seeds if key in results.get((model, d, s), {})}
        if not have:
            continue
        complete = [s for s in seeds if all((d, s) in have for d in digits)]
        use = complete or seeds
        per = {d: [results[(model, d, s)][key] for s in use if (d, s) in have] for d in digits}
        cells = [_cell(per[d]) for d in digits]
        if complete:
            by_seed = [np.mean([results[(model, d, s)][key] for d in digits]) for s in complete]
            which = (
                ""
                if complete == seeds
                else f", seed{'s' * (len(complete) > 1)} {','.join(map(str, complete))} only"
            )
            mean = f"**{np.mean(by_seed):.3f}** ({min(by_seed):.3f}-{max(by_seed):.3f}{which})"
        else:
            mean = f"(no seed finished all {len(digits)} digits)"
        wins = sum(1 for d, r in zip(digits, ref, strict=True) if per[d] and r is not None and np.mean(per[d]) > r)
        lines.append(f"| {name} | {mean} | {wins} | " + " | ".join(cells) + " |")
    for score, name in BASELINE_ROWS:
        vals = [base.get(d, {}).get(f"anomaly/{score}/{metric}") for d in digits]
        if all(v is None for v in vals):
            continue
        have = [v for v in vals if v is not None]
        cells = ["" if v is None else f"{v:.3f}" for v in vals]
        lines.append(f"| {name} | **{np.mean(have):.3f}** | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/anomaly_mnist")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--digits", default=None, help="default 0-9 (runlocal: 0)")
    parser.add_argument("--seeds", default=None, help="default 0,1,2 (runlocal: 0)")
    parser.add_argument("--steps", type=int, default=None, help="AE, DAE, VAE, conv AE / VAE steps (300)")
    parser.add_argument("--pretrain_steps", type=int, default=None, help="Deep SVDD pre-training steps (300)")
    parser.add_argument("--svdd_steps", type=int, default=None, help="Deep SVDD steps (300)")
    parser.add_argument("--eval_samples", type=int, default=100, help="IWAE_k importance samples of the VAE")
    parser.add_argument("--conv_eval_samples", type=int, default=20, help="IWAE_k samples of the conv VAE")
    parser.add_argument("--runlocal", action="store_true", help="tiny networks and 10 steps: a smoke test")
    parser.add_argument("--table_only", action="store_true", help="no training: the table of the finished runs")
    args = parser.parse_args()
    quick = args.runlocal
    args.digits = args.digits or ("0" if quick else "0,1,2,3,4,5,6,7,8,9")
    args.seeds = args.seeds or ("0" if quick else "0,1,2")
    for name in ("steps", "pretrain_steps", "svdd_steps"):
        if getattr(args, name) is None:
            setattr(args, name, 10 if quick else 300)
    if quick:
        args.eval_samples = args.conv_eval_samples = 2
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    if "svdd_soft" in models and "svdd" not in models:
        models.insert(models.index("svdd_soft"), "svdd")  # it reuses the one-class run's pre-training
    digits = [int(d) for d in args.digits.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    # Every run of a model compiles the same programs: keep them across runs (and relaunches).
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    base = {d: baselines(d, args) for d in digits}
    results, rows = {}, []
    for model in models:
        for seed in seeds:
            for digit in digits:
                if args.table_only:
                    found = finished(model, digit, seed, args)
                else:
                    found = run_one(model, digit, seed, args)
                for name, res in found.items():
                    results[(name, digit, seed)] = res
                    row = {"model": name, "digit": digit, "seed": seed, "train_time_s": res.get("train_time_s")}
                    row.update({k: v for k, v in res.items() if k.startswith("anomaly/")})
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    with open(os.path.join(args.workdir, "rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    steps = f"{args.steps} steps per digit (Deep SVDD: {args.pretrain_steps} + {args.svdd_steps})"
    text = "\n\n".join(
        f"{title}, {steps}, seeds {args.seeds}:\n\n{table(results, base, digits, seeds, metric)}"
        for metric, title in (("roc_auc", "ROC AUC"), ("pr_auc_normal", "PR AUC, the normal digit positive"))
    )
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
