"""Does greedy layer-wise (denoising) pre-training help a deep classifier? (Vincent et al. 2010, Table 3: SAE-3
vs SDAE-3; Erhan et al. 2010.) A CPU-scale analogue on mnist5k with 400 and 4,000 labels.

  python -m experiments.vincent_2010.run --workdir=/tmp/vincent_2010
  python -m experiments.vincent_2010.run --runlocal --workdir=/tmp/vincent_local   # seconds

The network is configs/stacked.py's "quick" 784-256-128-30 (sigmoid hidden units, linear 30-D top layer),
pre-trained greedily, one layer at a time for 10 epochs each on the 4,000 unlabelled training digits, as
- "sae": plain autoencoders (configs/stacked.py:quick), SAE-3,
- "sdae": denoising autoencoders with 25% masking noise on each layer's own input (:quick,sdae), SDAE-3.
The stacked job's end-to-end unsupervised stage is cut to one step, which under the warm-up schedule has
learning rate 0, so its `finetune/` run holds exactly the greedy layer-wise weights (checked: the table prints
the test reconstruction error before and after it). Each encoder is then probed linearly (the "probe" report)
and fine-tuned with a softmax layer on 400 (40 per class) and 4,000 labels for 2,000 steps of
batch 100 (Adam 3e-3, warm-up 50 then cosine; `aejax.jobs.finetune`), against the same network fine-tuned from
random init with the same budget; 3 seeds (labelled subset, softmax init, batch order), mean ± std.
Writes table.md and results.json in the workdir.
"""

import argparse
import json
import os

from aejax import runs
from aejax.jobs import finetune
from configs import stacked as stacked_configs

PAPER = (
    "Vincent et al. 2010, Table 3 (full MNIST, tens of thousands of labels, 3 hidden layers, hyperparameters "
    "chosen on a validation set, supervised fine-tuning): SDAE-3 1.28% test error"
)


def config(variant: str, runlocal: bool, data_dir):
    c = stacked_configs.get_config(",".join(filter(None, [variant, "runlocal" if runlocal else "quick"])))
    c.unlock()
    c.data_dir = data_dir
    c.num_epochs = 0
    c.num_train_steps = 1  # the end-to-end unsupervised stage: one step at warm-up learning rate 0
    c.stacked.compare_random_init = False  # the random-init baseline here is the supervised one
    c.analysis.reports = "probe"
    c.analysis.probe_labels_per_class = "1,10,40,all"
    c.analysis.pca_baseline = False
    return c.lock()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="/tmp/vincent_2010")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--runlocal", action="store_true")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds (subset, head, order)")
    parser.add_argument("--finetune_steps", type=int, default=2000)
    parser.add_argument("--finetune_lr", type=float, default=3e-3)
    args = parser.parse_args()
    settings = finetune.default_settings()
    settings.num_steps = 20 if args.runlocal else args.finetune_steps
    settings.optimizer.learning_rate = args.finetune_lr
    settings.optimizer.warmup_steps = min(settings.optimizer.warmup_steps, settings.num_steps // 10)
    labels = (10, "all") if args.runlocal else (40, "all")
    results = {}
    for name, variant in (("sae", ""), ("sdae", "sdae")):
        run_dir = os.path.join(args.workdir, name)
        res = runs.train_or_load(config(variant, args.runlocal, args.data_dir), run_dir)
        encoder_run = os.path.join(run_dir, "finetune")
        with open(os.path.join(encoder_run, "results.json")) as f:
            res["encoder_run"] = json.load(f)
        starts = ("pretrained", "random") if name == "sae" else ("pretrained",)
        res["finetune"] = finetune.compare_starts(
            encoder_run,
            os.path.join(run_dir, "classifier"),
            labels_per_class=labels,
            seeds=args.seeds,
            starts=starts,
            settings=settings,
        )
        results[name] = res
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = make_table(results, labels)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table)
    print(table)


def make_table(results: dict, labels: tuple) -> str:
    """The README's table: test error (%) of linear probe and fine-tuning at each label count."""
    n_small, n_all = labels
    rows = [
        f"| pre-training of 784-256-128-30-10 | probe, {10 * n_small} labels | probe, all "
        f"| fine-tuned, {10 * n_small} labels | fine-tuned, all | test sq. err before / after the 1-step stage |",
        "|---|---|---|---|---|---|",
    ]

    def probe_err(res, rep, n):
        p = res["encoder_run"]
        mean, std = p[f"probe/{rep}/n{n}/accuracy_mean"], p[f"probe/{rep}/n{n}/accuracy_std"]
        return f"{100 * (1 - mean):.1f}" + (f" ± {100 * std:.1f}" if n != "all" else "")

    def ft_err(res, start, n):
        r = res["finetune"][f"{start}/n{n}"]
        return f"{100 * r['test_error_mean']:.1f} ± {100 * r['test_error_std']:.1f}"

    r = results["sae"]
    rows.append(
        f"| none (random init) | {probe_err(r, 'random_init', n_small)} | {probe_err(r, 'random_init', n_all)} | "
        f"{ft_err(r, 'random', n_small)} | {ft_err(r, 'random', n_all)} | |"
    )
    for name, label in (("sae", "SAE-3 (autoencoders)"), ("sdae", "SDAE-3 (25% masking)")):
        r = results[name]
        rows.append(
            f"| {label} | {probe_err(r, 'encoder', n_small)} | {probe_err(r, 'encoder', n_all)} | "
            f"{ft_err(r, 'pretrained', n_small)} | {ft_err(r, 'pretrained', n_all)} | "
            f"{r['stacked_before_finetune_test_sq_err']:.2f} / {r['test_sq_err']:.2f} |"
        )
    r = results["sae"]
    rows.append(
        f"| linear on pixels | {probe_err(r, 'pixels', n_small)} | {probe_err(r, 'pixels', n_all)} | | | |"
    )
    rows.append(f"| linear on PCA-30 | {probe_err(r, 'pca', n_small)} | {probe_err(r, 'pca', n_all)} | | | |")
    return "\n".join(rows) + f"\n\nPaper: {PAPER}.\n"


if __name__ == "__main__":
    main()
