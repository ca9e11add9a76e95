"""Memory per device of a TopK SAE train step on (data x model) meshes: the formula (README, `state_bytes` and
`temp_bytes` below) beside what XLA reports for the compiled step (`.compile().memory_analysis()`), and
optionally steps/s on simulated CPU devices:

  python benchmarks/bench_model_parallel.py [--devices 4 --d 256 --widths 4096,16384 --batch 1024 --k 32]
  python benchmarks/bench_model_parallel.py --time --widths 16384 --rounds 5   # + steps/s per mesh
  python benchmarks/bench_model_parallel.py --hlo --widths 4096   # + the collectives of each compiled step

The state is what the loop's step holds (`aejax.build.make_init_fn`: params, Adam's mu and nu, the "sae_state"
collection, step, rng), in float32 / int32. Simulated CPU devices share the host's cores and memory, so steps/s
says whether the sharded step runs, not how fast a GPU/TPU mesh would be.
"""

import argparse
import collections
import os
import re
import time

# Before jax is imported: simulated CPU devices.
ap = argparse.ArgumentParser()
ap.add_argument("--devices", type=int, default=4)
ap.add_argument("--d", type=int, default=256)
ap.add_argument("--widths", default="4096,16384")
ap.add_argument("--batch", type=int, default=1024)
ap.add_argument("--k", type=int, default=32)
ap.add_argument("--time", action="store_true", help="also time steps/s per mesh (interleaved rounds)")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
ap.add_argument("--hlo", action="store_true", help="also list the collectives (shape, kind) of each compiled step")
args = ap.parse_args()
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", args.devices)

import numpy as np  # noqa: E402
import optax  # noqa: E402

from aejax import build, sharding  # noqa: E402
from aejax import train_step as ts  # noqa: E402
from aejax.data.batch import Batch  # noqa: E402
from aejax.models import get_model  # noqa: E402
from aejax.objectives import sae as sae_objective  # noqa: E402

F32 = 4


def state_bytes(n: int, d: int, m: int, moments: int = 2) -> int:
    """Per device: params (W_enc, W_dec, b_enc split over the model axis M; b_dec whole) times (1 + Adam's
    moments), the sae_state (examples_since_fired [n/M] int32; data_centre [d], input_scale, statistics_ready),
    Adam's count, step and rng."""
    params = F32 * ((2 * d * n + n) // m + d)
    sae_state = F32 * (n // m + d + 1) + 1
    return (1 + moments) * params + sae_state + 4 + 4 + 8


def batch_bytes(b: int, d: int, data: int) -> int:
    """Per device: the batch's rows [B/D, d] float32 (the labels are not an argument: the SAE loss does not read
    them and jit prunes unused arguments)."""
    return F32 * d * (b // data)


def temp_bytes(n: int, d: int, b: int, data: int, m: int, buffers: int = 4) -> int:
    """Per device, roughly: the gradient and the Adam update of the split parameters (2 x params / M), and
    `buffers` activations of [B/D, n/M] float32 (pre-activations, code, their gradients)."""
    return 2 * F32 * (2 * d * n + n) // m + buffers * F32 * (b // data) * (n // m)


def build_step(mesh, n):
    model = get_model("topk", input_shape=(args.d,), n_latents=n, k=args.k, b_dec_init="mean")
    objective = sae_objective.from_config(None, model, None)
    tx = optax.adam(1e-3)
    state = build.make_init_fn(model, tx, (args.d,), mesh, jax.random.key(0))()
    shardings = sharding.TreeShardings.of(state)
    step = ts.make_train_step(objective.loss_fn, tx, mesh, project=objective.project, state_sharding=shardings)
    x = np.random.default_rng(0).normal(size=(args.batch, args.d)).astype(np.float32)
    batch = sharding.to_global(Batch(x, np.zeros(args.batch, np.int32)), mesh)
    return step, state, batch


def mib(v):
    return f"{v / 2**20:8.2f}"


def main():
    n_dev = args.devices
    meshes = [(n_dev, 1), (1, n_dev)] + ([(2, n_dev // 2)] if n_dev >= 4 and n_dev % 2 == 0 else [])
    meshes = [(1, 1)] + meshes
    print(f"d={args.d} batch={args.batch} k={args.k}, Adam, float32; MiB per device unless said")
    print(
        "| n | data x model | state formula | arguments XLA - (state + batch) formula, bytes "
        "| output XLA - state, bytes | temp formula | temp XLA |"
    )
    print("|---|---|---|---|---|---|---|")
    runs = {}
    for n in (int(w) for w in args.widths.split(",")):
        for data, model in meshes:
            mesh = sharding.make_mesh(jax.devices()[: data * model], data=data, model=model)
            step, state, batch = build_step(mesh, n)
            compiled = step.lower(state, batch).compile()
            mem = compiled.memory_analysis()
            if args.hlo:  # e.g. "f32[256,128]{0,1} all-gather": a [B/D, n] operand here would gather the codes
                ops = re.findall(
                    r"= (\(.+?\)|\S+) (all-gather|all-reduce|reduce-scatter|all-to-all)(?:-start)?\(",
                    compiled.as_text(),
                )
                print(f"  {data} x {model}:", dict(collections.Counter(f"{s} {k}" for s, k in ops)))
            s, bb = state_bytes(n, args.d, model), batch_bytes(args.batch, args.d, data)
            t = temp_bytes(n, args.d, args.batch, data, model)
            print(
                f"| {n} | {data} x {model} | {mib(s)} | {mem.argument_size_in_bytes - s - bb} "
                f"| {mem.output_size_in_bytes - s} | {mib(t)} | {mib(mem.temp_size_in_bytes)} |"
            )
            runs[(n, data, model)] = (step, state, batch)
    if not args.time:
        return
    times = {key: [] for key in runs}
    for key, (step, state, batch) in runs.items():  # compile and warm up
        state, _ = step(state, batch)
        runs[key] = (step, jax.block_until_ready(state), batch)
    for _ in range(args.rounds):
        for key in np.random.default_rng(len(times[next(iter(times))])).permutation(len(runs)):
            key = list(runs)[key]
            step, state, batch = runs[key]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
            times[key].append(args.steps / (time.perf_counter() - t0))
            runs[key] = (step, state, batch)
    print("\n| n | data x model | steps/s (median of rounds) |\n|---|---|---|")
    for (n, data, model), v in times.items():
        print(f"| {n} | {data} x {model} | {np.median(v):.2f} |")


if __name__ == "__main__":
    main()
