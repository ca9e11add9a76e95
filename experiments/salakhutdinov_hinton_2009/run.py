"""Salakhutdinov & Hinton (2009), CPU-scale analogue on mnist5k: semantic hashing, and error against code size.

1. Semantic hashing: trains `configs/hashing.py` at 16, 32 and 64 bits (each run writes its own retrieval table
   with LSH, PCA sign, ITQ and real-valued codes: the "retrieval" report) and collects the tables.
2. The compression curve: for K in 2, 4, 8, 16, 32, 64 a deep autoencoder (the main job at code size K) and a
   linear one (`config.py`), and PCA; test squared error per image with float codes and with codes quantised
   to 4 and 8 bits per dimension, plus the hashing autoencoders' b-bit codes (1 bit per dimension), so the
   x-axis can be bits per image. For the linear autoencoder the principal angles between its decoder's column
   space and the top-K principal subspace (Baldi & Hornik 1989).

Writes <workdir>/compression.png, compression_table.md, retrieval_tables.md and summary.json. Runs that already
finished in <workdir>/<name> are reused.

    python -m experiments.salakhutdinov_hinton_2009.run --workdir=/tmp/sh09        # ~25 CPU minutes
    python -m experiments.salakhutdinov_hinton_2009.run --runlocal --workdir=/tmp/sh09_local
"""

import argparse
import json
import os

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/salakhutdinov_hinton_2009")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--runlocal", action="store_true", help="20 steps per run, K in 2, 8: a smoke test")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    local = ",runlocal" if args.runlocal else ""
    ks = (2, 8) if args.runlocal else sh09_config.KS
    hash_bits = (32,) if args.runlocal else HASH_BITS

    summary = {"hashing": {}, "compression": {}, "linear_angles_deg": {}}
    retrieval_md = []
    for b in hash_bits:
        run = trained(
            f"hashing_bits{b}", hashing_config.get_config(f"bits{b}{local}"), args.workdir, args.data_dir
        )
        with open(os.path.join(run.workdir, "results.json")) as f:
            results = json.load(f)
        summary["hashing"][b] = {
            k: v for k, v in results.items() if k.startswith("retrieval/") or k.startswith("test_")
        }
        with open(os.path.join(run.workdir, "retrieval_table.md")) as f:
            retrieval_md.append(
                f"### {b} bits (test squared error of the bits: {results['test_sq_err']:.2f})\n\n{f.read()}"
            )

    table = {"deep": {}, "linear": {}, "pca": {}}
    for k in ks:
        for kind in ("deep", "linear"):
            run = trained(
                f"{kind}_k{k}", sh09_config.get_config(f"{kind},k{k}{local}"), args.workdir, args.data_dir
            )
            table[kind][k] = errors_by_bits(run)
            if kind == "linear":
                kernel = np.asarray(run.variables["params"]["decoder_0"]["kernel"])
                angles = compression.subspace_angles_to_pca(kernel, run.train_split.x)
                summary["linear_angles_deg"][k] = {"max": float(angles.max()), "mean": float(angles.mean())}
        table["pca"][k] = compression.pca_errors(run.train_split.x, run.test_split.x, k, BITS_PER_DIM)
        print(f"K={k}: " + ", ".join(f"{n} {table[n][k]['float']:.2f}" for n in table), flush=True)
    hashing_err = {b: summary["hashing"][b]["test_sq_err"] for b in hash_bits}
    plot(table, hashing_err, ks, os.path.join(args.workdir, "compression.png"))

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
    with open(os.path.join(args.workdir, "compression_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.workdir, "retrieval_tables.md"), "w") as f:
        f.write("\n".join(retrieval_md))
    summary["compression"] = {
        n: {str(k): {str(q): v for q, v in e.items()} for k, e in t.items()} for n, t in table.items()
    }
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
