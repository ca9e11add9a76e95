"""The models of the top-level README, measured by the commands the README gives: the main job and its 2-D code,
the convolutional autoencoder and its MLP controls, the convolutional DAE, the VAEs (the linear VAE against
PPCA, the MLP and conv VAE) and the stacked autoencoder against random init.

  python -m experiments.main_models.run --workdir=runs/main_models            # every row, ~30 min on 2 CPU cores
  python -m experiments.main_models.run --workdir=/tmp/mm --runlocal          # two 20-step runs: a smoke test

Each row is one `python launch.py --config=configs/<file>.py[:<variant>] --workdir=<workdir>/<row>` in a
subprocess, so the wall time in the table is that of the whole command as a user types it (start-up, data,
compilation, training, evaluation, reports and figures). A row whose workdir already holds results.json is read
back, not retrained (its wall time is then the earlier one, kept in wall_time.json). Writes table.md,
its sections main.md, conv.md, vae.md and stacked.md (for the README's sections), and results.json (every row's
results.json, by row) in the workdir.

Units: squared error per test image summed over 784 pixels in [0, 1]; NLL, ELBO and IWAE bounds in nats per test
example; PSNR in dB with peak 1, averaged over images.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import jax

from aejax import runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (row name, config argument of launch.py); the runlocal smoke test runs the rows in SMOKE with ",runlocal" added.
ROWS = (
    ("main", "configs/mnist_ae.py"),
    ("main_code2", "configs/mnist_ae.py:code2"),
    ("conv", "configs/conv_ae.py"),
    ("conv_mlp", "configs/conv_ae.py:mlp"),
    ("conv_code2", "configs/conv_ae.py:code2"),
    ("conv_mlp_code2", "configs/conv_ae.py:mlp,code2"),
    ("conv_denoising", "configs/conv_ae.py:denoising"),
    ("vae_linear", "configs/vae.py:linear"),
    ("vae", "configs/vae.py"),
    ("vae_code2", "configs/vae.py:code2"),
    ("vae_conv", "configs/vae.py:conv"),
    ("stacked", "configs/stacked.py:quick"),
)
SMOKE = ("main", "vae_linear")


def launch(config: str, workdir: str) -> dict:
    """Runs `python launch.py --config=<config> --workdir=<workdir>` (or reads back a finished run); returns its
    results.json with the command's wall time (s) and the parameter count of the trained model added."""
    results_path = os.path.join(workdir, "results.json")
    wall_path = os.path.join(workdir, "wall_time.json")
    if not os.path.exists(results_path):
        command = [sys.executable, "launch.py", f"--config={config}", f"--workdir={workdir}"]
        print("$ python " + " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True)
        os.makedirs(workdir, exist_ok=True)
        with open(wall_path, "w") as f:
            json.dump({"wall_time_s": time.perf_counter() - start}, f)
    with open(results_path) as f:
        results = json.load(f)
    with open(wall_path) as f:
        results.update(json.load(f))
    if os.path.isdir(os.path.join(workdir, "checkpoints")):  # a stacked run keeps its sub-runs' in subfolders
        params = runs.load_run(workdir).variables["params"]
        results["num_params"] = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    return results


def _cmd(config: str) -> str:
    return f"`python launch.py --config={config}`"


def sections(rows: dict, configs: dict) -> dict[str, str]:
    """The README's tables from the rows' results, by README section: "main", "conv", "vae", "stacked" (rows that
    were not run are left out; a section without rows is empty)."""
    found = {}
    out = ["| main job | test squared error | Bernoulli NLL (nats) | PCA, same K | command wall time | training | "
           "examples/s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("main", "main_code2"):
        if r := rows.get(name):
            out.append(
                f"| {_cmd(configs[name])} (K = {r['code_dim']}) | **{r['test_sq_err']:.2f}** | "
                f"{r['test_nll']:.1f} | {r['pca_sq_err']:.2f} | {r['wall_time_s']:.0f} s | "
                f"{r['train_time_s']:.1f} s | {r['examples_per_s']:,.0f} |"
            )
    found["main"], out = out, []
    out += ["| convolutional AE and controls | K | parameters | test squared error | PCA, same K | "
            "command wall time |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("conv", "conv_mlp", "main", "conv_code2", "conv_mlp_code2"):
        if r := rows.get(name):
            out.append(
                f"| {_cmd(configs[name])} | {r['code_dim']} | {r['num_params']:,} | **{r['test_sq_err']:.2f}** | "
                f"{r['pca_sq_err']:.2f} | {r['wall_time_s']:.0f} s |"
            )
    if r := rows.get("conv_denoising"):
        g = "denoising/gaussian/"
        out += [
            "",
            f"{_cmd(configs['conv_denoising'])} (Gaussian noise sigma = 0.5, clipped): noisy test digits "
            f"{r[g + 'corrupted_sq_err']:.1f} ({r[g + 'corrupted_psnr']:.1f} dB) -> denoised "
            f"{r[g + 'sq_err']:.1f} ({r[g + 'psnr']:.1f} dB); clean-input error {r['test_sq_err']:.2f}.",
        ]
    found["conv"], out = out, []
    out += ["| VAE | test ELBO | test IWAE-k (k) | active units | training | `eval_time_s` | command wall "
            "time |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("vae_linear", "vae", "vae_code2", "vae_conv"):
        if r := rows.get(name):
            out.append(
                f"| {_cmd(configs[name])} | {r['test_elbo']:.2f} | **{r['test_iwae']:.2f}** "
                f"({r['eval_samples']}) | {r['active_units/active_units']} / {r['active_units/code_dim']} | "
                f"{r['train_time_s']:.0f} s | {r['eval_time_s']:.0f} s | {r['wall_time_s']:.0f} s |"
            )
    if r := rows.get("vae_linear"):
        out += [
            "",
            f"Linear VAE vs PPCA (sklearn `PCA({r['code_dim']}).score`, same split): IWAE bound "
            f"{r['test_iwae']:.3f} vs exact log-likelihood {r['ppca/ppca_log_lik']:.3f} nats, gap "
            f"{r['ppca/ppca_log_lik'] - r['test_iwae']:.3f}.",
        ]
    found["vae"], out = out, []
    if r := rows.get("stacked"):
        out += [
            f"{_cmd(configs['stacked'])} (784-256-128-30 sigmoid): greedy pretraining + fine-tuning, test squared "
            f"error {r['test_sq_err']:.2f}; the same network from random init with the same fine-tuning steps "
            f"{r['random_init_test_sq_err']:.2f}; PCA-30 {r['pca_sq_err']:.2f}; command wall time "
            f"{r['wall_time_s']:.0f} s.",
        ]
    found["stacked"] = out
    # A table section with nothing under its two header lines is empty; "stacked" is a sentence, not a table.
    has_rows = {k: len(v) > (0 if k == "stacked" else 2) for k, v in found.items()}
    return {k: "\n".join(v) + "\n" if has_rows[k] else "" for k, v in found.items()}


def table(rows: dict, configs: dict) -> str:
    """Every section's table, one after the other."""
    return "\n".join(t for t in sections(rows, configs).values() if t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/main_models")
    parser.add_argument("--runlocal", action="store_true", help="two 20-step rows: a smoke test")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    args = parser.parse_args()
    configs = dict(ROWS)
    names = args.rows.split(",") if args.rows else [n for n, _ in ROWS if not args.runlocal or n in SMOKE]
    unknown = sorted(set(names) - set(configs))
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(configs)}")
    if args.runlocal:
        configs = {n: c + (",runlocal" if ":" in c else ":runlocal") for n, c in configs.items()}
    rows = {}
    for name in names:
        rows[name] = launch(configs[name], os.path.abspath(os.path.join(args.workdir, name)))
        rows[name]["eval_samples"] = _eval_samples(os.path.join(args.workdir, name))
        print(table(rows, configs), flush=True)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table(rows, configs))
    for section, text in sections(rows, configs).items():  # one file per README section
        with open(os.path.join(args.workdir, f"{section}.md"), "w") as f:
            f.write(text)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({n: {k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
                   for n, r in rows.items()}, f, indent=2)  # fmt: skip


def _eval_samples(workdir: str):
    """k of the run's importance-weighted bound (config.vae.eval_samples), or None for non-VAE runs."""
    with open(os.path.join(workdir, "config.json")) as f:
        return json.load(f).get("vae", {}).get("eval_samples")


if __name__ == "__main__":
    main()
