"""Training speed of the TopK SAE (Gao et al. 2024) at a realistic shape: aejax's loop against a minimal
hand-written jitted step of the same SAE and against PyTorch eager (issue 20, part 5):

  python benchmarks/bench_sae.py [--d 256 --expansion 16 --batch 4096 --rounds 5] \
      [--torch /path/to/torch-venv/bin/python]

The SAE is configs/sae.py:mnist's TopK SAE at d inputs and n = expansion * d latents: ReLU after the top-k
(k = 32), untied, decoder rows kept at unit norm with the gradient component parallel to each row removed,
pre-encoder bias (b_dec initialised to the geometric median of the first batch), inputs scaled so E||x||^2 = d,
dead-latent tracking (dead_after = 20,000 examples) and AuxK (k_aux = 256, alpha = 1/32; the top-k_aux selection
and the AuxK reconstruction are computed only on steps with a dead latent, as aejax's lax.cond does); Adam at a
constant 1e-3, batch B. Data: N random vectors (a random linear mix of Gaussians plus an offset) written once as an
`arrays:` dataset (aejax/data/arrays.py) that all three contenders read.

Contenders, each run in every round, in a fresh random order per round:
- "loop K=1" / "loop auto": `python launch.py --config=configs/sae.py:mnist` with overrides (this data, the shape,
  the constant Adam, no reports; evaluation and a checkpoint only at the end) at steps_per_call 1 and 0 (auto); the
  rate is the run's own examples/s (the median over its log windows after the first, which holds compilation),
  read from metrics.jsonl as benchmarks/bench_families.py does;
- "hand": the same computation written directly in jax + optax (below): one `jax.jit` step, state donated, the
  batch gathered on device from the split by row indices; no mesh, metrics or checks; the top k kept by
  `lax.top_k` + scatter as in aejax ("hand mask", optional: by the k-th value's mask, `topk_mask_exact`);
- "torch": benchmarks/torch_sae_reference.py (PyTorch eager, the same computation) in --torch's interpreter.

Reported: medians over rounds of examples (tokens)/s, and the median in-round ratio to the hand-written step.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
K, AUX_K, AUXK_COEFF, DEAD_AFTER, LR = 32, 256, 1 / 32, 20_000, 1e-3  # configs/sae.py:mnist's TopK settings


def write_data(root: str, d: int, n_train: int, n_test: int, seed: int = 0) -> str:
    """Random vectors [N, d] (Gaussian mixed by a random matrix, plus an offset) as train_x.npy / test_x.npy."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    offset = rng.normal(size=(d,))
    for split, n in (("train", n_train), ("test", n_test)):
        x = (rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(1, d))) @ mix + offset
        np.save(os.path.join(root, f"{split}_x.npy"), x.astype(np.float32))
    return root


# -- the hand-written step ---------------------------------------------------------------------------------------
def unit_rows(w):
    return w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def statistics(x):
    """(s, c): the input scale with E||s x||^2 = d and the geometric median of s x (Weiszfeld, 50 iterations
    from the mean), of the first batch x [B, d], as aejax's SAE estimates them."""
    s = jnp.sqrt(x.shape[1] / jnp.mean(jnp.sum(x * x, axis=1)))
    xs = s * x
    c = jnp.mean(xs, axis=0)
    for _ in range(50):
        w = 1.0 / jnp.maximum(jnp.linalg.norm(xs - c, axis=1), 1e-8)
        c = jnp.sum(w[:, None] * xs, axis=0) / jnp.sum(w)
    return s, c


def topk_scatter(pre, k, relu=False):
    vals, idx = jax.lax.top_k(pre, k)
    vals = jax.nn.relu(vals) if relu else vals
    rows = jnp.arange(pre.shape[0])[:, None]
    return jnp.zeros_like(pre).at[rows, idx].set(vals)


def topk_mask_exact(pre, k, relu=True):
    """The top k of each row by the mask at the k-th value when no row has a tie there, else (`lax.cond`) by
    `lax.top_k` + scatter: the same code and gradient as `topk_scatter`, without the [B, n] scatter and top_k's
    scatter-add gradient on the common path. Tried for aejax's `topk_code`; not adopted (README)."""
    act = jax.nn.relu if relu else (lambda v: v)
    kept, idx = jax.lax.top_k(jax.lax.stop_gradient(pre), k)
    keep = pre >= kept[:, -1:]
    no_ties = jnp.all(jnp.sum(keep, axis=1, dtype=jnp.int32) == k)

    def by_scatter(pre):
        rows = jnp.arange(pre.shape[0])[:, None]
        return jnp.zeros_like(pre).at[rows, idx].set(act(jnp.take_along_axis(pre, idx, axis=1)))

    return jax.lax.cond(no_ties, lambda p: jnp.where(keep, act(p), 0.0), by_scatter, pre)


def make_hand_step(d: int, n: int, k: int = K, aux_k: int = AUX_K, select: str = "scatter"):
    """(init(key, x_first [B, d]) -> state, step(state, x [N, d], rows [B]) -> state): the TopK SAE with AuxK,
    dead tracking, parallel-gradient removal and unit-norm projection, Adam; pure jax + optax. `select`:
    "scatter" keeps the top k by `lax.top_k` and a scatter (the textbook form and aejax's `topk_code`), "mask"
    by `topk_mask_exact`; the AuxK selection is `lax.top_k` + scatter in both, as in aejax."""
    tx = optax.adam(LR)

    def init(key, x_first):
        w_dec = unit_rows(jax.random.normal(key, (n, d)))
        params = {"W_enc": w_dec.T, "b_enc": jnp.zeros(n), "W_dec": w_dec, "b_dec": jnp.zeros(d)}
        s, c = statistics(x_first)
        return params, tx.init(params), jnp.zeros(n, jnp.int32), s, c

    def loss(p, since, s, c, x):
        x_n = s * x  # [B, d]
        b = p["b_dec"] + c
        pre = (x_n - b) @ p["W_enc"] + p["b_enc"]  # [B, n]
        if select == "mask":
            code = topk_mask_exact(pre, k, relu=True)
        else:
            code = topk_scatter(pre, k, relu=True)  # Gao et al. eq. 2: ReLU after the top-k
        recon = code @ p["W_dec"] + b
        residual = x_n - recon
        mse = jnp.sum(residual * residual, axis=1)
        fired = jnp.any(code != 0, axis=0)
        since = jnp.where(fired, 0, jnp.minimum(since + x.shape[0], 2**30))
        if not aux_k:  # no AuxK (bench_sae_select.py: the step without its k_aux selection)
            return jnp.mean(mse), since
        dead = since >= DEAD_AFTER

        def auxk(pre, residual, w_dec):
            e_hat = topk_scatter(jnp.where(dead[None, :], jax.nn.relu(pre), 0.0), aux_k) @ w_dec
            return jnp.sum(jnp.square(jax.lax.stop_gradient(residual) - e_hat), axis=1)

        # only on steps with a dead latent, as aejax's auxk_loss (a cond, not a select)
        aux = jax.lax.cond(jnp.any(dead), auxk, lambda *a: jnp.zeros(x.shape[:1]), pre, residual, p["W_dec"])
        return jnp.mean(mse) + AUXK_COEFF * jnp.mean(aux), since

    def step(state, x_all, rows):
        p, o, since, s, c = state
        g, since = jax.grad(loss, has_aux=True)(p, since, s, c, jnp.take(x_all, rows, axis=0))
        u = unit_rows(p["W_dec"])
        g = {**g, "W_dec": g["W_dec"] - jnp.sum(g["W_dec"] * u, axis=1, keepdims=True) * u}
        updates, o = tx.update(g, o, p)
        p = optax.apply_updates(p, updates)
        return {**p, "W_dec": unit_rows(p["W_dec"])}, o, since, s, c

    return init, jax.jit(step, donate_argnums=0)


def hand_row(x_train: np.ndarray, n: int, batch: int, steps: int, select: str = "scatter", k=K, aux_k=AUX_K):
    init, step = make_hand_step(x_train.shape[1], n, k, aux_k, select=select)
    x_dev = jax.device_put(x_train)
    rows = jnp.asarray(np.random.default_rng(1).integers(0, len(x_train), size=(steps, batch)), jnp.int32)

    def run():
        state = init(jax.random.key(0), x_dev[rows[0]])
        state = step(state, x_dev, rows[0])  # compile (cached after the first round) and warm up
        jax.block_until_ready(state)
        t = time.perf_counter()
        for i in range(steps):
            state = step(state, x_dev, rows[i])
        jax.block_until_ready(state)
        return steps * batch / (time.perf_counter() - t)

    return run


def hand_step_for_select(d, n, batch, k, aux_k, select="scatter"):
    """For bench_sae_select.py: (step(state, rows), state, [rows]) on random data of the given shape."""
    init, step = make_hand_step(d, n, k, aux_k, select)
    rng = np.random.default_rng(0)
    x_dev = jax.device_put(rng.normal(size=(4 * batch, d)).astype(np.float32))
    rows = [jnp.asarray(rng.integers(0, 4 * batch, size=(batch,)), jnp.int32) for _ in range(4)]
    return (lambda st, r: step(st, x_dev, r)), init(jax.random.key(0), x_dev[:batch]), rows


# -- aejax's loop and PyTorch ------------------------------------------------------------------------------------
def train_rate(workdir: str) -> float:
    """examples/s: the median of the run's logged windows after the first (which holds compilation)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rates = [r["examples_per_s"] for r in map(json.loads, f) if "examples_per_s" in r]
    return float(np.median(rates[1:] or rates))


def loop_row(data: str, n: int, batch: int, steps: int, log_every: int, k: int, top_k=K, aux_k=AUX_K):
    overrides = dict(
        dataset=f"arrays:{data}", batch_size=batch, num_epochs=0, num_train_steps=steps, log_every=log_every,
        eval_every=steps, checkpoint_every=steps, steps_per_call=k, eval_batch_size=1024,
        **{"model.n_latents": n, "model.k": top_k, "model.aux_k": aux_k, "model.auxk_coeff": AUXK_COEFF,
           "model.dead_after": DEAD_AFTER, "optimizer.name": "adam", "optimizer.schedule": "constant",
           "optimizer.learning_rate": LR, "analysis.reports": "", "analysis.embedding": "pca"},
    )  # fmt: skip
    flags = [f"--config.{key}={value}" for key, value in overrides.items()]

    def run():
        with tempfile.TemporaryDirectory() as workdir:
            cmd = [
                sys.executable,
                os.path.join(ROOT, "launch.py"),
                "--config=configs/sae.py:mnist",  # the default job on the given arrays (not the LM pipeline)
                f"--workdir={workdir}",
            ]
            out = subprocess.run(cmd + flags, cwd=ROOT, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"launch.py failed:\n{out.stderr[-3000:]}")
            return train_rate(workdir)

    shown = ["--config.dataset=arrays:<dir>", *flags[1:]]  # the data directory is a fresh temporary one
    return run, " ".join(["python launch.py --config=configs/sae.py:mnist", *shown])


def torch_row(python: str, data: str, n: int, batch: int, steps: int, k=K, aux_k=AUX_K):
    def run():
        cmd = [python, os.path.join(HERE, "torch_sae_reference.py"), f"--data={data}/train_x.npy", f"--n={n}",
               f"--batch={batch}", f"--steps={steps}", f"--k={k}", f"--aux_k={aux_k}"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--n_train", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40, help="steps of a loop run (the first log window untimed)")
    ap.add_argument("--log_every", type=int, default=10)
    ap.add_argument("--hand_steps", type=int, default=20)
    ap.add_argument("--only", default="loop K=1,loop auto,hand,torch")
    ap.add_argument("--k", type=int, default=K, help="latents kept (smaller for a smoke run at small n)")
    ap.add_argument("--aux_k", type=int, default=AUX_K, help="AuxK's k (at most n)")
    ap.add_argument("--torch", default=None, help="a Python with torch for the PyTorch eager row")
    args = ap.parse_args()
    n = args.expansion * args.d
    tmp = tempfile.TemporaryDirectory(prefix="bench_sae_")  # removed at exit
    data = write_data(tmp.name, args.d, args.n_train, 4096)
    x_train = np.load(os.path.join(data, "train_x.npy"))
    rows, commands = {}, {}
    wanted = args.only.split(",")
    for name, k in (("loop K=1", 1), ("loop auto", 0)):
        if name in wanted:
            rows[name], commands[name] = loop_row(
                data, n, args.batch, args.steps, args.log_every, k, args.k, args.aux_k
            )
    if "hand" in wanted:
        rows["hand"] = hand_row(x_train, n, args.batch, args.hand_steps, k=args.k, aux_k=args.aux_k)
    if "hand mask" in wanted:
        rows["hand mask"] = hand_row(x_train, n, args.batch, args.hand_steps, "mask", args.k, args.aux_k)
    if "torch" in wanted and args.torch:
        rows["torch"] = torch_row(args.torch, data, n, args.batch, args.hand_steps, args.k, args.aux_k)
    rates = {name: [] for name in rows}
    order = np.random.default_rng(0)
    names = list(rows)
    for r in range(args.rounds):
        for i in order.permutation(len(names)):
            rates[names[i]].append(rows[names[i]]())
            print(f"  {names[i]}: {rates[names[i]][-1]:,.0f}", file=sys.stderr, flush=True)
        print(f"round {r + 1}/{args.rounds} done; load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    head = f"{jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; d={args.d}, n={n}"
    head += f", B={args.batch}, k={args.k}, k_aux={args.aux_k}"
    print(f"\n{head}; {args.rounds} rounds; load {os.getloadavg()}")
    for name, cmd in commands.items():
        print(f"{name}: {cmd}")
    print("| contender | tokens/s (median) | vs hand (median in-round ratio) | all rounds |\n|---|---|---|---|")
    for name in names:
        ratio = np.median(np.asarray(rates[name]) / np.asarray(rates["hand"])) if "hand" in rates else np.nan
        every = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"| {name} | {np.median(rates[name]):,.0f} | {ratio:.3f}x | {every} |", flush=True)


if __name__ == "__main__":
    main()
