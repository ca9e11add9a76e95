"""Training speed of every model family, through the real trainer, at one step per call and at the auto K:

  python benchmarks/bench_families.py [--rounds 3] [--only mlp,conv_pool] [--torch /path/to/venv/bin/python]

Each row is a family's config (`configs/...`) trained by its own job (`train_and_evaluate`, as `launch.py` runs
it) for --steps steps in a fresh workdir, with evaluation only at the end, no PCA baseline, no reports and a PCA
embedding (so the run is the loop plus a little analysis); the number is the job's own `examples_per_s`, the
median over its log windows after the first (which holds compilation), so it measures training steps only. Each
row runs at `steps_per_call=1` and at `steps_per_call=0` (auto; the K it chose is shown).

Where the model is easy to write by hand (the main job's MLP and the conv AE, pool and stride) two references run
in the same rounds:
- "hand": a minimal `jax.jit` step of the same flax module (aejax's model class with the config's attributes):
  BCE-with-logits summed over pixels, optax Adam, the batch gathered from a device-resident split by row
  indices, one dispatch per step; no mesh, metrics or NaN checks;
- "torch": PyTorch eager (benchmarks/torch_reference.py) in the interpreter given by --torch (a private venv;
  torch is not a dependency), started per round, timed after its warm-up.

All rows of a round run in a fresh random order, --rounds rounds; reported: medians over rounds.
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

import aejax
from aejax import jobs
from aejax.models import get_model

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(aejax.__file__))))  # the repo root
from configs import conv_ae, hashing, mnist_ae, psd, seq2seq, vae  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (config factory, steps of a timed run, log_every)
FAMILIES = {
    "mlp": (lambda: mnist_ae.get_config(""), 400, 50),
    "conv_pool": (lambda: conv_ae.get_config(""), 100, 20),
    "conv_stride": (lambda: conv_ae.get_config("stride"), 100, 20),
    "conv_vae": (lambda: vae.get_config("conv"), 100, 20),
    "mlp_vae": (lambda: vae.get_config(""), 400, 50),
    "lstm": (lambda: seq2seq.get_config("kdd"), 200, 25),
    "gru": (lambda: seq2seq.get_config("kdd,gru"), 200, 25),
    "conv1d": (lambda: seq2seq.get_config("kdd,conv1d"), 200, 25),
    "hashing": (lambda: hashing.get_config(""), 400, 50),
    "psd": (lambda: psd.get_config(""), 400, 50),
}
HAND = {"mlp", "conv_pool", "conv_stride"}  # families with a hand-written step and a PyTorch reference
TORCH_NAME = {"mlp": "mlp", "conv_pool": "conv_pool", "conv_stride": "conv_stride"}


def job_of(config):
    """The job that trains `config` (what launch.py runs)."""
    return jobs.get_job(config.get("trainer", jobs.DEFAULT))


def train_rate(workdir: str) -> float:
    """The run's training examples/s: the median of its logged windows after the first (which holds
    compilation), read from metrics.jsonl, as `loop.run` reports it in results.json."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rates = [r["examples_per_s"] for r in map(json.loads, f) if "examples_per_s" in r]
    return float(np.median(rates[1:] or rates))


def loop_row(name: str, k: int, data_dir: str | None, scale: float = 1.0, log_every: int = 0):
    """() -> (examples/s, K used): one timed run of the family's job (log_every 0: the family's own)."""
    make, steps, own_log_every = FAMILIES[name]
    log_every = log_every or own_log_every
    steps = max(2, round(steps * scale / log_every)) * log_every  # at least two log windows

    def run():
        config = make()
        config.unlock()
        config.num_train_steps = steps
        config.log_every = log_every
        config.eval_every = config.checkpoint_every = steps
        config.steps_per_call = k
        config.analysis.pca_baseline = False
        config.analysis.embedding = "pca"
        config.analysis.reports = ""
        if "vae" in config:
            config.vae.eval_samples = config.vae.eval_chunk = 1
        if data_dir:
            config.data_dir = data_dir
        with tempfile.TemporaryDirectory() as workdir:
            results = job_of(config).train_and_evaluate(config, workdir)
            return train_rate(workdir), int(results.get("steps_per_call", -1))

    return run


def hand_row(name: str, steps: int = 60):
    """() -> examples/s of a minimal jitted step of the family's flax module."""
    config = FAMILIES[name][0]()
    model = get_model(config.model_name, input_shape=(28, 28, 1), **config.model)
    rng = np.random.default_rng(0)
    x_dev = jax.device_put(rng.uniform(size=(4000, 28, 28, 1)).astype(np.float32))
    rows = jnp.asarray(rng.integers(0, 4000, size=(steps, config.batch_size)), jnp.int32)
    params = model.init(jax.random.key(0), x_dev[:1])["params"]
    tx = optax.adam(1e-3)

    def loss(p, xb):
        logits = model.apply({"params": p}, xb).decoder_output
        return optax.sigmoid_binary_cross_entropy(logits, xb).sum() / xb.shape[0]

    @jax.jit
    def step(state, r):
        p, o = state
        grads = jax.grad(loss)(p, jnp.take(x_dev, r, axis=0))
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    state0 = (params, tx.init(params))
    jax.block_until_ready(step(state0, rows[0]))

    def run():
        s = state0
        t = time.perf_counter()
        for i in range(steps):
            s = step(s, rows[i])
        jax.block_until_ready(s)
        return steps * config.batch_size / (time.perf_counter() - t), 1

    return run


def torch_row(name: str, python: str, steps: int = 60):
    def run():
        out = subprocess.run(
            [python, os.path.join(HERE, "torch_reference.py"), "--model", TORCH_NAME[name], "--steps", str(steps)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(out.stdout.split()[-1]), 1

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(FAMILIES))
    ap.add_argument("--torch", default=None, help="a Python with torch for the PyTorch eager rows")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the steps of every loop row")
    ap.add_argument("--warmup", type=int, default=1, help="0: no untimed first pass (data already prepared)")
    ap.add_argument("--log_every", type=int, default=0, help="> 0: every loop row's (a smoke run: few steps)")
    args = ap.parse_args()
    names = args.only.split(",")
    rows = {}
    for name in names:
        rows[(name, "K=1")] = loop_row(name, 1, args.data_dir, args.scale, args.log_every)
        rows[(name, "auto")] = loop_row(name, 0, args.data_dir, args.scale, args.log_every)
        if name in HAND:
            rows[(name, "hand")] = hand_row(name, max(2, round(60 * args.scale)))
            if args.torch:
                rows[(name, "torch")] = torch_row(name, args.torch)
    for key, run in rows.items():  # warm-up: data preparation, caches
        if args.warmup and key[1] in ("K=1", "hand", "torch"):
            run()
    rates = {key: [] for key in rows}
    ks = {}
    order = np.random.default_rng(0)
    keys = list(rows)
    for r in range(args.rounds):
        for i in order.permutation(len(keys)):
            rate, k = rows[keys[i]]()
            rates[keys[i]].append(rate)
            ks[keys[i]] = k
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    platform = f"{jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}"
    print(f"\n{platform}, {args.rounds} interleaved rounds, median examples/s")
    print("| family | K=1 | auto (K) | auto / K=1 | hand-written jit step | loop / hand | PyTorch eager |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        k1, auto = np.median(rates[(name, "K=1")]), np.median(rates[(name, "auto")])
        ratio = np.median(np.asarray(rates[(name, "auto")]) / np.asarray(rates[(name, "K=1")]))
        cells = [f"{k1:,.0f}", f"{auto:,.0f} ({ks[(name, 'auto')]})", f"{ratio:.2f}x"]
        if (name, "hand") in rates:
            hand = np.median(rates[(name, "hand")])
            best = max(k1, auto)
            cells += [f"{hand:,.0f}", f"{best / hand:.2f}x"]
        else:
            cells += ["", ""]
        cells.append(f"{np.median(rates[(name, 'torch')]):,.0f}" if (name, "torch") in rates else "")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
