"""Latent size sweep of the VAE (Kingma & Welling 2014, Fig. 2), a CPU-scale analogue on binarised mnist5k.

  python -m experiments.kingma_welling_2014.run                                   # K = 2, 5, 10, 20, 50
  python -m experiments.kingma_welling_2014.run --workdir=/tmp/kw14 --data_dir=/tmp/tfds
  python -m experiments.kingma_welling_2014.run --steps=1500 --eval_samples=100 --codes=2,20

Each K trains `configs/vae.py` (default variant) with config.model.code_dim = K in <workdir>/K<K>; a finished
workdir is reused (aejax resumes or skips it). The train-split ELBO is computed afterwards from the checkpoint
on one fixed binarisation of the (grey, dynamically binarised) training split.
"""

import argparse
import json
import os

import numpy as np

from aejax import loop, runs, train, train_step
from aejax.data import transforms
from configs import vae as vae_config


def make_config(k: int, args) -> "ml_collections.ConfigDict":  # noqa: F821
    c = vae_config.get_config("")
    c.unlock()
    c.model.code_dim = k
    c.num_epochs = 0
    c.num_train_steps = args.steps
    c.vae.eval_samples = args.eval_samples
    c.eval_every = args.steps
    c.checkpoint_every = args.steps
    c.analysis.pca_baseline = False
    c.analysis.reports = "active_units"
    if args.data_dir:
        c.data_dir = args.data_dir
    return c.lock()


def train_elbo(workdir: str) -> float:
    """Mean ELBO (nats) of the trained run on its training split, binarised once with a fixed seed."""
    run = runs.load_run(workdir)
    x = transforms.bernoulli_sample(np.asarray(run.train_split.x), np.random.default_rng(12345))
    eval_step = train_step.make_eval_step(run.objective.eval_fn, run.mesh)
    ev = loop.evaluate(run.state, eval_step, x, run.train_split.labels, run.mesh, 500, seed=0)
    return float(np.mean(ev.metrics["elbo"]))


def table(rows: list[dict], eval_samples: int) -> str:
    lines = [
        f"| K | train ELBO | test ELBO | test IWAE-{eval_samples} | test KL | active units | train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['K']} | {r['train_elbo']:.2f} | {r['test_elbo']:.2f} | {r['test_iwae']:.2f} | "
            f"{r['test_kl']:.2f} | {r['active_units']} / {r['K']} | {r['train_time_s']:.0f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/kingma_welling_2014")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--codes", default="2,5,10,20,50")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval_samples", type=int, default=100)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for k in (int(s) for s in args.codes.split(",")):
        wd = os.path.join(args.workdir, f"K{k}")
        res = train.train_and_evaluate(make_config(k, args), wd)
        row = dict(
            K=k,
            train_elbo=train_elbo(wd),
            test_elbo=res["test_elbo"],
            test_iwae=res["test_iwae"],
            test_kl=res["test_kl"],
            test_recon_nll=res["test_recon_nll"],
            active_units=int(res["active_units/active_units"]),
            train_time_s=res["train_time_s"],
            num_steps=res["num_steps"],
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
        print(table(rows, args.eval_samples), flush=True)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table(rows, args.eval_samples) + "\n")
    with open(os.path.join(args.workdir, "rows.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(table(rows, args.eval_samples))


if __name__ == "__main__":
    main()
