"""Speed of a vmapped sweep of S SAEs (aejax/sweep.py) against the S single runs one after the other (issue 21):

  python benchmarks/bench_sweep.py [--sizes lm,small --rounds 5 --calls 3 --steps_per_call 32 --aux_k 64]

Both contenders run aejax's own jitted multi-step update (`train_step.make_multi_step`, the loop's K steps per
call, batches gathered on the device from a split held there), with the real objective, optimizer (Adam, the
configs/sae.py:store schedule) and models, on the same random vectors:
- "sweep": ONE stacked state of S = 8 TopK SAEs, k = 8, 16, 32, 64 (experiments/gao_2024's frontier) x seed 0, 1
  (`config.sweep = "k=8,16,32,64;seed=0,1"`), one call = K steps of all 8;
- "sequential": the 8 single models (each its own compiled step), one call of K steps each, one after the other.
With --launch_steps N: also the wall time of whole launches on the bundled digits (configs/sae.py:mnist, 784 ->
1,024 latents, batch 256, N steps, no reports): the 8 members as 8 `python launch.py` processes one after the
other against ONE launch of configs/sae.py:mnist,sweep (which also evaluates and reports every member), in
interleaved rounds; each launch pays Python and JAX start-up, the data load, compilation and the analysis.
Sizes: "lm" = configs/sae.py's default (d = 128, n = 2,048, B = 4,096), "small" = d = 32, n = 256, B = 256, where
per-step overhead matters. Each contender is compiled and warmed up (statistics estimated) before timing; every
round times `--calls` calls of each contender in a fresh random order. Reported: member-examples/s (S x B x steps
/ seconds) per contender, medians over rounds, and the median in-round speed-up.

What vmap can save: dispatch, the host's batch indices and the gather of the batch (shared by the members), and
small matrix products batched into bigger ones; it cannot shrink the FLOPs of 8 SAEs. AuxK: with aux_k > 0 a
single run skips the AuxK top-k while no latent is dead (a lax.cond); under vmap a per-member predicate would
become a select, so the sweep decides once per k-group, conservatively (aejax/sweep.py); `--aux_k 64` (the
config's) against `--aux_k 0` shows what is left of that cost.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import aejax
from aejax import build, objectives, optim, sharding, sweep
from aejax import train_step as ts
from aejax.models import get_model

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(aejax.__file__))))  # the repo root
from configs import sae as sae_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = {"lm": dict(d=128, n=2048, batch=4096), "small": dict(d=32, n=256, batch=256)}
SPEC = "k=8,16,32,64;seed=0,1"


def contenders(size: dict, aux_k: int, k_steps: int, mesh, spec: str = SPEC):
    """{"sweep": (call, state), "sequential": [(call, state)] * S} and the device split."""
    config = sae_config.get_config("store")
    config.model.update(n_latents=size["n"], aux_k=aux_k)
    config.batch_size = size["batch"]
    config.sweep = spec
    ms = sweep.members(config)
    shape = (size["d"],)
    rng = np.random.default_rng(0)
    n_rows = 16 * size["batch"]
    x = (rng.normal(size=(n_rows, size["d"])) @ rng.normal(size=(size["d"], size["d"]))).astype(np.float32)
    split = sharding.replicate((jnp.asarray(x), jnp.zeros(n_rows, jnp.int32), None), mesh)

    def built(c):
        model = get_model(c.model_name, input_shape=shape, **c.model)
        tx = optim.make_optimizer(c.optimizer, 10_000)
        return model, objectives.from_config(c, model, None), tx

    model, _, tx = built(sweep.template_config(ms))
    gs = sweep.groups(ms, shape, lambda c, model: objectives.from_config(c, model, None))
    stacked = sweep.stacked_objective(gs, [m.name for m in ms])
    tx_s = sweep.stacked_optimizer(tx)
    sweep_state = sweep.make_init_fn(model, tx, ms, shape, mesh)()
    out = {"sweep": (ts.make_multi_step(stacked.loss_fn, tx_s, mesh, project=stacked.project), sweep_state)}
    singles = []
    for m in ms:
        model_m, obj_m, tx_m = built(m.config)
        variables = model_m.init(jax.random.key(m.config.seed), jnp.zeros((1, *shape)))
        state = ts.init_state(
            variables["params"], tx_m, jax.random.key(1), {k: v for k, v in variables.items() if k != "params"}
        )
        call = ts.make_multi_step(obj_m.loss_fn, tx_m, mesh, project=obj_m.project)
        singles.append((call, jax.device_put(state, sharding.replicated(mesh))))
    out["sequential"] = singles
    return out, split, n_rows, len(ms)


def measure(size: dict, args, mesh) -> dict:
    """Interleaved rounds of both contenders at one size; medians."""
    k_steps = args.steps_per_call
    cs, split, n_rows, s = contenders(size, args.aux_k, k_steps, mesh, args.spec)
    rng = np.random.default_rng(1)

    def indices():
        return jnp.asarray(rng.integers(0, n_rows, size=(k_steps, size["batch"])), jnp.int32)

    states = {"sweep": cs["sweep"][1], "sequential": [st for _, st in cs["sequential"]]}

    def run(name):
        if name == "sweep":
            states["sweep"], m = cs["sweep"][0](states["sweep"], *split, indices())
            jax.block_until_ready(m)
        else:
            for i, (call, _) in enumerate(cs["sequential"]):
                states["sequential"][i], m = call(states["sequential"][i], *split, indices())
                jax.block_until_ready(m)

    for name in ("sweep", "sequential"):  # compile, and estimate the input statistics
        run(name)
    rates = {"sweep": [], "sequential": []}
    for _ in range(args.rounds):
        order = ["sweep", "sequential"]
        random.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            for _ in range(args.calls):
                run(name)
            rates[name].append(s * size["batch"] * k_steps * args.calls / (time.perf_counter() - t0))
    speedup = [a / b for a, b in zip(rates["sweep"], rates["sequential"], strict=True)]
    return {
        **size,
        "members": s,
        "aux_k": args.aux_k,
        "sweep": args.spec,
        "steps_per_call": k_steps,
        "sweep_member_examples_per_s": float(np.median(rates["sweep"])),
        "sequential_member_examples_per_s": float(np.median(rates["sequential"])),
        "speedup_median": float(np.median(speedup)),
        "speedup_rounds": [round(v, 3) for v in speedup],
    }


def launches(args, data_dir: str) -> dict:
    """Wall seconds of 8 single launches against one sweep launch (see the module docstring), medians."""
    common = [
        f"--config.num_train_steps={args.launch_steps}", "--config.analysis.reports=",
        f"--config.data_dir={data_dir}",
        f"--config.log_every={args.launch_steps}", f"--config.eval_every={args.launch_steps}",
        f"--config.checkpoint_every={args.launch_steps}",
    ]  # fmt: skip
    sweep_cfg = sae_config.get_config("mnist,sweep")
    sweep_cfg.sweep = args.spec
    sweep_cfg.data_dir = data_dir
    build.load_data(sweep_cfg)  # prepares the digits' TFDS files once, before any timing
    ms = sweep.members(sweep_cfg)
    env = {**os.environ, "PYTHONPATH": ROOT}

    def launch(config_arg, extra, workdir):
        cmd = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config_arg}", f"--workdir={workdir}"]
        subprocess.run(cmd + common + extra, check=True, cwd=ROOT, env=env, capture_output=True)

    def singles(root):
        for m in ms:
            extra = [f"--config.model.k={m.config.model.k}", f"--config.seed={m.config.seed}"]
            launch(os.path.join(ROOT, "configs/sae.py:mnist"), extra, os.path.join(root, m.name))

    def one_sweep(root):
        launch(os.path.join(ROOT, "configs/sae.py:mnist,sweep"), [f"--config.sweep={args.spec}"], root)

    times = {"sequential": [], "sweep": []}
    for _ in range(args.launch_rounds):
        order = [("sequential", singles), ("sweep", one_sweep)]
        random.shuffle(order)
        for name, fn in order:
            with tempfile.TemporaryDirectory() as root:
                t0 = time.perf_counter()
                fn(root)
                times[name].append(time.perf_counter() - t0)
    ratio = [a / b for a, b in zip(times["sequential"], times["sweep"], strict=True)]
    return {
        "launch_steps": args.launch_steps,
        "sequential_s": float(np.median(times["sequential"])),
        "sweep_s": float(np.median(times["sweep"])),
        "speedup_median": float(np.median(ratio)),
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in times.items()},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="lm,small")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=2, help="timed calls of each contender per round")
    p.add_argument("--steps_per_call", type=int, default=32, help="K (the store config's auto K is 32)")
    p.add_argument("--aux_k", type=int, default=64)
    p.add_argument("--spec", default=SPEC, help="the sweep (8 members by default)")
    p.add_argument("--launch_steps", type=int, default=0, help="> 0: also time whole launches of this many steps")
    p.add_argument("--launch_rounds", type=int, default=3)
    p.add_argument("--data_dir", default=None, help="TFDS data_dir of the digits (default: a temporary one)")
    args = p.parse_args()
    mesh = sharding.make_mesh()
    for name in filter(None, args.sizes.split(",")):
        print(json.dumps({name: measure(SIZES[name], args, mesh)}), flush=True)
    if args.launch_steps:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"launches": launches(args, args.data_dir or tmp)}), flush=True)


if __name__ == "__main__":
    main()
