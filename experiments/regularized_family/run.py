"""Trains the plain autoencoder and each regularized one (quick CPU variants) and compares them.

  python -m experiments.regularized_family.run --data_dir=/tmp/tfds_dev --workdir=/tmp/regularized_family
  python -m experiments.regularized_family.run --all      # also emphasized DAE, exact CAE, CAE+H (+ ~6 min)
  python -m experiments.regularized_family.run --runlocal --workdir=/tmp/rf_local   # 20 steps a run, smoke test

Each run is `aejax.train.train_and_evaluate` on a config of configs/{sparse,denoising,contractive}.py with its
"quick" variant ("runlocal" with --runlocal), in `<workdir>/<run>`; a run whose results.json exists is not
retrained. Writes table.md (the measured table of the README) and the comparison figures sparsity_*.png,
denoising_*.png, contractive_*.png.
"""

import argparse
import json
import os

import jax
import numpy as np

from aejax import plots, runs
from aejax.analysis import regularization
from aejax.analysis.reports import contractive as contractive_report
from aejax.analysis.reports import sparsity as sparsity_report
from configs import contractive, denoising, sparse

# name -> (config module, variant, reports): the plain references train the same networks without a penalty.
RUNS = {
    "plain_relu32": (sparse, "l1,plain,quick", "sparsity"),
    "l1_relu32": (sparse, "l1,quick", "sparsity"),
    "plain_sigmoid500": (contractive, "plain,quick", "sparsity,denoising,contractive"),
    "kl_sigmoid500": (sparse, "kl,quick", "sparsity"),
    "dae_masking": (denoising, "masking,quick", "denoising"),
    "dae_gaussian": (denoising, "gaussian,quick", "denoising"),
    "dae_salt_and_pepper": (denoising, "salt_and_pepper,quick", "denoising"),
    "cae_closed_form": (contractive, "closed_form,quick", "contractive"),
    "cae_hutchinson": (contractive, "hutchinson,quick", "contractive"),
}
EXTRA_RUNS = {
    "dae_emphasized": (denoising, "emphasized,quick", "denoising"),
    "plain_sigmoid100": (contractive, "exact,plain,quick", "contractive"),
    "cae_exact100": (contractive, "exact,quick", "contractive"),
    "cae_h100": (contractive, "cae_h,quick", "contractive"),
}
CORRUPTIONS = ("masking", "gaussian", "salt_and_pepper")


def run_all(todo: dict, workdir: str, data_dir: str | None, runlocal: bool = False) -> dict[str, tuple]:
    """{name: (config, results)}, training the runs without a results.json."""
    out = {}
    for name, (module, variant, reports) in todo.items():
        if runlocal:
            variant = variant.replace("quick", "runlocal")
        config = module.get_config(variant)
        config.data_dir = data_dir
        config.analysis.reports = reports
        config.analysis.pca_baseline = False  # the comparison here is between autoencoders
        out[name] = (config, runs.train_or_load(config, os.path.join(workdir, name)))
    return out


def reconstruct_fn(run: runs.Run):
    """x~ [B, *input_shape] -> mean reconstruction E[x | f(x~)] of a trained run (its latest checkpoint)."""
    variables = run.variables
    return lambda x: run.likelihood.mean(run.model.apply(variables, x).decoder_output)


def sparsity_section(done: dict, workdir: str) -> list[str]:
    rows = ["| model | code | mean code activation | fraction with h <= 0.05 | median unit mean | test sq. err |"]
    rows.append("|---|---|---|---|---|---|")
    for name in ("plain_relu32", "l1_relu32", "plain_sigmoid500", "kl_sigmoid500"):
        if name in done:
            c, r = done[name]
            code = f"{c.model.code_dim} {c.model.code_activation}"
            mean, frac = r["sparsity/mean_activation"], r["sparsity/fraction_near_zero"]
            rows.append(
                f"| {name} | {code} | {mean:.3f} | {frac:.3f} "
                f"| {r['sparsity/median_unit_activation']:.3f} | {r['test_sq_err']:.1f} |"
            )
    for pair, rho in ((("plain_relu32", "l1_relu32"), None), (("plain_sigmoid500", "kl_sigmoid500"), 0.05)):
        stats = {}
        for name in pair:
            if name in done:
                h = np.load(os.path.join(workdir, name, "sparsity.npz"))
                mean = done[name][1]["sparsity/mean_activation"]
                frac = done[name][1]["sparsity/fraction_near_zero"]
                stats[name] = regularization.CodeStatistics(
                    mean, h["unit_means"], frac, h["hist_counts"], h["hist_edges"]
                )
        sparsity_report.plot_histograms(stats, os.path.join(workdir, f"sparsity_{pair[1]}.png"), rho=rho)
    return rows


def denoising_section(done: dict, workdir: str) -> list[str]:
    names = [n for n in done if n == "plain_sigmoid500" or n.startswith("dae_")]
    head = " | ".join(f"{c} sq. err (PSNR dB)" for c in CORRUPTIONS)
    rows = [f"| model | clean test sq. err | {head} |", "|---|---|" + "---|" * len(CORRUPTIONS)]
    r0 = done[names[0]][1]
    cells = [
        f"{r0[f'denoising/{c}/corrupted_sq_err']:.1f} ({r0[f'denoising/{c}/corrupted_psnr']:.1f})"
        for c in CORRUPTIONS
    ]
    rows.append(f"| corrupted input, not denoised | 0 | {' | '.join(cells)} |")
    for name in names:
        r = done[name][1]
        cells = [f"{r[f'denoising/{c}/sq_err']:.1f} ({r[f'denoising/{c}/psnr']:.1f})" for c in CORRUPTIONS]
        rows.append(f"| {name} | {r['test_sq_err']:.1f} | {' | '.join(cells)} |")
    # Masking: corrupted / plain AE / DAE / clean, on the same corrupted digits (both runs see the same
    # test split, scaled to [0, 1] by their config's transforms, and the same masking key).
    x = x_tilde = None
    image_rows, titles = [], []
    for name in ("plain_sigmoid500", "dae_masking"):
        if name in done:
            run = runs.load_run(os.path.join(workdir, name))
            x = run.test_split.x[:10]
            res = regularization.denoising_error(reconstruct_fn(run), x, "masking", jax.random.key(0), nu=0.25)
            x_tilde = res.x_tilde
            image_rows.append(res.recon)
            titles.append(f"{name} ({res.psnr.mean():.1f} dB)")
    plots.image_rows(
        [x_tilde, *image_rows, x], ["25% masked", *titles, "clean"], os.path.join(workdir, "denoising_masking.png")
    )
    return rows


def contractive_section(done: dict, workdir: str) -> list[str]:
    rows = [
        "| model | code | mean \\|\\|J_f\\|\\|_F | saturated fraction | sing. values for 90% "
        "| ratio r=0.1 | ratio r=20 | test sq. err | train examples/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    curves = {}
    for name in (
        "plain_sigmoid500",
        "cae_closed_form",
        "cae_hutchinson",
        "plain_sigmoid100",
        "cae_exact100",
        "cae_h100",
    ):
        if name in done:
            c, r = done[name]
            rows.append(
                f"| {name} | {c.model.code_dim} sigmoid | {r['contractive/mean_jacobian_norm']:.3f} "
                f"| {r['contractive/saturated_fraction']:.3f} | {r['contractive/singular_values_for_90pct']} "
                f"| {r['contractive/contraction_ratio_r0.1']:.4f} | {r['contractive/contraction_ratio_r20']:.4f} "
                f"| {r['test_sq_err']:.1f} | {r['examples_per_s']:.0f} |"
            )
            curves[name] = dict(np.load(os.path.join(workdir, name, "contractive.npz")))
    contractive_report.plot_contraction(curves, os.path.join(workdir, "contractive_comparison.png"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/regularized_family")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
    parser.add_argument("--all", action="store_true", help="also the emphasized DAE, exact CAE and CAE+H")
    parser.add_argument("--runlocal", action="store_true", help="the runlocal variants (20 steps): a smoke test")
    args = parser.parse_args()
    todo = {**RUNS, **(EXTRA_RUNS if args.all else {})}
    done = run_all(todo, args.workdir, args.data_dir, args.runlocal)
    table = ["## Sparse", *sparsity_section(done, args.workdir), "", "## Denoising"]
    table += [*denoising_section(done, args.workdir), "", "## Contractive"]
    table += contractive_section(done, args.workdir)
    times = {name: r["train_time_s"] for name, (_, r) in done.items()}
    table += ["", f"Train time (s): {json.dumps(times)}"]
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
