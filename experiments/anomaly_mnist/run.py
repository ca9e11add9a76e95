"""One-class anomaly detection on mnist5k: for each digit, train on that digit only, score the whole test split.

  python -m experiments.anomaly_mnist.run                                   # AE, DAE, VAE; digits 0-9
  python -m experiments.anomaly_mnist.run --models=ae --digits=3 --steps=300 --workdir=/tmp/anomaly

Each (model, digit) trains for --steps steps (default 300, ~100 epochs of the ~400 training images of one digit)
in <workdir>/<model>_<digit> with config.train_classes = digit and the "anomaly" report; a finished workdir is
reused. Models (the same 784-1000-500-250-30 network for AE and DAE, so they differ only in the corruption):
- ae:  configs/mnist_ae.py (Bernoulli decoder, code 30): score = reconstruction error;
- dae: the same with 25% masking noise: score = ||r(x) - x||, the DAE's score estimate;
- vae: configs/vae.py (784-512-256, K = 20, dynamically binarised): -ELBO and -IWAE_k (k = --eval_samples).
Every run also scores the baselines (PCA at the run's code size, IsolationForest, OneClassSVM, kNN) on the same
splits. Writes <workdir>/table.md (mean over digits and per digit, ROC AUC and PR AUC) and rows.json.
"""

import argparse
import json
import os

import numpy as np

from aejax import runs
from configs import mnist_ae
from configs import vae as vae_config

MODELS = ("ae", "dae", "vae")
# (model, score) rows of the table, in order; baselines from the AE runs (grey pixels, as the AE and DAE see
# them) and from the VAE runs (the VAE's test split is binarised once, so its baselines see binary test images).
ROWS = (
    ("ae", "reconstruction_error", "AE reconstruction error"),
    ("dae", "dae_score", "DAE ‖r(x) − x‖ (score estimate)"),
    ("vae", "neg_elbo", "VAE -ELBO"),
    ("vae", "neg_iwae", "VAE -IWAE_k"),
    ("vae", "reconstruction_error", "VAE reconstruction error (z = mu)"),
    ("ae", "pca_30", "PCA reconstruction error, k = 30"),
    ("ae", "isolation_forest", "IsolationForest"),
    ("ae", "one_class_svm", "OneClassSVM (RBF, nu = 0.1)"),
    ("ae", "knn_5", "5-NN distance"),
    ("vae", "pca_20", "PCA, k = 20 (binarised test)"),
    ("vae", "knn_5", "5-NN distance (binarised test)"),
)


def make_config(model: str, digit: int, args):
    c = vae_config.get_config("") if model == "vae" else mnist_ae.get_config("")
    c.unlock()
    c.train_classes = str(digit)
    c.num_epochs = 0
    c.num_train_steps = args.steps
    c.eval_every = args.steps
    c.checkpoint_every = args.steps
    c.log_every = 50
    c.analysis.embedding = "pca"  # t-SNE would dominate the time of these short runs
    c.analysis.reports = "anomaly"
    if model == "dae":
        c.corruption.name = "masking"
        c.corruption.nu = 0.25
    if model == "vae":
        c.vae.eval_samples = args.eval_samples
    if args.data_dir:
        c.data_dir = args.data_dir
    return c.lock()


def run_one(model: str, digit: int, args) -> dict:
    return runs.train_or_load(make_config(model, digit, args), os.path.join(args.workdir, f"{model}_{digit}"))


def table(results: dict, digits: list[int], metric: str) -> str:
    head = "| score | mean | " + " | ".join(str(d) for d in digits) + " |"
    lines = [head, "|---|---|" + "---|" * len(digits)]
    for model, score, name in ROWS:
        key = f"anomaly/{score}/{metric}"
        vals = [results.get((model, d), {}).get(key) for d in digits]
        if all(v is None for v in vals):
            continue
        cells = ["" if v is None else f"{v:.3f}" for v in vals]
        have = [v for v in vals if v is not None]
        mean = f"**{np.mean(have):.3f}**" + ("" if len(have) == len(vals) else f" ({len(have)} digits)")
        lines.append(f"| {name} | {mean} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/anomaly_mnist")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval_samples", type=int, default=100, help="IWAE_k importance samples of the VAE")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    digits = [int(d) for d in args.digits.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    results, rows = {}, []
    for digit in digits:
        for model in models:
            res = run_one(model, digit, args)
            results[(model, digit)] = res
            row = {"model": model, "digit": digit, "train_time_s": res.get("train_time_s")}
            row.update({k: v for k, v in res.items() if k.startswith("anomaly/")})
            rows.append(row)
            print(json.dumps(row), flush=True)
    text = "\n\n".join(
        f"{title}, {args.steps} steps per digit:\n\n{table(results, digits, metric)}"
        for metric, title in (
            ("roc_auc", "ROC AUC"),
            ("pr_auc", "PR AUC (average precision), anomalies positive (chance ~0.90)"),
            ("pr_auc_normal", "PR AUC, the normal digit positive (chance ~0.10)"),
        )
    )
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "rows.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
