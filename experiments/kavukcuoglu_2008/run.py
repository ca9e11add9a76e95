"""Kavukcuoglu, Ranzato & LeCun (2008), quick CPU variant: which models learn oriented filters on natural patches?

Trains PSD, a KL-sparse autoencoder (Ng's exercise) and a Gaussian denoising autoencoder with the shared trainer
on the same natural patches (`config.py`), fits PCA on them, and writes `<workdir>/filters_comparison.png` (PSD
dictionary, PSD encoder, PCA, KL-sparse AE, DAE, random filters, each with its mean orientation selectivity S)
and `<workdir>/summary.json`. Runs that already finished in `<workdir>/<method>` are reused.

    python experiments/kavukcuoglu_2008/run.py --workdir=/tmp/k08 --data_dir=/tmp/tfds_dev      # ~5-10 min
    python experiments/kavukcuoglu_2008/run.py --patches=8x8_whitened --workdir=/tmp/k08_8x8w
"""

import argparse
import json
import os
import sys

import orbax.checkpoint as ocp
from sklearn.decomposition import PCA

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # for `configs`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for this folder's config.py
import config as k08_config  # noqa: E402

from aejax import train  # noqa: E402
from aejax.analysis import filters  # noqa: E402
from aejax.analysis.reports.filters import filter_banks  # noqa: E402
from aejax.data import datasets  # noqa: E402

NUM_PCA = 64


def run_method(method: str, patches: str, workdir: str, data_dir: str | None) -> tuple[dict, dict]:
    """Trains (or reuses) one method; returns (results.json, its filter banks {"dictionary"?, "encoder"})."""
    out = os.path.join(workdir, method)
    if not os.path.exists(os.path.join(out, "results.json")):
        config = k08_config.get_config(f"{method},{patches}")
        config.data_dir = data_dir
        train.train_and_evaluate(config, out)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    root = os.path.join(out, "checkpoints")
    step = max(int(s) for s in os.listdir(root) if s.isdigit())
    params = ocp.StandardCheckpointer().restore(os.path.join(root, str(step), "state"))["params"]
    return results, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/kavukcuoglu_2008")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--patches", default="12x12", choices=k08_config.PATCHES)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    train_split = datasets.load_split(f"natural_patches/{args.patches}", "train", data_dir=args.data_dir)
    shape = train_split.images.shape[1:]
    banks, summary = {}, {"patches": args.patches}
    for method in k08_config.METHODS:
        results, params = run_method(method, args.patches, args.workdir, args.data_dir)
        learned = filter_banks(params, shape)
        if method == "psd":
            banks["PSD dictionary"], banks["PSD encoder"] = learned["dictionary"], learned["encoder"]
            summary["psd_rel_pred_err"] = results["filters/rel_pred_err"]
            summary["psd_active_fraction"] = results["filters/active_fraction"]
            summary["psd_encoder_sq_err"] = results["test_sq_err"]
        else:
            banks["KL-sparse AE" if method == "kl_sparse" else "Gaussian DAE"] = learned["encoder"]
        summary[f"{method}_test_sq_err"] = results["test_sq_err"]
    x = train_split.images.reshape(len(train_split.images), -1)
    pca = PCA(n_components=NUM_PCA, random_state=0).fit(x)
    banks["PCA"] = pca.components_.reshape(NUM_PCA, *shape[:2])
    banks["random"] = filters.random_filters(NUM_PCA, *shape[:2], seed=0)

    scores = {name: filters.selectivity_score(bank) for name, bank in banks.items()}
    summary["selectivity"] = scores
    panels = {f"{name}\nS={scores[name]:.2f}": bank for name, bank in banks.items()}
    filters.plot_filter_panels(panels, os.path.join(args.workdir, "filters_comparison.png"))
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("| filters | orientation selectivity S |\n|---|---|")
    for name, score in scores.items():
        print(f"| {name} | {score:.3f} |")
    print(json.dumps({k: v for k, v in summary.items() if k != "selectivity"}, indent=2))


if __name__ == "__main__":
    main()
