"""Does XLA:CPU run a train step slower inside `lax.scan` than called once per step? A minimal reproducer with no
aejax code: flax + optax, one hand-written step per model, timed three ways on the same batches:

  python benchmarks/bench_scan_unroll.py [--k 25] [--rounds 5] [--models conv_pool,conv_stride,mlp,...]

- "K=1":        the jitted step called K times (one dispatch per step);
- "scan":       K steps in one jitted `lax.scan` (a while loop in XLA), batches gathered in the body;
- "scan u=U":   the same scan with `unroll=U` (U = K: no loop left at all).

Models (batch 128 unless said): the conv AE of configs/conv_ae.py (32-64 channels, 3x3, max-pool / nearest
upsampling, code 30), the same with strided convs, a BatchNorm conv AE, the main job's MLP 784-1000-500-250-30,
an LSTM and a GRU sequence AE (T = 150, 1 channel, hidden 64), a conv1d AE (T = 152) and a top-k (k = 32 of 1,024)
sparse AE on 784-D vectors. Every variant is compiled and warmed up first (compile time reported), then the
variants of all models run in --rounds interleaved rounds in a fresh random order; reported: the median
examples/s and the median in-round ratio against K=1 of the same model.
"""

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class ConvAE(nn.Module):
    mode: str = "pool"  # "pool" | "stride"
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train=True):
        s = (2, 2) if self.mode == "stride" else (1, 1)
        h = x
        for f in (32, 64):
            h = nn.Conv(f, (3, 3), strides=s)(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train)(h)
            h = nn.relu(h)
            if self.mode == "pool":
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
        z = nn.Dense(30)(h.reshape(x.shape[0], -1))
        h = nn.relu(nn.Dense(7 * 7 * 64)(z)).reshape(x.shape[0], 7, 7, 64)
        up = nn.ConvTranspose if self.mode == "stride" else nn.Conv
        for f in (32, 1):
            if self.mode == "pool":
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
            h = up(f, (3, 3), strides=s)(h)
            if f != 1:
                h = nn.relu(h)
        return h


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        h = x.reshape(x.shape[0], -1)
        for f in (1000, 500, 250):
            h = nn.relu(nn.Dense(f)(h))
        h = nn.Dense(30)(h)
        for f in (250, 500, 1000):
            h = nn.relu(nn.Dense(f)(h))
        return nn.Dense(784)(h).reshape(x.shape)


class RNNAE(nn.Module):
    cell: str = "lstm"

    @nn.compact
    def __call__(self, x, train=True):
        make = nn.OptimizedLSTMCell if self.cell == "lstm" else nn.GRUCell
        carry, _ = nn.RNN(make(64), return_carry=True)(x)
        h = carry[1] if self.cell == "lstm" else carry  # the LSTM carry is (c, h)
        z = nn.Dense(16)(h)
        dec_in = jnp.broadcast_to(z[:, None, :], (x.shape[0], x.shape[1], 16))
        return nn.Dense(x.shape[-1])(nn.RNN(make(64))(dec_in))


class Conv1DAE(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        h = nn.relu(nn.Conv(32, (7,), strides=(2,))(x))
        h = nn.relu(nn.Conv(32, (7,), strides=(2,))(h))
        z = nn.Dense(16)(h.reshape(x.shape[0], -1))
        h = nn.relu(nn.Dense(h.shape[1] * 32)(z)).reshape(h.shape)
        h = nn.relu(nn.ConvTranspose(32, (7,), strides=(2,))(h))
        return nn.ConvTranspose(x.shape[-1], (7,), strides=(2,))(h)


class TopKAE(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        pre = nn.Dense(1024)(x)
        vals, idx = jax.lax.top_k(pre, 32)
        z = jnp.zeros_like(pre).at[jnp.arange(x.shape[0])[:, None], idx].set(nn.relu(vals))
        return nn.Dense(x.shape[-1])(z)


def data(name, n, rng):
    if name in ("lstm", "gru"):
        return rng.normal(size=(n, 150, 1)).astype(np.float32), 128
    if name == "conv1d":
        return rng.normal(size=(n, 152, 1)).astype(np.float32), 128
    if name == "topk":
        return rng.normal(size=(n, 784)).astype(np.float32), 1024
    return rng.uniform(size=(n, 28, 28, 1)).astype(np.float32), 128


MODELS = {
    "conv_pool": lambda: ConvAE("pool"),
    "conv_stride": lambda: ConvAE("stride"),
    "conv_bn": lambda: ConvAE("pool", batch_norm=True),
    "mlp": MLP,
    "lstm": lambda: RNNAE("lstm"),
    "gru": lambda: RNNAE("gru"),
    "conv1d": Conv1DAE,
    "topk": TopKAE,
}


def make_variants(name, k, unrolls):
    rng = np.random.default_rng(0)
    x_all, batch = data(name, 4000, rng)
    model = MODELS[name]()
    variables = model.init(jax.random.key(0), x_all[:2], train=False)
    tx = optax.adam(1e-3)
    x_dev = jax.device_put(x_all)
    idx = jnp.asarray(rng.integers(0, len(x_all), size=(k, batch)), jnp.int32)

    def loss(params, stats, xb):
        if stats:
            out, upd = model.apply({"params": params, **stats}, xb, mutable=["batch_stats"])
        else:
            out, upd = model.apply({"params": params}, xb), {}
        return jnp.mean(jnp.sum(jnp.square(out - xb).reshape(xb.shape[0], -1), axis=1)), upd

    def step(state, xb):
        params, stats, opt = state
        (loss_value, upd), g = jax.value_and_grad(loss, has_aux=True)(params, stats, xb)
        u, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, u), upd or stats, opt), loss_value

    params = variables["params"]
    stats = {k_: v for k_, v in variables.items() if k_ != "params"}
    state0 = (params, stats, tx.init(params))
    one = jax.jit(lambda s, x, rows: step(s, jnp.take(x, rows, axis=0)))

    def make_scan(unroll):
        def run(s, x, rows):
            return jax.lax.scan(lambda s, r: step(s, jnp.take(x, r, axis=0)), s, rows, unroll=unroll)

        return jax.jit(run)

    variants = {}

    def loop_one():
        s = state0
        for i in range(k):
            s, loss_value = one(s, x_dev, idx[i])
        return loss_value

    variants["K=1"] = loop_one
    for u in unrolls:
        f = make_scan(u)
        variants["scan" if u == 1 else f"scan u={u}"] = lambda f=f: f(state0, x_dev, idx)[1]
    compile_s = {}
    for v, fn in variants.items():
        t = time.perf_counter()
        jax.block_until_ready(fn())
        compile_s[v] = time.perf_counter() - t
    return variants, compile_s, batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--unrolls", default="1,5,25")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    unrolls = [int(u) for u in args.unrolls.split(",")]
    rows, compile_s, batches = {}, {}, {}
    for name in args.models.split(","):
        variants, cs, batch = make_variants(name, args.k, unrolls)
        batches[name] = batch
        for v, fn in variants.items():
            rows[(name, v)] = fn
            compile_s[(name, v)] = cs[v]
        print(
            f"{name}: first call (compile + run) " + ", ".join(f"{v} {t:.1f}s" for v, t in cs.items()), flush=True
        )
    times = {key: [] for key in rows}
    keys = list(rows)
    order = np.random.default_rng(0)
    for _ in range(args.rounds):
        for i in order.permutation(len(keys)):
            t = time.perf_counter()
            jax.block_until_ready(rows[keys[i]]())
            times[keys[i]].append(time.perf_counter() - t)
    names = list(dict.fromkeys(n for n, _ in keys))
    vnames = list(dict.fromkeys(v for _, v in keys))
    print(f"\n{jax.devices()[0].platform}, jax {jax.__version__}, K = {args.k}, {args.rounds} interleaved rounds")
    print("| model | " + " | ".join(f"{v}: ex/s (x K=1), compile s" for v in vnames) + " |")
    print("|---|" + "---|" * len(vnames))
    for n in names:
        base = np.asarray(times[(n, "K=1")])
        cells = []
        for v in vnames:
            t = np.asarray(times[(n, v)])
            rate = args.k * batches[n] / np.median(t)
            cells.append(f"{rate:,.0f} ({np.median(base / t):.2f}x), {compile_s[(n, v)]:.1f}")
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
