"""Sparse autoencoders on the bundled byte-level LM's residual stream: the sparsity-fidelity frontier of five
architectures at equal width, dead latents with and without AuxK, and FVU against width at fixed k.

  python -m experiments.gao_2024.run --workdir=/tmp/gao_2024             # ~40 min on 2 CPU cores (README)
  python -m experiments.gao_2024.run --runlocal --workdir=/tmp/gao_local  # tiny LM and SAEs, a smoke test
  python -m experiments.gao_2024.run --sweep --workdir=/tmp/gao_sweep      # each frontier in one vmapped pass

Every run is configs/sae.py (the job "sae") with the overrides listed in RUNS, in `<workdir>/<run>`; they share
one LM (`<workdir>/lm`, configs/lm.py) and one activation store (its block_1 residual stream), built by the first
run and reused by the rest. A run whose results.json exists is not retrained. With --sweep, the runs of one
architecture that differ only in k or the sparsity coefficient (the FRONTIER rows) are trained as one sweep
(`config.sweep`, aejax/sweep.py) in `<workdir>/sweep_<arch>`, each run read from its member directory (its
"train s" is then the whole sweep's). Writes
table.md (the README's tables), frontier.png (FVU and loss recovered against L0) and scaling.png (FVU against
width, with the fitted power law).

Claims checked (Gao et al. 2024; Rajamanoharan et al. 2024a,b; Bussmann et al. 2024): at equal L0, TopK (and
BatchTopK, JumpReLU, Gated) reconstruct better than ReLU + L1; AuxK keeps the dead fraction low; at fixed k the
reconstruction error falls as a power law in the number of latents.
"""

import argparse
import json
import os

import ml_collections
import numpy as np

from aejax import runs, sweep
from configs import sae as sae_configs

WIDTH = 2048
# name -> (architecture, model overrides). The sparsity coefficients span each architecture's L0 range on these
# activations (normalised to E||x||^2 = d = 128, squared error summed over d), found by the short calibration
# runs described in the README.
FRONTIER = {
    **{f"topk_k{k}": ("topk", dict(k=k)) for k in (8, 16, 32, 64)},
    **{f"batchtopk_k{k}": ("batchtopk", dict(k=k)) for k in (8, 16, 32, 64)},
    **{f"jumprelu_l0_{c}": ("jumprelu", dict(l0_coeff=c)) for c in (0.03, 0.1, 0.3, 1.0)},
    **{f"gated_l1_{c}": ("gated", dict(l1_coeff=c)) for c in (1.0, 2.0, 4.0, 8.0)},
    **{f"relu_l1_{c}": ("relu_l1", dict(l1_coeff=c)) for c in (0.5, 1.0, 2.0, 4.0)},
}
# --calibrate: the learning-rate check behind configs/sae.py's 1e-2: one run per architecture at lr 1e-3 beside
# the same run at 1e-2 (the README has the table).
CALIBRATION = {
    **{f"cal_{arch}_lr0.001": (arch, dict(**model, lr=1e-3)) for arch, model in (
        ("topk", dict(k=32)), ("relu_l1", dict(l1_coeff=1.0)), ("gated", dict(l1_coeff=1.0)),
        ("jumprelu", dict(l0_coeff=1.0)))},
    # the same four at configs/sae.py's 1e-2 are FRONTIER runs (reused when the frontier ran first)
    **{name: FRONTIER[name] for name in ("topk_k32", "relu_l1_1.0", "gated_l1_1.0", "jumprelu_l0_1.0")},
}  # fmt: skip
# JumpReLU's initial threshold at l0_coeff = 1: under Adam at lr 1e-2 the thresholds leave their init within
# a few dozen steps, so it does not set the final L0 (its L0 moves with l0_coeff, the FRONTIER grid).
JUMPRELU_INIT = {
    f"jumprelu_t{t}": ("jumprelu", dict(threshold_init=t, l0_coeff=1.0)) for t in (0.25, 0.5, 0.75, 1.0)
}
# name -> (its AuxK twin, architecture, overrides): where latents die most here (small k, the widest SAE)
AUXK = {
    "topk_k32_no_auxk": ("topk_k32", "topk", dict(k=32, aux_k=0)),
    "topk_k8_no_auxk": ("topk_k8", "topk", dict(k=8, aux_k=0)),
    "topk_k32_n4096_no_auxk": ("topk_k32_n4096", "topk", dict(k=32, n_latents=4096, aux_k=0)),
}
SCALING = {f"topk_k32_n{n}": ("topk", dict(k=32, n_latents=n)) for n in (256, 512, 1024, 4096)}
# topk_k32 (n = 2048) is the fifth point of the scaling curve.


def make_config(arch: str, overrides: dict, args) -> ml_collections.ConfigDict:
    """configs/sae.py:<arch> with the run's model overrides, on the experiment's LM and store."""
    runlocal, steps = args.runlocal, args.steps
    config = sae_configs.get_config(arch + (",runlocal" if runlocal else ""))
    config.data_dir = args.data_dir
    config.activations.lm_workdir = os.path.abspath(args.lm_workdir or os.path.join(args.workdir, "lm"))
    model = dict(overrides)
    if "lr" in model:
        config.optimizer.learning_rate = model.pop("lr")
    if runlocal:  # the tiny LM's d = 32: a few latents, small k
        model = {k: (max(2, v // 8) if k in ("k", "n_latents") else v) for k, v in model.items()}
    config.model.update(model)
    if steps and not runlocal:
        config.num_train_steps = steps
        config.eval_every = steps
    return config


def run_all(todo: dict, args) -> dict[str, dict]:
    done = {}
    for name, (arch, overrides) in todo.items():
        config = make_config(arch, overrides, args)
        done[name] = runs.train_or_load(config, os.path.join(args.workdir, name))
    return done


# architecture -> the hyperparameter its FRONTIER rows differ in (what --sweep sweeps)
SWEPT = {"topk": "k", "batchtopk": "k", "jumprelu": "l0_coeff", "gated": "l1_coeff", "relu_l1": "l1_coeff"}


def run_sweeps(todo: dict, args) -> dict[str, dict]:
    """--sweep: the runs of `todo` that differ from their architecture's config only in its SWEPT value are
    trained together, one sweep per architecture in `<workdir>/sweep_<arch>`; the others one by one (`run_all`).
    Returns {run name: its results} as `run_all` does (a member's results.json)."""
    groups, rest = {}, {}
    for name, (arch, overrides) in todo.items():
        if set(overrides) == {SWEPT.get(arch)}:
            groups.setdefault(arch, []).append(name)
        else:
            rest[name] = (arch, overrides)
    done = {}
    for arch, names in groups.items():
        swept = SWEPT[arch]
        values = {n: make_config(arch, todo[n][1], args).model[swept] for n in names}  # runlocal scales k
        config = make_config(arch, {}, args)
        config.sweep = f"{swept}=" + ",".join(str(v) for v in sorted(set(values.values())))
        table = runs.train_or_load(config, os.path.join(args.workdir, f"sweep_{arch}"))
        member = {m.hparams[swept]: m.name for m in sweep.members(config)}
        done.update({n: table["members"][member[values[n]]] for n in names})
    return {**done, **run_all(rest, args)}


def _row(name: str, r: dict) -> str:
    return (
        f"| {name} | {r['sae/l0']:.1f} | {r['sae/fvu']:.4f} | {r['sae/loss_recovered']:.3f} "
        f"| {r['sae/delta_loss']:.4f} | {r['sae/dead_fraction']:.3f} | {r['train_time_s']:.0f} |"
    )


HEADER = [
    "| run | L0 | FVU | loss recovered | delta loss (nats/byte) | dead fraction | train s |",
    "|---|---|---|---|---|---|---|",
]


def frontier_fvu_at(points: list[tuple[float, float]], l0: float) -> float | None:
    """FVU of a frontier at `l0` by linear interpolation in log L0 (None outside its measured range)."""
    pts = sorted(points)
    xs, ys = np.log([p[0] for p in pts]), np.array([p[1] for p in pts])
    if not (xs[0] <= np.log(l0) <= xs[-1]):
        return None
    return float(np.interp(np.log(l0), xs, ys))


def power_law(widths: np.ndarray, fvus: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log FVU = log a + b log n: returns (a, b) (b < 0 when FVU falls with width)."""
    b, log_a = np.polyfit(np.log(widths), np.log(fvus), 1)
    return float(np.exp(log_a)), float(b)


def plot_frontier(done: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, arch in enumerate(("relu_l1", "gated", "jumprelu", "batchtopk", "topk")):
        pts = sorted((r["sae/l0"], r["sae/fvu"], r["sae/loss_recovered"]) for n, r in done.items() if n in FRONTIER
                     and FRONTIER[n][0] == arch)  # fmt: skip
        if pts:
            l0, fvu, rec = zip(*pts, strict=True)
            axes[0].plot(l0, fvu, "o-", color=f"C{i}", label=arch)
            axes[1].plot(l0, rec, "o-", color=f"C{i}", label=arch)
    axes[0].set(xscale="log", yscale="log", xlabel="L0 (active latents per token)", ylabel="FVU (test)")
    axes[1].set(xscale="log", xlabel="L0 (active latents per token)", ylabel="fraction of loss recovered")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"SAEs with {WIDTH} latents on the byte LM's block_1 residual stream (d = 128)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_scaling(widths, fvus, fit, path: str) -> None:
    import matplotlib.pyplot as plt

    a, b = fit
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(widths, fvus, "o", label="TopK, k = 32")
    grid = np.geomspace(min(widths), max(widths), 50)
    ax.plot(grid, a * grid**b, "--", label=f"fit: {a:.3g} n^{b:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="latents n", ylabel="FVU (test)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/gao_2024")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS_DATA_DIR)")
    parser.add_argument(
        "--lm_workdir", default=None, help="the LM run (and its store) to use; default <workdir>/lm"
    )
    parser.add_argument("--steps", type=int, default=256, help="SAE training steps (one epoch of the 1M tokens)")
    parser.add_argument("--runlocal", action="store_true", help="the tiny LM and 20-step SAEs: a smoke test")
    parser.add_argument("--calibrate", action="store_true", help="only the learning-rate check (CALIBRATION)")
    parser.add_argument("--sweep", action="store_true", help="train each architecture's frontier in one pass")
    args = parser.parse_args()
    if args.calibrate:
        done = run_all(CALIBRATION, args)
        lines = [f"## Calibration ({args.steps} steps)", "", *HEADER, *(_row(n, r) for n, r in done.items())]
        with open(os.path.join(args.workdir, "calibration.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    todo = {**FRONTIER, **{n: v[1:] for n, v in AUXK.items()}, **SCALING, **JUMPRELU_INIT}
    done = run_sweeps(todo, args) if args.sweep else run_all(todo, args)

    lines = ["## Frontier (equal width)", "", *HEADER, *(_row(n, done[n]) for n in FRONTIER), ""]
    lines += ["## Dead latents with and without AuxK (TopK)", "", *HEADER]
    lines += [_row(n, done[n]) for name, (twin, _, _) in AUXK.items() for n in (twin, name)] + [""]
    lines += [
        "## JumpReLU: the initial threshold (l0_coeff = 1)",
        "",
        *HEADER,
        *(_row(n, done[n]) for n in JUMPRELU_INIT),
    ]
    lines.append("")
    points = {arch: [(done[n]["sae/l0"], done[n]["sae/fvu"]) for n in FRONTIER if FRONTIER[n][0] == arch]
              for arch in ("topk", "batchtopk", "jumprelu", "gated", "relu_l1")}  # fmt: skip
    lines += ["## FVU at equal L0, interpolated on each frontier (log L0)", ""]
    lines += ["| L0 | " + " | ".join(points) + " |", "|---|" + "---|" * len(points)]
    for l0 in (8, 16, 32, 64):
        cells = [frontier_fvu_at(p, l0) for p in points.values()]
        lines.append(f"| {l0} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + " |")
    lines.append("")
    scaling = sorted(
        [(done[n]["code_dim"], done[n]["sae/fvu"]) for n in SCALING] + [(done["topk_k32"]["code_dim"],
                                                                         done["topk_k32"]["sae/fvu"])]
    )  # fmt: skip
    widths, fvus = (np.array(v) for v in zip(*scaling, strict=True))
    fit = power_law(widths, fvus)
    lines += ["## FVU against width (TopK, k = 32)", "", "| latents | FVU |", "|---|---|"]
    lines += [f"| {int(n)} | {f:.4f} |" for n, f in scaling]
    worst = float(np.max(np.abs(fit[0] * widths ** fit[1] / fvus - 1)))
    lines += [
        "",
        f"Power-law fit FVU = a n^b: a = {fit[0]:.4g}, b = {fit[1]:.4f}; largest relative misfit {worst:.1%}",
        "",
    ]
    plot_frontier(done, os.path.join(args.workdir, "frontier.png"))
    plot_scaling(widths, fvus, fit, os.path.join(args.workdir, "scaling.png"))
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(
            {"runs": done, "power_law": {"a": fit[0], "b": fit[1], "largest_relative_misfit": worst}}, f, indent=1
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
