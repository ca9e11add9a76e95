"""The TopK SAE's selection on its own: forward + backward of "keep the k largest pre-activations of each row", and
of AuxK's k_aux largest dead ones, at the SAE benchmark's shape, by several exact or approximate forms:

  python benchmarks/bench_sae_select.py [--batch 4096 --n 4096 --k 32 --aux_k 256 --rounds 7]

Forms (each a function pre [B, n] -> code [B, n], differentiated with a fixed random cotangent):
- "top_k + scatter": `lax.top_k` then the values scattered into zeros (aejax's `sae_select.row_topk`);
- "top_k + mask (exact)": the mask below when no row has a tie at its k-th value, else (`lax.cond`) the scatter;
- "top_k + mask": `lax.top_k` for the k-th value only, then `where(pre >= kth, relu(pre), 0)` (elementwise, no
  scatter; keeps more than k entries only where a row has ties at its k-th value);
- "approx_max_k": `lax.approx_max_k(recall_target=0.95)` + scatter (XLA's TPU algorithm; other backends fall back
  to an exact sort, per jax/_src/lax/ann.py);
- "partition + mask": the k-th value from `jnp.partition` (which jax implements with `lax.top_k`);
- "bisect + mask": the exact k-th value by a 32-step search over the float's order-preserving int32 bits (each
  step counts, per row, the entries at or above a candidate), then the mask.

Every form's code is checked against "top_k + scatter" (max abs difference printed) before timing. Rows run
interleaved in a fresh random order per round; medians in ms. The last rows time one whole hand-written TopK SAE
training step (benchmarks/bench_sae.py's "hand" step) with each selection and without AuxK, so the selection's
share of a step can be read off.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sae  # noqa: E402


def scatter_code(vals, idx, n):
    rows = jnp.arange(vals.shape[0])[:, None]
    return jnp.zeros((vals.shape[0], n), vals.dtype).at[rows, idx].set(vals)


def topk_scatter(pre, k):
    vals, idx = jax.lax.top_k(pre, k)
    return scatter_code(jax.nn.relu(vals), idx, pre.shape[1])


def mask_at(pre, kth):
    return jnp.where(pre >= kth[:, None], jax.nn.relu(pre), 0.0)


def topk_mask(pre, k):
    return mask_at(pre, jax.lax.stop_gradient(jax.lax.top_k(pre, k)[0][:, -1]))


def approx_scatter(pre, k):
    vals, idx = jax.lax.approx_max_k(pre, k, recall_target=0.95)
    return scatter_code(jax.nn.relu(vals), idx, pre.shape[1])


def partition_mask(pre, k):
    n = pre.shape[1]
    kth = jnp.partition(jax.lax.stop_gradient(pre), n - k, axis=1)[:, n - k]
    return mask_at(pre, kth)


def ordered_bits(x):
    """float32 -> int32 with the same order (negative floats' bits flipped)."""
    i = jax.lax.bitcast_convert_type(x, jnp.int32)
    return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)


def kth_largest_bisect(pre, k):
    """[B, n] -> [B] the exact k-th largest value of each row: the largest key t with count(key >= t) >= k, built
    bit by bit from the sign down (32 counting passes)."""
    key = ordered_bits(jax.lax.stop_gradient(pre))
    # Start at the smallest int32; set bits from the top while the count stays >= k.
    lo = jnp.full((pre.shape[0],), jnp.iinfo(jnp.int32).min, jnp.int32)

    def body(i, lo):
        bit = jnp.left_shift(jnp.uint32(1), jnp.uint32(31 - i))
        cand = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(lo, jnp.uint32) + bit, jnp.int32)
        cand = jnp.where(i == 0, jnp.int32(0), cand)  # the sign bit: from INT_MIN, "+ 2^31" is 0
        ok = jnp.sum(key >= cand[:, None], axis=1) >= k
        return jnp.where(ok, cand, lo)

    t = jax.lax.fori_loop(0, 32, body, lo)
    i = jnp.where(t < 0, t ^ jnp.int32(0x7FFFFFFF), t)
    return jax.lax.bitcast_convert_type(i, jnp.float32)


def bisect_mask(pre, k):
    return mask_at(pre, kth_largest_bisect(pre, k))


FORMS = {
    "top_k + scatter": topk_scatter,
    "top_k + mask (exact)": bench_sae.topk_mask_exact,
    "top_k + mask": topk_mask,
    "approx_max_k": approx_scatter,
    "partition + mask": partition_mask,
    "bisect + mask": bisect_mask,
}


def timed(fn, args, reps):
    def run():
        jax.block_until_ready(fn(*args))
        t = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - t) / reps * 1e3

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--aux_k", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(FORMS))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pre = jnp.asarray(rng.normal(size=(args.batch, args.n)).astype(np.float32))
    cot = jnp.asarray(rng.normal(size=(args.batch, args.n)).astype(np.float32))
    rows = {}
    ref = {kk: jax.jit(topk_scatter, static_argnums=1)(pre, kk) for kk in (args.k, args.aux_k)}
    for name in args.only.split(","):
        form = FORMS[name]
        for label, kk in (("k", args.k), ("k_aux", args.aux_k)):
            fwd = jax.jit(lambda p, f=form, kk=kk: f(p, kk))
            err = float(jnp.max(jnp.abs(fwd(pre) - ref[kk])))
            nnz = float(jnp.mean(jnp.sum(fwd(pre) != 0, axis=1)))
            grad = jax.jit(jax.grad(lambda p, f=form, kk=kk: jnp.vdot(f(p, kk), cot)))
            print(f"{name} ({label}={kk}): max |code - top_k code| = {err:.2e}, mean nnz {nnz:.2f}", flush=True)
            rows[(name, f"{label}={kk}", "fwd")] = timed(fwd, (pre,), args.reps)
            rows[(name, f"{label}={kk}", "fwd+bwd")] = timed(lambda p, g=grad: g(p), (pre,), args.reps)
    steps = {
        "whole hand-written TopK SAE step (top_k + scatter, AuxK)": (args.aux_k, "scatter"),
        "same step, top_k + mask (exact)": (args.aux_k, "mask"),
        "same step (top_k + scatter) without AuxK": (0, "scatter"),
    }
    for label, (aux_k, select) in steps.items():
        step, state, batches = bench_sae.hand_step_for_select(args.d, args.n, args.batch, args.k, aux_k, select)
        state = [step(state, batches[0])]

        def whole(step=step, state=state, batches=batches):
            jax.block_until_ready(state[0])
            t = time.perf_counter()
            for i in range(args.reps):
                state[0] = step(state[0], batches[i % len(batches)])
            jax.block_until_ready(state[0])
            return (time.perf_counter() - t) / args.reps * 1e3

        rows[(label, "", "step")] = whole
    times = {key: [] for key in rows}
    order = np.random.default_rng(1)
    keys = list(rows)
    for r in range(args.rounds):
        for i in order.permutation(len(keys)):
            times[keys[i]].append(rows[keys[i]]())
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    print(f"\n{jax.devices()[0].platform}, jax {jax.__version__}, B={args.batch}, n={args.n}, medians of "
          f"{args.rounds} interleaved rounds (ms)")  # fmt: skip
    print("| form | k | forward | forward + backward |\n|---|---|---|---|")
    for name, kk, what in keys:
        if what == "fwd":
            fb = np.median(times[(name, kk, "fwd+bwd")])
            print(f"| {name} | {kk} | {np.median(times[(name, kk, 'fwd')]):.1f} | {fb:.1f} |")
        elif what == "step":
            print(f"| {name} | | | {np.median(times[(name, kk, what)]):.1f} |")


if __name__ == "__main__":
    main()
