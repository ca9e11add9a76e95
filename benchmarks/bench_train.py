"""Train-step throughput of the default model, and the framework's overhead over a hand-written jitted step.

  python benchmarks/bench_train.py [--steps 200] [--batch 128]

Measures (examples/s, median of 3 timed runs after warm-up):
  1. aejax's `make_train_step` (mesh shardings, donation, metrics) on Hinton's 784-1000-500-250-30 AE;
  2. a minimal hand-written `jax.jit` Adam step of the same model and loss (no mesh, no metrics);
  3. the whole loop of `aejax.train` minus evaluation: loader.batch + host->device + step.
Run on an otherwise idle machine; the numbers go in the README.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import sharding
from aejax import train_step as ts
from aejax.data.pipeline import InMemoryLoader
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import autoencoder as objective


def _time(fn, steps: int, repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(steps)
        jax.block_until_ready(out)
        rates.append(time.perf_counter() - t)
    return float(np.median(rates))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    B = args.batch
    model = get_model("mlp", input_shape=(28, 28, 1), hidden=(1000, 500, 250), code_dim=30)
    lik = get_likelihood("bernoulli")
    tx = optax.adam(1e-3)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4000, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 4000).astype(np.int32)
    loader = InMemoryLoader(images, labels, global_batch_size=B, seed=0)

    mesh = sharding.make_mesh()
    step = ts.make_train_step(objective.make_loss_fn(model, lik), tx, mesh)
    state = sharding.replicate(ts.init_state(jax.tree.map(jnp.copy, params), tx, jax.random.PRNGKey(1)), mesh)
    fixed = sharding.to_global(loader.batch(0), mesh)

    def run_aejax(n):
        nonlocal state
        for _ in range(n):
            state, m = step(state, fixed)
        return m["loss"]

    def run_loop(n):
        nonlocal state
        for s in range(n):
            state, m = step(state, sharding.to_global(loader.batch(s), mesh))
        return m["loss"]

    @jax.jit
    def plain_step(p, o, x):
        def loss(p):
            logits, _ = model.apply({"params": p}, x)
            return optax.sigmoid_binary_cross_entropy(logits, x).sum(axis=(1, 2, 3)).mean()

        value, g = jax.value_and_grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, value

    p, o, x = params, tx.init(params), jnp.asarray(loader.batch(0).x)

    def run_plain(n):
        nonlocal p, o
        for _ in range(n):
            p, o, v = plain_step(p, o, x)
        return v

    for fn in (run_aejax, run_loop, run_plain):
        fn(5)  # compile + warm up
    rows = [
        ("aejax train step (fixed batch)", _time(run_aejax, args.steps)),
        ("aejax loop: loader + transfer + step", _time(run_loop, args.steps)),
        ("hand-written jitted Adam step", _time(run_plain, args.steps)),
    ]
    base = rows[2][1]
    print(
        f"\n{jax.device_count()} x {jax.devices()[0].platform}, batch {B}, {args.steps} steps, "
        "784-1000-500-250-30 MLP AE, Bernoulli decoder, Adam\n"
    )
    print("| what | examples/s | time vs hand-written |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {args.steps * B / t:,.0f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
