"""Kavukcuoglu, Ranzato & LeCun (2008), quick CPU variant: which models learn oriented filters on natural patches?

Trains PSD, a KL-sparse autoencoder (Ng's exercise) and a Gaussian denoising autoencoder with the shared trainer
(`config.py`; by default PSD on 12x12 LCN patches, the autoencoders on 8x8 ZCA-whitened patches, `--patches`
puts all three on one set), fits PCA on PSD's patches, and writes `<workdir>/filters_comparison.png` (PSD
dictionary, PSD encoder, PCA, KL-sparse AE, DAE, random filters of each patch size, each with its mean
orientation selectivity S) and `<workdir>/summary.json`. Runs that already finished in `<workdir>/<method>` are
reused.

    python -m experiments.kavukcuoglu_2008.run --workdir=/tmp/k08 --data_dir=/tmp/tfds_dev      # ~5 min
    python -m experiments.kavukcuoglu_2008.run --patches=12x12 --workdir=/tmp/k08_lcn   # all on LCN 12x12
    python -m experiments.kavukcuoglu_2008.run --runlocal --workdir=/tmp/k08_local      # seconds, smoke test
"""

import argparse
import json
import os

import numpy as np
from sklearn.decomposition import PCA

from aejax import runs
from aejax.analysis import filters
from aejax.analysis.reports.filters import filter_banks
from aejax.data.datasets import Split
from experiments.kavukcuoglu_2008 import config as k08_config

NUM_PCA = 64


def localisation(bank: np.ndarray) -> float:
    """Mean spatial localisation of a bank [F, h, w]: 1 - (power-weighted spatial variance of each filter about
    its centre of mass) / (that of a flat filter). ~0 for gratings and noise, ~0.8 for a Gabor of width 1.4 px
    on 8x8; S alone cannot tell a global grating (PCA) from a local edge."""
    _, h, w = bank.shape
    p = bank**2 / np.maximum((bank**2).sum(axis=(1, 2), keepdims=True), 1e-300)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    my, mx = (p * yy).sum(axis=(1, 2)), (p * xx).sum(axis=(1, 2))
    spread = (p * ((yy - my[:, None, None]) ** 2 + (xx - mx[:, None, None]) ** 2)).sum(axis=(1, 2))
    return float((1.0 - spread / ((h * h - 1) / 12 + (w * w - 1) / 12)).mean())


def run_method(
    method: str, patches: str | None, workdir: str, data_dir: str | None, runlocal: bool = False
) -> tuple[dict, dict, str, Split]:
    """Trains (or reuses) one method; returns (results.json, its params, its patch set, its training split).

    `patches` None: the method's `k08_config.DEFAULT_PATCHES`.
    """
    out = os.path.join(workdir, method)
    variant = ",".join([method, *([patches] if patches else []), *(["runlocal"] if runlocal else [])])
    config = k08_config.get_config(variant)
    config.data_dir = data_dir
    results = runs.train_or_load(config, out)
    run = runs.load_run(out)  # the config the run was trained with, its latest checkpoint and its data
    return results, run.variables["params"], run.config.dataset.split("/")[1], run.train_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/kavukcuoglu_2008")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--patches", default=None, choices=k08_config.PATCHES, help="one set for all methods")
    parser.add_argument("--runlocal", action="store_true", help="20 steps per method: a smoke test")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    banks, summary, sizes = {}, {"patches": {}}, set()
    for method in k08_config.METHODS:
        results, params, patches, split = run_method(
            method, args.patches, args.workdir, args.data_dir, args.runlocal
        )
        summary["patches"][method] = patches
        shape = split.x.shape[1:]
        sizes.add(shape[0])
        learned = filter_banks(params, shape)
        if method == "psd":
            train_split = split  # PCA is fitted on PSD's patches (on whitened patches it is arbitrary)
            banks["PSD dictionary"], banks["PSD encoder"] = learned["dictionary"], learned["encoder"]
            summary["psd_rel_pred_err"] = results["filters/rel_pred_err"]
            summary["psd_active_fraction"] = results["filters/active_fraction"]
            summary["psd_encoder_sq_err"] = results["test_sq_err"]
        else:
            banks["KL-sparse AE" if method == "kl_sparse" else "Gaussian DAE"] = learned["encoder"]
        summary[f"{method}_test_sq_err"] = results["test_sq_err"]
    x = train_split.x.reshape(len(train_split.x), -1)
    pca = PCA(n_components=NUM_PCA, random_state=0).fit(x)
    banks["PCA"] = pca.components_.reshape(NUM_PCA, *train_split.x.shape[1:3])
    for s in sorted(sizes, reverse=True):
        banks[f"random {s}x{s}"] = filters.random_filters(NUM_PCA, s, s, seed=0)

    scores = {name: filters.selectivity_score(bank) for name, bank in banks.items()}
    summary["selectivity"] = scores
    summary["localisation"] = {name: localisation(np.asarray(bank)) for name, bank in banks.items()}
    panels = {f"{name}\nS={scores[name]:.2f}": bank for name, bank in banks.items()}
    filters.plot_filter_panels(panels, os.path.join(args.workdir, "filters_comparison.png"))
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    rows = ["| filters | orientation selectivity S | localisation | test sq. error |", "|---|---|---|---|"]
    errors = {"PSD encoder": "psd", "KL-sparse AE": "kl_sparse", "Gaussian DAE": "dae"}
    for name, score in scores.items():
        err = f"{summary[errors[name] + '_test_sq_err']:.1f}" if name in errors else ""
        rows.append(f"| {name} | {score:.3f} | {summary['localisation'][name]:.3f} | {err} |")
    rows.append(
        f"\nPSD: relative code-prediction error ||f(x)-h*||^2/||h*||^2 on test patches "
        f"{summary['psd_rel_pred_err']:.3f}; non-zero fraction of h* {summary['psd_active_fraction']:.3f}."
    )
    table = "\n".join(rows) + "\n"
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table)
    print(table)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("selectivity", "localisation")}, indent=2))


if __name__ == "__main__":
    main()
