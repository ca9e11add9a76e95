"""Does pre-training help a one-hidden-layer classifier, and which autoencoder helps most? (Rifai et al. 2011,
Table 1; Erhan et al. 2010.) A CPU-scale analogue on mnist5k with 400 and 4,000 labels.

  python -m experiments.rifai_2011.run --workdir=/tmp/rifai_2011
  python -m experiments.rifai_2011.run --runlocal --workdir=/tmp/rifai_local   # seconds a run

The network is 784-500 sigmoid (configs/contractive.py's "quick" size), pre-trained for 50 epochs (1,550 steps
of batch 128 on the 4,000 unlabelled training digits) as
- "ae": the plain autoencoder (configs/contractive.py:plain,quick),
- "dae": a denoising autoencoder with 25% masking noise (configs/denoising.py:masking,quick),
- "cae": the contractive autoencoder, Rifai's closed-form penalty, lambda = 1 (configs/contractive.py:quick),
and, as its own network, "vae": a VAE with the same 784-500 sigmoid trunk and a 50-D Gaussian code
(configs/vae.py with those overrides, grey-level inputs like the others). Each encoder is then
1. probed linearly (the "probe" report: 40 per class over 5 subsets, and all labels), and
2. fine-tuned with a softmax layer on 400 (40 per class) and 4,000 labels for 2,000 steps of
   batch 100 (Adam 3e-3, warm-up 50 steps then cosine decay; `aejax.jobs.finetune`), against the same network
   fine-tuned from random init with the same budget; 3 seeds (labelled subset, softmax init, batch order),
   mean ± std.
The "contractive" report gives mean ||J_f||_F and the saturated fraction of the sigmoid code for AE, DAE, CAE.
Writes table.md and results.json in the workdir.
"""

import argparse
import json
import os

from aejax import runs
from aejax.jobs import finetune
from configs import contractive, denoising, vae

PAPER = (
    "Rifai et al. 2011, Table 1 (full MNIST, tens of thousands of labels, one pre-trained hidden layer, "
    "hyperparameters chosen on a validation set): CAE 1.14% test error"
)


def configs(runlocal: bool) -> dict:
    """name -> config of each pre-training."""
    size = "runlocal" if runlocal else "quick"
    out = {
        "ae": contractive.get_config(f"plain,{size}"),
        "dae": denoising.get_config(f"masking,{size}"),
        "cae": contractive.get_config(f"closed_form,{size}"),
    }
    v = vae.get_config("runlocal" if runlocal else "")
    v.unlock()
    v.transforms.binarize = "none"  # the same grey-level inputs as the autoencoders (Bernoulli likelihood)
    v.model.hidden = (out["ae"].model.code_dim,)
    v.model.activation = "sigmoid"
    v.model.code_dim = 8 if runlocal else 50
    v.num_epochs = out["ae"].num_epochs
    v.vae.eval_samples = 10  # the IWAE bound is not what is measured here
    v.vae.eval_chunk = 10
    v.analysis.reports = ""
    out["vae"] = v
    for name, c in out.items():
        c.unlock()
        c.analysis.reports = ",".join(filter(None, ["probe", "contractive" if name != "vae" else ""]))
        c.analysis.probe_labels_per_class = "1,10,40,all"
        c.analysis.pca_baseline = False
        c.lock()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="/tmp/rifai_2011")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--runlocal", action="store_true")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds (subset, head, order)")
    parser.add_argument("--finetune_steps", type=int, default=2000)
    # Sigmoid networks learn slowly at Adam's 1e-3 (1,000 steps left 3% train error on 4,000 labels, measured).
    parser.add_argument("--finetune_lr", type=float, default=3e-3)
    args = parser.parse_args()
    settings = finetune.default_settings()
    settings.num_steps = 20 if args.runlocal else args.finetune_steps
    settings.optimizer.learning_rate = args.finetune_lr
    settings.optimizer.warmup_steps = min(settings.optimizer.warmup_steps, settings.num_steps // 10)
    labels = (10, "all") if args.runlocal else (40, "all")
    results = {}
    for name, config in configs(args.runlocal).items():
        config.unlock()
        config.data_dir = args.data_dir
        config.lock()
        run_dir = os.path.join(args.workdir, name)
        res = runs.train_or_load(config, run_dir)
        # Random init of the same network: the AE's for the 784-500 classifier, the VAE's own for the VAE.
        starts = ("pretrained", "random") if name in ("ae", "vae") else ("pretrained",)
        res["finetune"] = finetune.compare_starts(
            run_dir,
            os.path.join(run_dir, "classifier"),
            labels_per_class=labels,
            starts=starts,
            seeds=args.seeds,
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
    head = (
        f"| network | pre-training | probe, {10 * n_small} labels | probe, all "
        f"| fine-tuned, {10 * n_small} labels | fine-tuned, all | saturated fraction | mean ‖J_f‖_F |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]

    def probe_err(res, rep, n):
        mean, std = res[f"probe/{rep}/n{n}/accuracy_mean"], res[f"probe/{rep}/n{n}/accuracy_std"]
        return f"{100 * (1 - mean):.1f}" + (f" ± {100 * std:.1f}" if n != "all" else "")

    def ft_err(res, start, n):
        r = res["finetune"][f"{start}/n{n}"]
        return f"{100 * r['test_error_mean']:.1f} ± {100 * r['test_error_std']:.1f}"

    def contr(res, key, fmt):
        return fmt.format(res[f"contractive/{key}"]) if f"contractive/{key}" in res else "-"

    for name, net in (("ae", "784-500-10"), ("vae", "784-500-50-10")):
        res = results[name]
        rows.append(
            f"| {net} | none (random init) | {probe_err(res, 'random_init', n_small)} | "
            f"{probe_err(res, 'random_init', n_all)} | {ft_err(res, 'random', n_small)} | "
            f"{ft_err(res, 'random', n_all)} | - | - |"
        )
        for pre in ("ae", "dae", "cae") if name == "ae" else ("vae",):
            r = results[pre]
            rows.append(
                f"| {net} | {pre.upper()} | {probe_err(r, 'encoder', n_small)} | "
                f"{probe_err(r, 'encoder', n_all)} | "
                f"{ft_err(r, 'pretrained', n_small)} | {ft_err(r, 'pretrained', n_all)} | "
                f"{contr(r, 'saturated_fraction', '{:.3f}')} | {contr(r, 'mean_jacobian_norm', '{:.2f}')} |"
            )
    r = results["ae"]
    rows.append(
        f"| linear on pixels | - | {probe_err(r, 'pixels', n_small)} | {probe_err(r, 'pixels', n_all)} | | | | |"
    )
    rows.append(
        f"| linear on PCA-500 | - | {probe_err(r, 'pca', n_small)} | {probe_err(r, 'pca', n_all)} | | | | |"
    )
    return "\n".join(rows) + f"\n\nPaper: {PAPER}.\n"


if __name__ == "__main__":
    main()
