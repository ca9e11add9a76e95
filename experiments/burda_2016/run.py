"""VAE vs IWAE training (Burda et al. 2016, Table 1), a CPU-scale analogue on binarised mnist5k.

  python -m experiments.burda_2016.run                                    # k = 1, 5, 50; 1000 steps each
  python -m experiments.burda_2016.run --workdir=/tmp/burda --data_dir=/tmp/tfds
  python -m experiments.burda_2016.run --ks=1,50 --steps=1000 --eval_samples=1000

Each k trains `configs/vae.py` (default variant: K = 20, 784-512-256 encoder, Bernoulli decoder) with
config.vae.train_samples = k (k = 1: the ELBO with the analytic KL; k > 1: the IWAE_k bound) for the same
number of steps, in <workdir>/k<k>; a finished workdir is reused. Every run is scored on the test split by
IWAE_{eval_samples} (default 1000) and the ELBO.
"""

import argparse
import json
import os

from aejax import train
from configs import vae as vae_config


def make_config(k: int, args):
    c = vae_config.get_config("")
    c.unlock()
    c.model.code_dim = 20
    c.vae.train_samples = k
    c.vae.eval_samples = args.eval_samples
    c.num_epochs = 0
    c.num_train_steps = args.steps
    c.eval_every = args.steps
    c.checkpoint_every = args.steps
    c.analysis.pca_baseline = False
    c.analysis.reports = "active_units"
    if args.data_dir:
        c.data_dir = args.data_dir
    return c.lock()


def table(rows: list[dict], eval_samples: int) -> str:
    lines = [
        f"| training | test IWAE-{eval_samples} (nats) | test ELBO | test KL | active units | s / step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "VAE (k = 1)" if r["k"] == 1 else f"IWAE (k = {r['k']})"
        lines.append(
            f"| {name} | {r['test_iwae']:.2f} | {r['test_elbo']:.2f} | {r['test_kl']:.2f} | "
            f"{r['active_units']} / 20 | {r['s_per_step']:.4f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/burda_2016")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (sets config.data_dir)")
    parser.add_argument("--ks", default="1,5,50")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval_samples", type=int, default=1000)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for k in (int(s) for s in args.ks.split(",")):
        res = train.train_and_evaluate(make_config(k, args), os.path.join(args.workdir, f"k{k}"))
        row = dict(
            k=k,
            test_iwae=res["test_iwae"],
            test_elbo=res["test_elbo"],
            test_kl=res["test_kl"],
            test_recon_nll=res["test_recon_nll"],
            active_units=int(res["active_units/active_units"]),
            train_time_s=res["train_time_s"],
            num_steps=res["num_steps"],
            s_per_step=res["train_time_s"] / res["num_steps"],
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
