"""Equivalent forms of the conv AE's layers on XLA:CPU, timed against each other (no aejax code):

  python benchmarks/bench_conv_forms.py [--rounds 5] [--batch 128] [--steps 10]

1. The pooling conv AE step (configs/conv_ae.py's model written in flax: 3x3 convs of 32 and 64 channels, 2x2 max
   pooling, dense code 30, nearest upsampling; BCE, optax Adam, batch 128, one jitted step per call) with max
   pooling as `nn.max_pool` (reduce_window; its gradient is a select-and-scatter) or as a reshape and a max, and
   nearest upsampling as `jax.image.resize` or as a broadcast and a reshape: four combinations, interleaved rounds,
   median examples/s and the median in-round ratio to the library forms. aejax/models/conv.py uses the reshape
   forms (same values; tests/test_conv_model.py checks them against the library ops).
2. The strided model's transposed convolution (`lax.conv_transpose`, stride 2, SAME: an lhs-dilated convolution)
   against the same function as `lax.pad` with interior padding and a stride-1 VALID convolution: forward
   agreement, and the time of the gradient with respect to input and kernel, for the conv AE's two decoder layers.
"""

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax


def up_resize(h):
    b, hh, ww, c = h.shape
    return jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")


def up_broadcast(h):
    b, hh, ww, c = h.shape
    return jnp.broadcast_to(h[:, :, None, :, None, :], (b, hh, 2, ww, 2, c)).reshape(b, 2 * hh, 2 * ww, c)


def pool_reduce_window(h):
    return nn.max_pool(h, (2, 2), strides=(2, 2))


def pool_reshape(h):
    b, hh, ww, c = h.shape
    return h.reshape(b, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))


class ConvAE(nn.Module):
    up: object
    pool: object

    @nn.compact
    def __call__(self, x):
        h = x
        for f in (32, 64):
            h = self.pool(nn.relu(nn.Conv(f, (3, 3))(h)))
        z = nn.Dense(30)(h.reshape(x.shape[0], -1))
        h = nn.relu(nn.Dense(7 * 7 * 64)(z)).reshape(x.shape[0], 7, 7, 64)
        h = nn.relu(nn.Conv(32, (3, 3))(self.up(h)))
        return nn.Conv(1, (3, 3))(self.up(h))


def pooling_forms(rounds: int, batch: int = 128, steps: int = 10) -> None:
    rng = np.random.default_rng(0)
    x_all = jax.device_put(rng.uniform(size=(4000, 28, 28, 1)).astype(np.float32))
    idx = jnp.asarray(rng.integers(0, 4000, size=(steps, batch)), jnp.int32)
    rows = {}
    for up_name, up in (("jax.image.resize", up_resize), ("broadcast", up_broadcast)):
        for pool_name, pool in (("nn.max_pool", pool_reduce_window), ("reshape-max", pool_reshape)):
            model = ConvAE(up, pool)
            params = model.init(jax.random.key(0), x_all[:2])["params"]
            tx = optax.adam(1e-3)

            def loss(p, xb, model=model):
                return optax.sigmoid_binary_cross_entropy(model.apply({"params": p}, xb), xb).sum() / xb.shape[0]

            @jax.jit
            def step(state, r, loss=loss, tx=tx):
                p, o = state
                g = jax.grad(loss)(p, jnp.take(x_all, r, axis=0))
                u, o = tx.update(g, o, p)
                return optax.apply_updates(p, u), o

            state0 = (params, tx.init(params))

            def run(step=step, s0=state0):
                s = s0
                for i in range(steps):
                    s = step(s, idx[i])
                return s

            jax.block_until_ready(run())
            rows[f"pool {pool_name}, upsample {up_name}"] = run
    times = {k: [] for k in rows}
    for r in range(rounds):
        for k in np.random.default_rng(r).permutation(list(rows)):
            t = time.perf_counter()
            jax.block_until_ready(rows[k]())
            times[k].append(time.perf_counter() - t)
    base = np.asarray(times["pool nn.max_pool, upsample jax.image.resize"])
    print(f"\n1. conv AE step, {rounds} interleaved rounds of {steps} steps, batch {batch}")
    print("| form | examples/s | vs library forms |\n|---|---|---|")
    for k, t in times.items():
        t = np.asarray(t)
        print(f"| {k} | {steps * batch / np.median(t):,.0f} | {np.median(base / t):.2f}x |")


def transposed_conv_forms(rounds: int, batch: int = 128) -> None:
    dn = ("NHWC", "HWIO", "NHWC")

    def tconv_lax(x, k):
        return lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=dn)

    def tconv_pad(x, k):  # lax.conv_transpose's SAME padding for k = 3, s = 2: (2, 1), and s - 1 zeros between
        xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (2, 1, 1), (2, 1, 1), (0, 0, 0)])
        return lax.conv_general_dilated(xp, k, (1, 1), "VALID", dimension_numbers=dn)

    rng = np.random.default_rng(0)
    print(f"\n2. stride-2 transposed convolution, batch {batch}, median of {rounds}")
    print("| layer | max abs difference of outputs | gradient: lax.conv_transpose | gradient: pad + conv |")
    print("|---|---|---|---|")
    for shape, kshape in (((batch, 7, 7, 64), (3, 3, 64, 32)), ((batch, 14, 14, 32), (3, 3, 32, 1))):
        x = jnp.asarray(rng.normal(size=shape), jnp.float32)
        k = jnp.asarray(rng.normal(size=kshape), jnp.float32) * 0.1
        diff = float(jnp.max(jnp.abs(tconv_lax(x, k) - tconv_pad(x, k))))
        cells = []
        for f in (tconv_lax, tconv_pad):
            g = jax.jit(jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) ** 2), argnums=(0, 1)))
            jax.block_until_ready(g(x, k))
            t = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                jax.block_until_ready(g(x, k))
                t.append(time.perf_counter() - t0)
            cells.append(f"{np.median(t) * 1e3:.1f} ms")
        side = f"{shape[1]} -> {2 * shape[1]}, {kshape[2]} -> {kshape[3]} channels"
        print(f"| {side} | {diff:.1e} | {cells[0]} | {cells[1]} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128, help="smaller: a smoke run")
    ap.add_argument("--steps", type=int, default=10, help="conv AE steps per timed run")
    args = ap.parse_args()
    print(f"{jax.devices()[0].platform}, jax {jax.__version__}")
    pooling_forms(args.rounds, args.batch, args.steps)
    transposed_conv_forms(args.rounds, args.batch)


if __name__ == "__main__":
    main()
