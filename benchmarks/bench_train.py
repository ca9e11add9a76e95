"""Train-step throughput of the default model, and the framework's overhead over a hand-written jitted step.

  python benchmarks/bench_train.py [--batches 128,256] [--chunk 25] [--rounds 15] [--layers 1000,500,250,30]

Model: Hinton's 784-1000-500-250-30 MLP AE (relu, linear code; other widths with --layers, e.g. for a smoke run),
Bernoulli decoder (sigmoid cross-entropy summed over pixels, mean over the batch). Rows, each at every batch size:
  H   hand-written `jax.jit` step: flax apply + optax Adam(1e-3), no mesh, no metrics, fixed device batch
      (the baseline), and the same with the default optimizer of configs/mnist_ae.py (adam, warmup_cosine);
  aejax `make_train_step` on a fixed device batch, with grad/param norms every step and every log_every steps;
  aejax's loop itself, `aejax.loop.run` (loader.batch(step) + sharding.to_global + step, NaN check and
      metric means every log_every steps, progress bar; no workdir, so no files), with Adam(1e-3) (vs H) and with
      the default optimizer (vs H with the same optimizer): what `aejax.train` runs, minus evaluation and
      checkpoints.

Methodology (the machine may be shared): all rows are compiled and warmed up, then timed in rounds; each round
runs every row once for --chunk steps, in a fresh random order, so all rows see the same conditions. Reported:
the median over rounds of ms/step, its 10th percentile (a large gap to the median means a noisy machine), and the
median over rounds of the in-round throughput ratio t_baseline / t_row (> 1: faster than the baseline).
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import aejax
from aejax import loop, objectives, optim, sharding
from aejax import train_step as ts
from aejax.data.pipeline import InMemoryLoader
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import autoencoder as objective

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(aejax.__file__))))  # the repo root
from configs import mnist_ae  # noqa: E402

N_TRAIN = 4000  # the size of the default mnist5k training split


def build_rows(batch_size: int, log_every: int, layers: tuple[int, ...] = (1000, 500, 250, 30)):
    """{name: (run(n, start_step) -> array to block on, baseline name)} for one batch size."""
    model = get_model("mlp", input_shape=(28, 28, 1), hidden=layers[:-1], code_dim=layers[-1])
    lik = get_likelihood("bernoulli")
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(N_TRAIN, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, N_TRAIN).astype(np.int32)
    loader = InMemoryLoader(images, labels, global_batch_size=batch_size, seed=0)
    mesh = sharding.make_mesh()
    fixed = sharding.to_global(loader.batch(0), mesh)
    config = mnist_ae.get_config()
    txs = {
        "adam": optax.adam(1e-3),
        "default": optim.make_optimizer(config.optimizer, config.num_epochs * loader.steps_per_epoch),
    }
    loss_fn = objective.make_loss_fn(model, lik)
    obj = objectives.Objective(loss_fn, objective.make_eval_fn(model, lik))

    def hand(tx):
        @jax.jit
        def step(p, o, x):
            def loss(p):
                logits = model.apply({"params": p}, x).decoder_output
                return optax.sigmoid_binary_cross_entropy(logits, x).sum(axis=(1, 2, 3)).mean()

            value, g = jax.value_and_grad(loss)(p)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, value

        st = [jax.tree.map(jnp.copy, params), tx.init(params)]

        def run(n, start):
            p, o = st
            for _ in range(n):
                p, o, v = step(p, o, fixed.x)
            st[:] = p, o
            return v

        return run

    def aejax_run(tx, norms_every, feed):
        step = ts.make_train_step(loss_fn, tx, mesh, norms_every=norms_every)
        st = [sharding.replicate(ts.init_state(jax.tree.map(jnp.copy, params), tx, jax.random.key(1)), mesh)]

        def run(n, start):
            state = st[0]
            for s in range(start, start + n):
                batch = fixed if feed == "fixed" else sharding.to_global(loader.batch(s), mesh)
                state, m = step(state, batch)
            st[0] = state
            return m["loss"]

        return run

    def loop_run(tx):
        init = jax.jit(
            lambda: ts.init_state(jax.tree.map(jnp.copy, params), tx, jax.random.key(1)),
            out_shardings=sharding.replicated(mesh),
        )

        def run(n, start):
            del start  # each call trains n steps from a fresh state (the compiled step is cached)
            settings = loop.LoopSettings(num_steps=n, batch_size=batch_size, log_every=log_every)
            result = loop.run(
                settings=settings, mesh=mesh, objective=obj, tx=tx, init_fn=init, loader=loader, workdir=None
            )
            return result.state.params

        return run

    H, HD = "hand-written step, Adam(1e-3)", "hand-written step, default optimizer"
    return {
        H: (hand(txs["adam"]), H),
        HD: (hand(txs["default"]), HD),
        "aejax step, fixed batch, norms every step": (aejax_run(txs["adam"], 1, "fixed"), H),
        f"aejax step, fixed batch, norms every {log_every}": (aejax_run(txs["adam"], log_every, "fixed"), H),
        "aejax.loop.run, Adam": (loop_run(txs["adam"]), H),
        "aejax.loop.run, default optimizer (= train.py)": (loop_run(txs["default"]), HD),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--chunk", type=int, default=50, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per batch size")
    ap.add_argument("--log_every", type=int, default=mnist_ae.get_config().log_every)
    ap.add_argument("--layers", default="1000,500,250,30", help="the encoder's widths (smaller: a smoke run)")
    args = ap.parse_args()
    layers = tuple(int(w) for w in args.layers.split(","))
    print(
        f"{jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}, "
        f"{'-'.join(map(str, (784, *layers)))} MLP AE, "
        f"Bernoulli; {args.rounds} interleaved rounds x {args.chunk} steps per row"
    )
    for batch_size in map(int, args.batches.split(",")):
        rows = build_rows(batch_size, args.log_every, layers)
        names = list(rows)
        start = dict.fromkeys(names, 10)
        for name in names:  # compile + warm up
            jax.block_until_ready(rows[name][0](10, 0))
        times = {name: [] for name in names}
        order = np.random.default_rng(batch_size)
        for _ in range(args.rounds):
            for name in order.permutation(names):
                t = time.perf_counter()
                jax.block_until_ready(rows[name][0](args.chunk, start[name]))
                times[name].append((time.perf_counter() - t) / args.chunk)
                start[name] += args.chunk
        t = {name: np.asarray(v) for name, v in times.items()}
        print(f"\nbatch {batch_size}\n")
        print("| what | ms/step (median) | p10 | examples/s | throughput vs hand-written (same optimizer) |")
        print("|---|---|---|---|---|")
        for name in names:
            med, base = np.median(t[name]), t[rows[name][1]]
            print(
                f"| {name} | {med * 1e3:.2f} | {np.percentile(t[name], 10) * 1e3:.2f} | "
                f"{batch_size / med:,.0f} | {np.median(base / t[name]):.3f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
