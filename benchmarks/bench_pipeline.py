"""Input-pipeline throughput on mnist5k; prints a markdown table.

Run by hand: `python benchmarks/bench_pipeline.py [--data_dir DIR]` (default: a fresh temporary
directory, so the first `load_split` includes preparing the dataset).

Measures
  * `load_split("mnist5k", "train")` wall time: first call (prepare + read) and cached (read only);
  * `InMemoryLoader.batch` + `jax.device_put` (blocked until ready) at batch 128 and 256;
  * `GrainLoader.batch` over the TFDS array_record data source at batch 128 and 256.
"""

import argparse
import shutil
import tempfile
import time

import jax
import tensorflow_datasets as tfds

from aejax.data import GrainLoader, InMemoryLoader, load_split
from aejax.data.transforms import scale


def examples_per_second(loader, steps: int, transfer: bool) -> float:
    def run(first: int) -> None:
        for step in range(first, first + steps):
            batch = loader.batch(step)
            if transfer:
                jax.block_until_ready(jax.device_put(batch))

    run(0)  # warm-up: first permutation, first transfer
    start = time.perf_counter()
    run(steps)
    return steps * loader.global_batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: fresh tmp dir)")
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="aejax_bench_")
    try:
        rows = measure(data_dir)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir)
    print(f"\njax {jax.__version__}, devices: {jax.devices()}\n")
    print("| measurement | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def measure(data_dir: str) -> list[tuple[str, str]]:
    """Returns (measurement, value) rows."""
    rows = []
    start = time.perf_counter()
    train = load_split("mnist5k", "train", data_dir=data_dir)
    rows.append(("load_split mnist5k train, first call", f"{time.perf_counter() - start:.2f} s"))
    start = time.perf_counter()
    train = load_split("mnist5k", "train", data_dir=data_dir)
    rows.append(("load_split mnist5k train, cached", f"{time.perf_counter() - start:.2f} s"))

    for batch_size in (128, 256):
        loader = InMemoryLoader(scale(train.x), train.labels, global_batch_size=batch_size, seed=0)
        for transfer in (False, True):
            what = "batch + device_put" if transfer else "batch only"
            rate = examples_per_second(loader, steps=60, transfer=transfer)
            rows.append((f"InMemoryLoader {what}, B={batch_size}", f"{rate:,.0f} ex/s"))

    source = tfds.data_source("mnist5k", split="train", data_dir=data_dir)
    for batch_size in (128, 256):
        grain_loader = GrainLoader(source, global_batch_size=batch_size, seed=0)
        rate = examples_per_second(grain_loader, steps=10, transfer=False)
        rows.append((f"GrainLoader (TFDS data source), B={batch_size}", f"{rate:,.0f} ex/s"))
    return rows


if __name__ == "__main__":
    main()
