"""k-sparse autoencoders (Makhzani & Frey 2014) on mnist5k: filters and a linear probe for k in {10, 25, 40, 70},
beside the L1 and KL sparse autoencoders, PCA codes and raw pixels. A CPU-scale analogue (4,000 train / 1,000
test digits, a few hundred steps) of the paper's full-MNIST runs.

  python -m experiments.makhzani_frey_2014.run --workdir=/tmp/makhzani_frey_2014
  python -m experiments.makhzani_frey_2014.run --runlocal --workdir=/tmp/mf_local     # seconds, smoke test

Runs (each `runs.train_or_load` in `<workdir>/<name>`, reused when finished):
- "k<k>": configs/sae.py:kmakhzani (1,000 linear units, tied weights, the k largest kept in training, alpha*k = 3k
  at test) with model.k = k; "k10_resampled" and "k10_resampled_x1": k = 10 with dead latents resampled
  (Bricken et al. 2023, aejax/sae_resample.py) every tenth of training through the first half, with their
  encoder scale 0.2 and with 1.0, in place of the paper's remedy for dead units (k decreased from a large value
  over the first half of training), which aejax does not have;
- "l1": configs/sparse.py:l1,quick (784-32 ReLU, L1 activity); "kl": configs/sparse.py:kl,quick (784-500
  sigmoid, KL(rho = 0.05)).
Every run's "probe" report fits a logistic regression on the codes of all 4,000 labelled train digits
(`aejax.analysis.probe`) and scores the 1,000 test digits; its "pca" and "pixels" baselines give the PCA and
pixel rows. Writes table.md, results.json and filters.png (64 decoder rows of each k) in the workdir.
"""

import argparse
import json
import os

import numpy as np

from aejax import runs
from aejax.analysis import filters as filters_lib
from configs import sae as sae_configs
from configs import sparse as sparse_configs

PAPER = (
    "Makhzani & Frey 2014 (full MNIST, 60,000 training digits, 1,000 hidden units, k = 25, logistic regression "
    "/ fine-tuning as described in the paper): about 1.35% test error, as quoted in issue 20; not checked offline"
)
KS = (10, 25, 40, 70)
NUM_TRAIN = 4000  # mnist5k's train split
# Resampled k = 10 runs: name suffix -> encoder scale (Bricken et al.'s 0.2, and 1.0: see the README).
RESAMPLE_SCALES = {"": 0.2, "_x1": 1.0}
RUNLOCAL_KS = (4, 8)  # runlocal: 64 latents


def ksparse_names(ks) -> tuple[str, ...]:
    return (*(f"k{k}" for k in ks), *(f"k{ks[0]}_resampled{tag}" for tag in RESAMPLE_SCALES))


def ksparse_config(k: int, runlocal: bool, data_dir, epochs: int, resample_scale: float = 0.0):
    c = sae_configs.get_config("kmakhzani,runlocal" if runlocal else "kmakhzani")
    c.unlock()
    c.data_dir = data_dir
    c.model.k = k
    if not runlocal:
        c.num_epochs = epochs
    if resample_scale:  # Bricken et al.'s resampling instead of the paper's k schedule, through the first half
        steps = c.num_train_steps or c.num_epochs * (NUM_TRAIN // c.batch_size)
        c.model.resample_every = max(1, steps // 10)
        c.model.resample_until = steps // 2
        c.model.resample_encoder_scale = resample_scale
    _probe_settings(c, "probe,sae")
    return c.lock()


def sparse_config(penalty: str, runlocal: bool, data_dir, epochs: int):
    c = sparse_configs.get_config(f"{penalty},{'runlocal' if runlocal else 'quick'}")
    c.unlock()
    c.data_dir = data_dir
    if not runlocal:
        c.num_epochs = epochs
    _probe_settings(c, "probe")
    return c.lock()


def _probe_settings(c, reports: str) -> None:
    c.analysis.reports = reports
    c.analysis.pca_baseline = False
    c.analysis.embedding = "pca"
    c.analysis.probe_labels_per_class = "all"  # the paper's protocol: every training label
    c.analysis.probe_seeds = 1


def locality(w: np.ndarray, shape=(28, 28)) -> np.ndarray:
    """How spread out each filter is: the root mean squared distance (pixels) of its energy w^2 from the
    energy's centroid. w: [F, h*w] -> [F]; a single-pixel filter gives 0, a uniform 28x28 filter ~11.4."""
    e = np.square(w.reshape(len(w), *shape).astype(np.float64))
    e = e / np.maximum(e.sum(axis=(1, 2), keepdims=True), 1e-30)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (e * yy).sum(axis=(1, 2)), (e * xx).sum(axis=(1, 2))
    var = (e * ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)).sum(axis=(1, 2))
    return np.sqrt(var)


def filter_stats(workdir: str) -> tuple[np.ndarray, dict]:
    """The decoder rows [n, 784] of a k-sparse run's checkpoint, ordered by how often each latent is active
    on the test split (most first), and their statistics."""
    run = runs.load_run(workdir)
    v = run.variables
    w = np.asarray(v["params"]["W_dec"])
    code = np.asarray(run.model.apply(v, run.test_split.x, method="encode"))
    freq = (code != 0).mean(axis=0)
    order = np.argsort(-freq, kind="stable")
    alive = freq > 0
    spread = locality(w[alive])
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    train_mse = [m["loss/mse"] for m in logged if "loss/mse" in m]
    return w[order], {
        "filter_spread_median_px": float(np.median(spread)),
        "test_active_fraction": float(alive.mean()),
        "train_sq_err_at_k": float(train_mse[-1]),  # the last logged window, k (not alpha * k) active
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/makhzani_frey_2014")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
    parser.add_argument("--runlocal", action="store_true", help="20-step runs of small models: a smoke test")
    parser.add_argument("--epochs", type=int, default=150, help="training epochs of every run (not --runlocal)")
    args = parser.parse_args()
    ks = RUNLOCAL_KS if args.runlocal else KS
    todo = {f"k{k}": ksparse_config(k, args.runlocal, args.data_dir, args.epochs) for k in ks}
    for tag, scale in RESAMPLE_SCALES.items():
        todo[f"k{ks[0]}_resampled{tag}"] = ksparse_config(ks[0], args.runlocal, args.data_dir, args.epochs, scale)
    todo["l1"] = sparse_config("l1", args.runlocal, args.data_dir, args.epochs)
    todo["kl"] = sparse_config("kl", args.runlocal, args.data_dir, args.epochs)
    results, panels = {}, {}
    for name, config in todo.items():
        results[name] = runs.train_or_load(config, os.path.join(args.workdir, name))
        if name in ksparse_names(ks):
            w, stats = filter_stats(os.path.join(args.workdir, name))
            results[name].update(stats)
            title = name[1:].replace("_resampled_x1", " resampled x1.0").replace("_resampled", " resampled x0.2")
            panels[f"k = {title} ({stats['filter_spread_median_px']:.1f} px)"] = w.reshape(-1, 28, 28)
    filters_lib.plot_filter_panels(panels, os.path.join(args.workdir, "filters.png"), max_filters=64)
    table = make_table(results, ks)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table)
    print(table)


def make_table(results: dict, ks) -> str:
    """The README's table: linear-probe test error (%) on all labels, with code size and sparsity."""

    def err(r, rep="encoder"):
        return f"{100 * (1 - r[f'probe/{rep}/nall/accuracy_mean']):.2f}"

    rows = [
        "| representation | code size | test L0 | median filter spread (px) | units active on test "
        "| train sq. err at k | test FVU at 3k | probe test error (%) | same encoder at random init (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ksparse_names(ks):
        r, k = results[name], int(name[1:].split("_")[0])
        extra = ""
        if "_resampled" in name:
            extra = f", dead latents resampled (encoder scale {RESAMPLE_SCALES[name.split('_resampled')[1]]})"
        rows.append(
            f"| k-sparse AE, k = {k}{extra} (3k = {3 * k} at test) | {r['code_dim']} | {r['sae/l0']:.1f} "
            f"| {r['filter_spread_median_px']:.2f} | {100 * r['test_active_fraction']:.1f}% "
            f"| {r['train_sq_err_at_k']:.2f} | {r['sae/fvu']:.3f} | {err(r)} | {err(r, 'random_init')} |"
        )
    for name, label in (("l1", "L1 sparse AE, {} ReLU"), ("kl", "KL sparse AE, {} sigmoid (rho = 0.05)")):
        r = results[name]
        label = label.format(r["code_dim"])
        rows.append(f"| {label} | {r['code_dim']} | | | | | | {err(r)} | {err(r, 'random_init')} |")
    for name in ("l1", "kl"):
        r = results[name]
        rows.append(f"| PCA, K = {r['code_dim']} | {r['code_dim']} | | | | | | {err(r, 'pca')} | |")
    rows.append(f"| raw pixels | 784 | | | | | | {err(results['l1'], 'pixels')} | |")
    return "\n".join(rows) + f"\n\nPaper: {PAPER}.\n"


if __name__ == "__main__":
    main()
