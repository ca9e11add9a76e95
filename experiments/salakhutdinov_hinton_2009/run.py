"""Salakhutdinov & Hinton (2009), CPU-scale analogue on mnist5k: semantic hashing, and error against code size.

1. The hashing study (always): `configs/hashing.py` trained for seeds 0, 1, 2 in every row of an ablation at 32
   bits (the noise code of the paper, straight-through bits, the bit-balance and bit-decorrelation penalties,
   the noise schedule, twice the epochs) and, for the best row, at 16 and 64 bits. Each run's "retrieval" report
   ranks with its bits, with code-space ITQ of its pre-threshold codes, and with LSH, PCA sign and ITQ of the
   same seed. Writes <workdir>/hashing_tables.md (mean and min-max over the seeds) and summary.json.
2. With --compression, the compression curve: for K in 2, 4, 8, 16, 32, 64 a deep autoencoder (the main job at
   code size K) and a linear one (`config.py`), and PCA; test squared error per image with float codes and with
   codes quantised to 4 and 8 bits per dimension, plus the best hashing autoencoders' b-bit codes (1 bit per
   dimension), so the x-axis can be bits per image. For the linear autoencoder the principal angles between its
   decoder's column space and the top-K principal subspace (Baldi & Hornik 1989). Writes compression.png and
   compression_table.md.

Runs that already finished in <workdir>/<name> are reused.

    python -m experiments.salakhutdinov_hinton_2009.run --workdir=/tmp/sh09                 # the hashing study
    python -m experiments.salakhutdinov_hinton_2009.run --compression --workdir=/tmp/sh09   # + the curve
    python -m experiments.salakhutdinov_hinton_2009.run --runlocal --workdir=/tmp/sh09_local   # smoke test
"""

import argparse
import json
import os
import time

import jax
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from aejax import runs
from aejax.analysis import compression
from configs import hashing as hashing_config
from experiments.salakhutdinov_hinton_2009 import config as sh09_config

BITS_PER_DIM = (4, 8)
HASH_BITS = (16, 32, 64)
SEEDS = (0, 1, 2)
ABLATION_BITS = 32
# The ablation: (row label, variants of configs/hashing.py added to "bits32"); every row is trained for SEEDS.
ABLATION = (
    ("noise (Salakhutdinov & Hinton)", ""),
    ("straight-through", "straight_through"),
    ("noise + balance", "balance"),
    ("noise + decorrelation", "decorrelation"),
    ("noise + balance + decorrelation", "balance,decorrelation"),
    ("noise + balance + noise schedule", "balance,noise_schedule"),
    ("straight-through + balance", "straight_through,balance"),
    ("noise + balance, 2x epochs", "balance,long"),
)
FIRST_ROWS = 5  # run before the other code sizes (a shared machine may not finish every row by a deadline)
BEST = "balance"  # the variants run at every b in HASH_BITS (one of the ablation's rows)
assert BEST in dict((v, k) for k, v in ABLATION), BEST


def trained(name: str, config, workdir: str, data_dir: str | None) -> runs.Run:
    """Trains `config` in <workdir>/<name> unless it finished there; returns the loaded run."""
    out = os.path.join(workdir, name)
    config.data_dir = data_dir
    runs.train_or_load(config, out)
    return runs.load_run(out)


def errors_by_bits(run: runs.Run) -> dict:
    """Test squared error per image with the float code and with it quantised to each q in BITS_PER_DIM."""
    encode = jax.jit(lambda v, x: run.model.apply(v, x, method="encode"))
    decode = jax.jit(lambda v, z: run.likelihood.mean(run.model.apply(v, z, method="decode")))
    train_codes = np.asarray(encode(run.variables, run.train_split.x))
    test_x = run.test_split.x
    codes = np.asarray(encode(run.variables, test_x))
    lo, hi = compression.code_range(train_codes)

    def error(z):
        recon = np.asarray(decode(run.variables, z.astype(np.float32)))
        return float(np.square(recon - test_x).reshape(len(test_x), -1).sum(axis=1).mean())

    return {"float": error(codes), **{q: error(compression.quantise(codes, q, lo, hi)) for q in BITS_PER_DIM}}


def plot(table: dict, hashing: dict, ks, path: str) -> None:
    """Left: error vs K (float codes); right: error vs bits per image (quantised codes and hashing bits)."""
    fig, (ax_k, ax_b) = plt.subplots(1, 2, figsize=(13, 4.8))
    # The linear AE lies on PCA's curve (Baldi & Hornik): drawn dashed with open markers on top of it.
    styles = {"deep": ("C0", "-", None), "pca": ("C2", "-", None), "linear": ("C1", "--", "none")}
    for name, (color, ls, face) in styles.items():
        ax_k.plot(ks, [table[name][k]["float"] for k in ks], "o", ls=ls, color=color, mfc=face, label=name)
        for q, marker in zip(BITS_PER_DIM, ("s", "^"), strict=True):
            ax_b.plot([k * q for k in ks], [table[name][k][q] for k in ks], marker, ls=ls, color=color, mfc=face,
                      label=f"{name}, {q} bits/dim")  # fmt: skip
    if hashing:
        bits = sorted(hashing)
        ax_b.plot(bits, [hashing[b] for b in bits], "k*-", ms=10, label="hashing AE, 1 bit/dim")
    ax_k.set(xscale="log", yscale="log", xlabel="code size K", ylabel="test squared error per image")
    ax_k.set_xticks(ks, [str(k) for k in ks])
    ax_k.set_title("float codes")
    ax_b.set(xscale="log", yscale="log", xlabel="bits per image", ylabel="test squared error per image")
    ax_b.set_title("quantised codes")
    for ax in (ax_k, ax_b):
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def seed_config(variants: str, seed: int, runlocal: bool):
    """configs/hashing.py:<variants> with the model seed and the baselines' seed (LSH, ITQ's start) set."""
    config = hashing_config.get_config(variants + (",runlocal" if runlocal else ""))
    config.unlock()
    config.seed = seed
    config.retrieval.seed = seed
    config.retrieval.timing_repeats = 1  # the study compares rankings; speed is measured by speed.py
    return config.lock()


def spread(values, digits: int = 3) -> str:
    """'mean (min-max)' of a seed sweep, or the one value."""
    v = np.asarray(values, np.float64)
    f = f"{{:.{digits}f}}".format
    return f(v.mean()) if len(v) == 1 else f"{f(v.mean())} ({f(v.min())}-{f(v.max())})"


def hashing_study(workdir: str, data_dir: str | None, runlocal: bool) -> tuple[dict, str]:
    """Trains every (variants, seed) of the ablation at ABLATION_BITS and of BEST at each of HASH_BITS.

    Returns ({run name: its retrieval/* and test_* results}, the markdown of both tables).
    """
    seeds = SEEDS[:1] if runlocal else SEEDS
    hash_bits = (ABLATION_BITS,) if runlocal else HASH_BITS
    rows = [(f"bits{ABLATION_BITS},{v}".rstrip(","), s) for _, v in ABLATION for s in seeds]
    other_bits = [(f"bits{b},{BEST}", s) for b in hash_bits if b != ABLATION_BITS for s in seeds]
    # The best at 16 and 64 bits right after the first FIRST_ROWS rows, the later (and the costliest) rows last.
    jobs = rows[: FIRST_ROWS * len(seeds)] + other_bits + rows[FIRST_ROWS * len(seeds) :]
    results = {}
    for variants, seed in jobs:
        name = f"hashing_{variants.replace(',', '_')}_s{seed}"
        out = os.path.join(workdir, name)
        config = seed_config(variants, seed, runlocal)
        config.data_dir = data_dir
        r = runs.train_or_load(config, out)
        results[(variants, seed)] = {k: v for k, v in r.items() if k.startswith(("retrieval/", "test_"))}
        print(f"{name}: mAP {r['retrieval/ae_hashing/map']:.3f}, code-space ITQ {r['retrieval/ae_itq/map']:.3f}, "
              f"ITQ {r['retrieval/itq/map']:.3f}", flush=True)  # fmt: skip

    def cells(variants, method, keys=("map", "p@100")):
        return [spread([results[(variants, s)][f"retrieval/{method}/{k}"] for s in seeds]) for k in keys]

    base = f"bits{ABLATION_BITS}"
    lines = [
        f"### Ablation at {ABLATION_BITS} bits: mean (min-max) over seeds {', '.join(map(str, seeds))}",
        "",
        "| hashing AE | bits: mAP | bits: P@100 | + code-space ITQ: mAP | + code-space ITQ: P@100 | "
        "balance error | mean abs corr | test sq. err |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, v in ABLATION:
        variants = f"{base},{v}".rstrip(",")
        stats = [
            spread([results[(variants, s)][f"retrieval/ae_hashing/{k}"] for s in seeds])
            for k in ("mean_abs_balance_error", "mean_abs_correlation")
        ]
        err = spread([results[(variants, s)]["test_sq_err"] for s in seeds], digits=2)
        lines.append(f"| {label} | " + " | ".join([*cells(variants, "ae_hashing"), *cells(variants, "ae_itq"),
                                                   *stats, err]) + " |")  # fmt: skip
    for method in ("itq", "lsh", "pca_sign"):
        lines.append(f"| *{method}* (same runs) | " + " | ".join(cells(base, method)) + " | | | | | |")
    lines += [
        "",
        f"### Best ({BEST}) by code size: mAP / P@100, mean (min-max) over seeds {', '.join(map(str, seeds))}",
        "",
        "| bits | hashing AE | + code-space ITQ | ITQ | LSH | PCA sign | AE real-valued code (Euclidean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in hash_bits:
        variants = f"bits{b},{BEST}"
        methods = ("ae_hashing", "ae_itq", "itq", "lsh", "pca_sign", "ae_real")
        row = [" / ".join(cells(variants, m)) for m in methods]
        lines.append(f"| {b} | " + " | ".join(row) + " |")
    return {f"{v}_s{s}": r for (v, s), r in results.items()}, "\n".join(lines) + "\n"


def compression_curve(workdir: str, data_dir: str | None, runlocal: bool, hashing_err: dict) -> tuple[dict, list]:
    """The deep and linear AE at every K, and PCA: test squared error with float and quantised codes."""
    local = ",runlocal" if runlocal else ""
    ks = (2, 8) if runlocal else sh09_config.KS
    summary = {"compression": {}, "linear_angles_deg": {}}
    table = {"deep": {}, "linear": {}, "pca": {}}
    for k in ks:
        for kind in ("deep", "linear"):
            run = trained(f"{kind}_k{k}", sh09_config.get_config(f"{kind},k{k}{local}"), workdir, data_dir)
            table[kind][k] = errors_by_bits(run)
            if kind == "linear":
                kernel = np.asarray(run.variables["params"]["decoder_0"]["kernel"])
                angles = compression.subspace_angles_to_pca(kernel, run.train_split.x)
                summary["linear_angles_deg"][k] = {"max": float(angles.max()), "mean": float(angles.mean())}
        table["pca"][k] = compression.pca_errors(run.train_split.x, run.test_split.x, k, BITS_PER_DIM)
        print(f"K={k}: " + ", ".join(f"{n} {table[n][k]['float']:.2f}" for n in table), flush=True)
    plot(table, hashing_err, ks, os.path.join(workdir, "compression.png"))

    head = ["K", "deep", "linear", "PCA", "deep 4 / 8 bits", "linear 4 / 8 bits", "PCA 4 / 8 bits"]
    head.append("linear-AE max angle (deg)")
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for k in ks:
        cells = [f"{table[n][k]['float']:.2f}" for n in table]
        cells += [f"{table[n][k][4]:.2f} / {table[n][k][8]:.2f}" for n in table]
        cells.append(f"{summary['linear_angles_deg'][k]['max']:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"hashing AE, {b} bits (1 bit/dim): test squared error {e:.2f}" for b, e in hashing_err.items()]
    with open(os.path.join(workdir, "compression_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    summary["compression"] = {
        n: {str(k): {str(q): v for q, v in e.items()} for k, e in t.items()} for n, t in table.items()
    }
    return summary, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/salakhutdinov_hinton_2009")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--runlocal", action="store_true", help="20 steps a run, one seed, 32 bits: smoke test")
    parser.add_argument("--compression", action="store_true", help="also the compression curve (~20 more min)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.perf_counter()
    hashing, tables = hashing_study(args.workdir, args.data_dir, args.runlocal)
    with open(os.path.join(args.workdir, "hashing_tables.md"), "w") as f:
        f.write(tables)
    print(tables)
    print(f"hashing study: {time.perf_counter() - t0:.0f} s", flush=True)
    summary = {"hashing": hashing}
    if args.compression:
        bits = (ABLATION_BITS,) if args.runlocal else HASH_BITS
        hashing_err = {b: hashing[f"bits{b},{BEST}_s0"]["test_sq_err"] for b in bits}
        compressed, lines = compression_curve(args.workdir, args.data_dir, args.runlocal, hashing_err)
        summary.update(compressed)
        print("\n".join(lines))
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)


if __name__ == "__main__":
    main()
