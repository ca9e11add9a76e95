"""Inpainting on mnist5k: every fill of the "inpainting" report, on the 1,000 test digits, four masks.

  python -m experiments.inpainting_mnist.run                                 # all four runs, 2000 steps each
  python -m experiments.inpainting_mnist.run --runs=ae,vae --steps=500 --workdir=/tmp/inpaint

Runs (all on the 4,000 grey training digits, every class), each in <workdir>/<run>, a finished one reused:
- ae:          configs/mnist_ae.py, 784-1000-500-250-30, Bernoulli decoder;
- dae:         the same network trained with 25% masking noise (the AE and this DAE differ only in the noise);
- dae_sigmoid: configs/denoising.py:masking,quick, Vincent et al.'s one sigmoid layer 784-500, 25% masking;
- vae:         configs/vae.py (784-512-256, K = 20), here on grey pixels (transforms.binarize = "none") so that
               every run fills the same test images; pseudo-Gibbs then carries the decoder mean, not draws.
Each report also fills with the mean image and with PCA at the run's code size. Writes <workdir>/table.md
(PSNR on the missing pixels, dB, and squared error summed over them) and rows.json.
"""

import argparse
import json
import os

from aejax import runs
from aejax.analysis.inpainting import MASKS
from configs import denoising, mnist_ae
from configs import vae as vae_config

RUNS = ("ae", "dae", "dae_sigmoid", "vae")
FILL_NAMES = {
    "mean": "mean image",
    "autoencoder": "iterated projection, x_miss <- r(x)_miss",
    "one_pass": "one pass r(x~), missing = 0",
    "pseudo_gibbs": "pseudo-Gibbs (Rezende et al. 2014)",
}


def make_config(run: str, args):
    if run == "vae":
        c = vae_config.get_config("")
    elif run == "dae_sigmoid":
        c = denoising.get_config("masking,quick")
    else:
        c = mnist_ae.get_config("")
    c.unlock()
    c.num_epochs = 0
    c.num_train_steps = args.steps
    c.eval_every = args.steps
    c.checkpoint_every = args.steps
    c.log_every = 100
    c.analysis.embedding = "pca"
    c.analysis.reports = "inpainting"
    if run == "dae":
        c.corruption.name = "masking"
        c.corruption.nu = 0.25
    if run == "vae":
        c.transforms.binarize = "none"
        c.vae.eval_samples = 100
    if args.data_dir:
        c.data_dir = args.data_dir
    return c.lock()


def run_one(run: str, args) -> dict:
    return runs.train_or_load(make_config(run, args), os.path.join(args.workdir, run))


def table(results: dict, metric: str) -> str:
    lines = [
        "| run | fill | " + " | ".join(MASKS) + " |",
        "|---|---|" + "---|" * len(MASKS),
    ]
    for run, res in results.items():
        fills = sorted({k.split("/")[2] for k in res if k.startswith("inpainting/") and k.count("/") == 3})
        order = (
            ["mean"]
            + [f for f in fills if f.startswith("pca_")]
            + [f for f in ("autoencoder", "one_pass", "pseudo_gibbs") if f in fills]
        )
        for fill in order:
            name = FILL_NAMES.get(fill, f"PCA, k = {fill[4:]}, iterated projection")
            cells = [f"{res[f'inpainting/{m}/{fill}/{metric}']:.2f}" for m in MASKS]
            lines.append(f"| {run} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/inpainting_mnist")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    names = [r for r in args.runs.split(",") if r]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    os.makedirs(args.workdir, exist_ok=True)
    results = {}
    for run in names:
        res = run_one(run, args)
        results[run] = res
        print(json.dumps({k: v for k, v in res.items() if k.startswith("inpainting/") or k.startswith("test_")}))
    text = (
        f"PSNR on the missing pixels (dB, peak 1; higher is better), {args.steps} steps per run:\n\n"
        + table(results, "psnr")
        + "\n\nSquared error summed over the missing pixels, mean per test image (lower is better):\n\n"
        + table(results, "sq_err")
    )
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.workdir, "rows.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
