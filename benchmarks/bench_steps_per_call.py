"""Steps per second against `config.steps_per_call` = K (K train steps per jitted call, a `lax.scan` over steps
with the batches gathered on the device), for three models of the family:

  python benchmarks/bench_steps_per_call.py [--ks 1,4,16,64] [--scale 1.0] [--rounds 7] [--data_dir DIR] \
      [--models KL-sparse,CAE,deep]

- the KL-sparse AE of experiments/kavukcuoglu_2008 (64 whitened pixels -> 25 sigmoid units, tied, batch 512);
- the 784-500 sigmoid CAE (closed-form penalty) of `configs/contractive.py:closed_form,quick`, batch 128;
- the main job's deep AE 784-1000-500-250-30 (`configs/mnist_ae.py`), batch 128.

Each row is `aejax.loop.run` itself (no workdir: no files), a model's number of steps (times --scale; a multiple
of every K) from a fresh state with the compiled
step cached, so a row's time is what training costs. Every (model, K) row is compiled and warmed up first, then
timed in --rounds rounds, each running every row once in a fresh random order; reported: the median steps/s over
the rounds and the median in-round speed-up against K = 1 of the same model.
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

import aejax
from aejax import build, loop, sharding

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(aejax.__file__))))  # the repo root
from configs import contractive, mnist_ae  # noqa: E402
from experiments.kavukcuoglu_2008 import config as k08  # noqa: E402

# name: (config, steps per timed run: enough that a run takes ~0.5-3 s)
MODELS = {
    "KL-sparse AE 64-25 (Kavukcuoglu expt.)": (lambda: k08.get_config("kl_sparse"), 2048),
    "CAE 784-500 sigmoid, closed form": (lambda: contractive.get_config("closed_form,quick"), 512),
    "deep AE 784-1000-500-250-30 (main job)": (lambda: mnist_ae.get_config(""), 256),
}


def make_row(config, k: int, steps: int, mesh):
    """run() -> final params, training `steps` steps with K = k through loop.run."""
    train_split, _ = build.load_data(config)
    b = build.build(config, train_split)
    init_fn = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(config.seed))
    settings = loop.LoopSettings(
        num_steps=steps, batch_size=config.batch_size, log_every=steps, eval_every=steps, checkpoint_every=steps,
        steps_per_call=k,
    )  # fmt: skip

    def run():
        result = loop.run(
            settings=settings, mesh=mesh, objective=b.objective, tx=b.tx, init_fn=init_fn, loader=b.loader,
            workdir=None,
        )  # fmt: skip
        return result.state.params

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="1,4,16,64")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every model's steps per timed run")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--models", default="", help="comma-separated parts of model names (default: every model)")
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    wanted = [m for m in args.models.split(",") if m]
    models = {n: v for n, v in MODELS.items() if not wanted or any(m in n for m in wanted)}
    mesh = sharding.make_mesh()
    rows = {}
    steps = {}
    for name, (make_config, num_steps) in models.items():
        config = make_config()
        config.unlock()
        config.data_dir = args.data_dir
        steps[name] = max(ks) * max(1, round(num_steps * args.scale / max(ks)))
        for k in ks:
            rows[(name, k)] = make_row(config, k, steps[name], mesh)
    for run in rows.values():  # compile + warm up
        jax.block_until_ready(run())
    times = {key: [] for key in rows}
    order = np.random.default_rng(0)
    keys = list(rows)
    for _ in range(args.rounds):
        for i in order.permutation(len(keys)):
            t = time.perf_counter()
            jax.block_until_ready(rows[keys[i]]())
            times[keys[i]].append(time.perf_counter() - t)
    platform = f"{jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}"
    print(f"\n{platform}; {args.rounds} interleaved rounds (medians); steps per row: {steps}\n")
    print("| model | " + " | ".join(f"K={k}: steps/s (x vs K=1)" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for name in models:
        base = np.asarray(times[(name, ks[0])])
        cells = []
        for k in ks:
            t = np.asarray(times[(name, k)])
            cells.append(f"{steps[name] / np.median(t):,.0f} ({np.median(base / t):.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
