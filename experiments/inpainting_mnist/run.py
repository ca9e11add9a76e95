"""Inpainting on mnist5k: fills that condition on the observed pixels, against the mean image and PCA, 3 seeds.

  python -m experiments.inpainting_mnist.run --workdir=/tmp/inpainting          # 12 runs, 2000 steps each
  python -m experiments.inpainting_mnist.run --runlocal --workdir=/tmp/inp_rl   # smoke: ae, vae, seed 0, 40 digits

Runs (all on the 4,000 grey training digits, every class), each trained with seeds 0, 1, 2 in
<workdir>/<run>_s<seed>, a finished one reused (`runs.train_or_load`; --reanalyse re-runs the evaluation and the
"inpainting" report of the finished runs with the current code):
- ae:    configs/mnist_ae.py, 784-1000-500-250-30, Bernoulli decoder (the main job);
- dae50: the same network trained with 50% masking noise, the missing fraction of random50;
- dae80: the same with 80% masking noise, the missing fraction of random80;
- vae:   configs/vae.py (784-512-256, K = 20), on grey pixels (transforms.binarize = "none").
Every run fills the same masked test digits, the first 500 of the 1,000 (--images; mask seed 0 whatever the
training seed). Fills (`aejax/analysis/reports/inpainting.py`): the mean image and PCA at the code size (listed
once, from the seed-0 runs); iterated projection and one pass r(x~) for every network; the code fit (Adam on z
against the observed pixels, from the encoder's code of the mean fill) for ae / dae50 / dae80, and for ae also
with the training codes' Gaussian as a prior; pseudo-Gibbs, the MAP code and the importance-
weighted posterior mean for the VAE. Writes <workdir>/table.md (squared error summed over the missing pixels and
PSNR on them, mean +- standard deviation over the seeds) and rows.json.
"""

import argparse
import json
import os
import time

import numpy as np

from aejax import runs
from aejax.analysis.inpainting import MASKS
from configs import mnist_ae
from configs import vae as vae_config

RUNS = ("ae", "dae50", "dae80", "vae")
SEEDS = (0, 1, 2)
MASK_SEED = 0  # every run fills the same masked test digits, whatever its training seed
MASKING = {
    "dae50": 0.5,
    "dae80": 0.8,
}  # masking-noise rate of each DAE: the missing fraction of random50 / random80

FILLS = {
    "ae": "pca,autoencoder,one_pass,code_fit,code_fit_prior",
    "dae50": "autoencoder,one_pass,code_fit",
    "dae80": "autoencoder,one_pass,code_fit",
    "vae": "pca,autoencoder,one_pass,pseudo_gibbs,map,importance",
}


def make_config(run: str, seed: int, args):
    """The config of `run` trained with `seed` (runlocal: the tiny networks of the configs' runlocal variants)."""
    local = "runlocal" if args.runlocal else ""
    c = vae_config.get_config(local) if run == "vae" else mnist_ae.get_config(local)
    c.unlock()
    c.seed = seed
    if not args.runlocal:
        c.num_epochs = 0
        c.num_train_steps = args.steps
        c.eval_every = args.steps
        c.checkpoint_every = args.steps
        c.log_every = 100
    c.analysis.embedding = "pca"
    c.analysis.reports = "inpainting"
    c.analysis.inpainting_mask_seed = MASK_SEED
    c.analysis.inpainting_fills = FILLS[run]
    c.analysis.inpainting_images = 40 if args.runlocal else args.images
    if run in MASKING:
        c.corruption.name = "masking"
        c.corruption.nu = MASKING[run]
    if run == "vae":
        c.transforms.binarize = "none"  # grey pixels, the test digits every run fills
        c.vae.eval_samples = 100
    if args.data_dir:
        c.data_dir = args.data_dir
    return c.lock()


FILL_NAMES = {
    "mean": "mean image",
    "autoencoder": "iterated projection, x_miss <- r(x)_miss",
    "one_pass": "one pass r(x~), missing = 0",
    "code_fit": "**code fit**: Adam on z, observed pixels",
    "code_fit_prior": "**code fit + code prior**: and the training codes' Gaussian",
    "pseudo_gibbs": "pseudo-Gibbs (Rezende et al. 2014)",
    "map": "**MAP code**: Adam on z, observed pixels + N(0, I)",
    "importance": "**importance-weighted posterior mean**",
}
METRICS = {"sq_err": "Squared error summed over the missing pixels, mean per test image (lower is better)",
           "psnr": "PSNR on the missing pixels (dB, peak 1; higher is better)"}  # fmt: skip


def run_one(run: str, seed: int, args) -> dict:
    config = make_config(run, seed, args)
    workdir = os.path.join(args.workdir, f"{run}_s{seed}")
    results = runs.train_or_load(config, workdir)
    if args.reanalyse and "inpainting/num_images" in results:  # fresh numbers from the current report code
        results = runs.reanalyse(workdir)
    return results


def fill_rows(results: dict) -> list[tuple[str, str, list[dict]]]:
    """(run, fill, [results of each seed]) in table order: the baselines once (seed 0), then each run's fills."""
    rows = []
    for run, by_seed in results.items():
        first = by_seed[0]
        fills = [k.split("/")[2] for k in first if k.startswith("inpainting/random50/") and k.endswith("/sq_err")]
        for fill in fills:
            if fill == "mean" or fill.startswith("pca_"):
                if not any(r == "-" and f == fill for r, f, _ in rows):
                    rows.insert(sum(r == "-" for r, _, _ in rows), ("-", fill, [first]))
            else:
                rows.append((run, fill, by_seed))
    return rows


def table(results: dict, metric: str) -> str:
    lines = ["| run | fill | " + " | ".join(MASKS) + " |", "|---|---|" + "---|" * len(MASKS)]
    for run, fill, by_seed in fill_rows(results):
        name = FILL_NAMES.get(fill, f"PCA, k = {fill[4:]}, iterated projection")
        cells = []
        for mask in MASKS:
            v = np.array([r[f"inpainting/{mask}/{fill}/{metric}"] for r in by_seed])
            cells.append(f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std():.2f}")
        lines.append(f"| {run} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/inpainting_mnist")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--runs", default=None, help=f"default {','.join(RUNS)}; runlocal ae,vae")
    parser.add_argument("--seeds", default=None, help=f"default {','.join(map(str, SEEDS))}; runlocal 0")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--images", type=int, default=500, help="test digits filled (the first ones; 0: all)")
    parser.add_argument("--runlocal", action="store_true", help="tiny networks, 40 test digits: seconds")
    parser.add_argument("--reanalyse", action="store_true", help="re-run the report on finished runs")
    args = parser.parse_args()
    names = [r for r in (args.runs or ("ae,vae" if args.runlocal else ",".join(RUNS))).split(",") if r]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.runlocal else ",".join(map(str, SEEDS)))).split(",") if s]
    os.makedirs(args.workdir, exist_ok=True)
    start = time.time()
    results = {run: [run_one(run, seed, args) for seed in seeds] for run in names}
    text = "\n\n".join(
        f"{METRICS[m]}; mean ± standard deviation over training seeds {','.join(map(str, seeds))}, "
        f"{'runlocal' if args.runlocal else args.steps} steps per run:\n\n" + table(results, m)
        for m in METRICS
    )
    extra = {
        f"{run}_s{seed}": {k: v for k, v in r.items() if k.endswith(("/ess", "/iterations", "/converged"))}
        for run in names
        for seed, r in zip(seeds, results[run], strict=True)
    }
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "rows.json"), "w") as f:
        json.dump({"results": results, "wall_s": time.time() - start}, f, indent=2)
    print(text)
    print(json.dumps(extra, indent=1))
    print(f"wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
