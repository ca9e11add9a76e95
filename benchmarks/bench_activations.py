"""Extraction speed: rows/s of `aejax.activations.extract_split` (jitted capture, host copy, .npy shards written)
for layers of a trained run, interleaved, median of the repeats, compilation excluded (one warm-up per layer).

  python benchmarks/bench_activations.py --workdir=runs/mnist_ae [--layers=encoder_0,encoder_1] [--repeats=5]
      [--tile=5] [--batch_size=256]

The run's train split is tiled `--tile` times (so the timed loop is long enough to measure); each timed pass
writes a fresh store in a temporary directory. Prints a markdown table. Run by hand.
"""

import argparse
import statistics
import tempfile
import time

import numpy as np

from aejax import activations, runs
from aejax.data.activation_store import ActivationWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--layers", default="encoder_0,encoder_1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tile", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    run = runs.load_run(args.workdir)
    data = run.train_split._replace(x=np.concatenate([run.train_split.x] * args.tile), mask=None)
    shapes = activations.layer_shapes(run.model, run.variables, data.x)
    layers = args.layers.split(",")
    times = {layer: [] for layer in layers}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats + 1):  # pass 0 compiles
            for layer in layers:
                writer = ActivationWriter(f"{tmp}/{layer}-{i}", d=shapes[layer][-1], dtype=args.dtype)
                start = time.perf_counter()
                activations.extract_split(run.model, run.variables, layer, data, writer, "train",
                                          batch_size=args.batch_size)  # fmt: skip
                if i:
                    times[layer].append(time.perf_counter() - start)
    print(
        f"| layer | d | rows | median s | rows/s ({args.dtype}, batch {args.batch_size}) |\n|---|---|---|---|---|"
    )
    for layer in layers:
        t = statistics.median(times[layer])
        print(f"| {layer} | {shapes[layer][-1]} | {len(data.x)} | {t:.3f} | {len(data.x) / t:,.0f} |")


if __name__ == "__main__":
    main()
