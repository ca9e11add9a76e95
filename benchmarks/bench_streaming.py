"""Streamed activation stores: peak RSS of a run on a store several times what it may hold, and examples/s of the
streaming loader against the in-memory loader on a store that fits (run by hand; results in the README).

  python benchmarks/bench_streaming.py write --out=/work/big/store8g --rows=16777216     # 8 GiB of d = 128
  python benchmarks/bench_streaming.py rss --store=/work/big/store8g --steps=256         # peak RSS, streamed
  python benchmarks/bench_streaming.py write --out=/work/big/store512m --rows=1048576    # a store that fits
  python benchmarks/bench_streaming.py speed --store=/work/big/store512m --rounds=3 --steps=128
  python benchmarks/bench_streaming.py reads --store=/work/big/store8g --rounds=3     # how the view reads rows
  python benchmarks/bench_streaming.py kill --store=/work/big/store512m --steps=128   # SIGKILL at 64, resume

The vectors are sparse combinations of a random dictionary plus noise (K_ACTIVE of N_ATOMS unit atoms with
exponential coefficients, Gaussian noise of std NOISE per component), so the TopK SAE learns something. Every
run is `launch.py --config=configs/sae.py:store` in a subprocess (TopK, 128 -> 2048 latents, k = 32, batch 4096);
its peak RSS is the child's `ru_maxrss` (`os.wait4`), its examples/s the loop's median over log windows
(results.json). `speed` alternates memory and stream runs, round by round, and reports medians.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_ATOMS, K_ACTIVE, NOISE, D = 1024, 8, 0.05, 128


def write(out: str, rows: int, test_rows: int, seed: int = 0) -> None:
    from aejax.data.activation_store import ActivationWriter

    if os.path.exists(out):
        raise SystemExit(f"{out} exists; delete it first.")
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(N_ATOMS, D)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    w = ActivationWriter(out, d=D, shard_rows=65536, source={"framework": "bench_streaming", "seed": seed})
    t0 = time.perf_counter()
    for split, n in (("train", rows), ("test", test_rows)):
        for start in range(0, n, 65536):
            b = min(65536, n - start)
            idx = rng.integers(0, N_ATOMS, (b, K_ACTIVE))
            coef = rng.exponential(1.0, (b, K_ACTIVE)).astype(np.float32)
            x = NOISE * rng.standard_normal((b, D), dtype=np.float32)
            for j in range(K_ACTIVE):
                x += coef[:, j, None] * atoms[idx[:, j]]
            w.append(split, x)
        w.finish(split)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(
        f"wrote {out}: {rows} + {test_rows} rows of d = {D}, {size / 2**30:.2f} GiB "
        f"in {time.perf_counter() - t0:.0f} s"
    )


def _rss_file_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:")) / 1024


def _madvise_reader(store):
    """The view's first design: its own mmap of each shard, fancy-indexed, then MADV_DONTNEED on the mapping so
    the touched pages leave the process's RSS (they stay in the page cache)."""
    import mmap

    maps, arrays = [], []
    for a in store.vector_shards("train"):
        with open(a.filename, "rb") as f:
            maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        arrays.append(np.ndarray(a.shape, a.dtype, buffer=maps[-1], offset=a.offset))
    offsets = np.cumsum([0] + [len(a) for a in arrays])

    def read(index):
        order = np.argsort(index)
        sorted_index = index[order]
        shard = np.searchsorted(offsets, sorted_index, side="right") - 1
        out = np.empty((len(index), store.d), np.float32)
        for i in np.unique(shard):
            rows = shard == i
            out[rows] = arrays[i][sorted_index[rows] - offsets[i]]
            maps[i].madvise(mmap.MADV_DONTNEED)
        result = np.empty_like(out)
        result[order] = out
        return result

    return read


def reads(store_dir: str, rounds: int, batches: int, batch: int) -> None:
    """ms per batch of `batch` random train rows (fresh rows for every method and round, so no method reads what
    another just brought into the page cache), and the growth of the process's file-backed RSS."""
    from aejax.data.activation_store import ActivationStore
    from aejax.data.streaming import StoreView

    store = ActivationStore(store_dir)
    view = StoreView(store, "train")
    methods = {
        "StoreView (os.pread)": view.__getitem__,
        "mmap + MADV_DONTNEED": _madvise_reader(store),
        "memmap, pages kept (ActivationStore.take)": lambda i: store.take("train", i),
    }
    rng = np.random.default_rng(0)
    ms, grew = {m: [] for m in methods}, {m: 0.0 for m in methods}
    for r in range(rounds):
        for name in list(methods)[:: 1 if r % 2 == 0 else -1]:
            before = _rss_file_mib()
            for _ in range(batches):
                index = rng.integers(0, len(view), batch)
                t0 = time.perf_counter()
                methods[name](index)
                ms[name].append(1e3 * (time.perf_counter() - t0))
            grew[name] += _rss_file_mib() - before
    for name in methods:
        print(f"{name}: median {np.median(ms[name]):.1f} ms per batch of {batch}, file-backed RSS grew "
              f"{grew[name]:.0f} MiB over {rounds * batches} batches")  # fmt: skip


def launch(
    store: str, workdir: str, mode: str, steps: int, *, every: int | None = None, kill_at: int | None = None,
    fresh: bool = True, variant: str = "store",
) -> dict | None:  # fmt: skip
    """One training run in a subprocess: its results.json plus peak_rss_gb and wall_s. With `kill_at`, the run is
    killed (SIGKILL) as soon as its checkpoint at that step is on disk, and None is returned."""
    if fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    every = every or steps
    cmd = [
        sys.executable, os.path.join(ROOT, "launch.py"), f"--config=configs/sae.py:{variant}",
        f"--config.dataset=activations:{store}", f"--config.data_loading={mode}",
        f"--config.num_train_steps={steps}", f"--config.eval_every={steps}", f"--config.checkpoint_every={every}",
        f"--workdir={workdir}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT}
    t0 = time.perf_counter()
    with open(workdir + ".log", "a") as log:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if kill_at is not None:
            while not os.path.isdir(os.path.join(workdir, "checkpoints", str(kill_at))) and p.poll() is None:
                time.sleep(0.05)
            p.send_signal(signal.SIGKILL)
        _, status, usage = os.wait4(p.pid, 0)
    if kill_at is not None:
        return None
    if status:
        raise SystemExit(f"{' '.join(cmd)} failed ({status}); see {workdir}.log")
    with open(os.path.join(workdir, "results.json")) as f:
        res = json.load(f)
    res["peak_rss_gb"] = usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    res["wall_s"] = time.perf_counter() - t0
    return res


def kill_resume(store: str, steps: int, every: int, kill_at: int, workdir: str, variant: str = "store") -> None:
    """A streamed run killed with SIGKILL after its checkpoint at `kill_at` and relaunched, against an
    uninterrupted one: the logged losses after the kill (means over log windows of 32 steps, so they differ if any
    batch differs) and the final parameters."""
    from aejax import runs
    from aejax.metric_writer import read_metrics

    launch(store, workdir + "_killed", "stream", steps, every=every, kill_at=kill_at, variant=variant)
    launch(store, workdir + "_killed", "stream", steps, every=every, fresh=False, variant=variant)
    launch(store, workdir + "_whole", "stream", steps, every=every, variant=variant)
    losses = []
    for w in (workdir + "_killed", workdir + "_whole"):
        last = {}
        for row in read_metrics(w):  # a killed run's windows after its checkpoint are logged twice: keep the last
            if "loss" in row:
                last[row["step"]] = row["loss"]
        losses.append({s: v for s, v in last.items() if s > kill_at})
    params = [jax_leaves(runs.load_run(w).state.params) for w in (workdir + "_killed", workdir + "_whole")]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*params, strict=True))
    print(f"losses after the kill at {kill_at}: killed+resumed {losses[0]}, uninterrupted {losses[1]}")
    print(f"max |param difference| at step {steps}: {diff:.3g}")


def jax_leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(a) for a in jax.tree.leaves(jax.device_get(tree))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("write", "rss", "speed", "reads", "kill"))
    ap.add_argument("--every", type=int, default=32)
    ap.add_argument("--kill_at", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--out", default="/work/big/store8g")
    ap.add_argument("--rows", type=int, default=1 << 24)
    ap.add_argument("--test_rows", type=int, default=65536)
    ap.add_argument("--store", default="/work/big/store8g")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/bench_streaming")
    ap.add_argument("--variant", default="store", help="of configs/sae.py; store,runlocal: a tiny SAE (smoke)")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()}")
    if args.what == "write":
        write(args.out, args.rows, args.test_rows)
    elif args.what == "kill":
        kill_resume(args.store, args.steps, args.every, args.kill_at, args.workdir, args.variant)
    elif args.what == "reads":
        reads(args.store, args.rounds, args.batches, args.batch)
    elif args.what == "rss":
        r = launch(args.store, args.workdir + "_rss", "stream", args.steps, variant=args.variant)
        keys = ("num_train", "peak_rss_gb", "examples_per_s", "train_time_s", "wall_s", "sae/fvu", "test_l0")
        print(json.dumps({k: r.get(k) for k in keys}, indent=1))
    else:
        rates = {"memory": [], "stream": []}
        for i in range(args.rounds):
            for mode in ("memory", "stream") if i % 2 == 0 else ("stream", "memory"):
                r = launch(args.store, f"{args.workdir}_{mode}", mode, args.steps, variant=args.variant)
                rates[mode].append(r["examples_per_s"])
                fvu = r.get("sae/fvu", float("nan"))
                print(f"round {i} {mode}: {r['examples_per_s']:.0f} ex/s, peak RSS {r['peak_rss_gb']:.2f} GiB, "
                      f"steps/call {r['steps_per_call']}, fvu {fvu:.3f}", flush=True)  # fmt: skip
        med = {m: float(np.median(v)) for m, v in rates.items()}
        print(f"medians: memory {med['memory']:.0f} ex/s, stream {med['stream']:.0f} ex/s, "
              f"ratio {med['stream'] / med['memory']:.2f}; load {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
