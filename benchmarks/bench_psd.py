"""Benchmark: the PSD encoder against FISTA (Kavukcuoglu, Ranzato & LeCun 2008: codes ~100x faster).

On the test patches of a trained PSD run (`configs/psd.py`, trained here first if `--workdir` holds no run):

1. Speed. The sparse-coding energy E_sc(h) = ||x - D h||^2 + lam |h|_1 with the learned D (no prediction
   term: "exact sparse coding"). FISTA (restart, from h = 0) runs until its batch-mean energy is no greater
   than that of the encoder's codes f(x); the wall time of that many steps is compared with one encoder
   pass, and so is the time of FISTA to converge (relative energy gap 1e-3 to a 2,000-step optimum).
2. The encoder's relative code-prediction error sum ||f(x) - h*||^2 / sum ||h*||^2 over training (the
   "psd/rel_pred_err" train metric, h* from the full PSD energy) and on the test set at the end.
3. Sparsity: the fraction of non-zero entries of h* (full PSD energy) and of the Lasso optimum.

Wall times are best-of-5 of compiled calls on the whole test batch. Run by hand:

    python benchmarks/bench_psd.py --workdir=/tmp/psd_quick --variant=quick --data_dir=/tmp/tfds_dev
    python benchmarks/bench_psd.py --workdir=/tmp/psd_local --variant=runlocal --max_steps=200   # smoke test
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from aejax import runs, sparse_coding
from aejax.objectives import psd as psd_objective

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for `configs`
from configs import psd as psd_config  # noqa: E402


def wall_ms(fn, repeats: int = 5) -> float:
    """Best-of-repeats wall time in ms of a compiled call (the first call compiles, untimed)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/psd_quick")
    parser.add_argument("--variant", default="quick", help="configs/psd.py variant, used to train if needed")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_steps", type=int, default=2000)
    args = parser.parse_args()

    config = psd_config.get_config(args.variant)
    config.data_dir = args.data_dir
    if not os.path.exists(os.path.join(args.workdir, "results.json")):
        from aejax import train

        train.train_and_evaluate(config, args.workdir)
    run = runs.load_run(args.workdir)  # the run's own config (it may differ from --variant), model and data
    config, model = run.config, run.model
    params = jax.device_put(run.variables["params"])
    x_img = jnp.asarray(run.test_split.x)
    x = x_img.reshape(len(x_img), -1)  # [B, n]
    D = params["dictionary"]
    lam, gamma = config.psd.lam, config.psd.gamma
    lipschitz = jnp.linalg.norm(D, 2) ** 2

    encode = jax.jit(lambda p, v: model.apply({"params": p}, v, method="encode"))
    f = encode(params, x_img)

    def e_sc(h):  # [B] sparse-coding energy, units of x squared
        t = psd_objective.energy(x, D, h, h, lam=lam, gamma=0.0)
        return np.asarray(t["total"], np.float64)

    # FISTA's objective is 0.5 ||x - D z||^2 + lam' |z|_1 = E_sc / 2 with lam' = lam / 2.
    def run_fista(k):
        return sparse_coding.fista(x, D, lam=lam / 2, num_steps=k, lipschitz=lipschitz, return_info=True)

    z_star, info = run_fista(args.max_steps)
    trace = 2 * np.asarray(info.objective, np.float64).mean(axis=1)  # [T] batch-mean E_sc after step k
    e_enc, e_star, e_zero = e_sc(f).mean(), trace[-1], e_sc(jnp.zeros_like(f)).mean()
    k_same = int(np.argmax(trace <= e_enc)) + 1 if (trace <= e_enc).any() else None
    k_conv = int(np.argmax((trace - e_star) / e_star <= 1e-3)) + 1
    t_enc = wall_ms(lambda: encode(params, x_img))
    t_same = wall_ms(lambda: run_fista(k_same)[0]) if k_same else float("nan")
    t_conv = wall_ms(lambda: run_fista(k_conv)[0])
    h_star = psd_objective.infer_codes(x, D, f, lam=lam, gamma=gamma, num_steps=config.psd.eval_fista_steps)
    rel_err = float(jnp.sum((f - h_star) ** 2) / jnp.sum(h_star**2))
    rows = [json.loads(line) for line in open(os.path.join(args.workdir, "metrics.jsonl"))]
    curve = [(r["step"], r["psd/rel_pred_err"]) for r in rows if "psd/rel_pred_err" in r]

    print(f"run {args.workdir}: {config.dataset}, K = {D.shape[1]}, lam = {lam}, gamma = {gamma}, B = {len(x)}")
    print(f"E_sc mean: zero codes {e_zero:.2f}, encoder f(x) {e_enc:.2f}, FISTA optimum {e_star:.2f}")
    print(f"encoder pass: {t_enc:.3f} ms")
    if k_same:
        print(f"FISTA to the encoder's energy: {k_same} steps, {t_same:.3f} ms -> {t_same / t_enc:.0f}x")
    else:
        print(f"FISTA never reached the encoder's energy in {args.max_steps} steps")
    print(f"FISTA to 1e-3 of the optimum: {k_conv} steps, {t_conv:.3f} ms -> {t_conv / t_enc:.0f}x")
    print(f"relative code-prediction error on test: {rel_err:.3f}")
    print(
        "over training (step: rel_pred_err): "
        + ", ".join(f"{s}: {v:.3f}" for s, v in curve[:: max(1, len(curve) // 8)])
    )
    active_psd, active_lasso = float(jnp.mean(h_star != 0)), float(jnp.mean(z_star != 0))
    print(f"non-zero fraction: h* (PSD energy) {active_psd:.3f}, Lasso optimum {active_lasso:.3f}")


if __name__ == "__main__":
    main()
