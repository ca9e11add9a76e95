"""Hamming-ball lookup against a linear scan as the database grows (Salakhutdinov & Hinton 2009, sec. 4.3).

Semantic hashing's speed claim is that probing the addresses within radius r of a query costs
sum_{i <= r} C(b, i) table look-ups however large the database is, while a scan costs O(N). mnist5k has only
4,000 training digits, so this measures both on databases of N b-bit codes for N up to 256,000: the trained
hashing autoencoder's codes of the 4,000 training digits, followed by uniformly random codes (these fill other
addresses, so the ball retrieves about as many items as on the real database and the cost measured is the
probing, not the size of the answer). Queries are the codes of the first 100 test digits. Each time is the median
of interleaved repeats on a shared 2-core CPU: noisy, compare orders of magnitude.

    python -m experiments.salakhutdinov_hinton_2009.speed --run=/tmp/sh09/hashing_bits32
"""

import argparse
import json
import os
import time

import numpy as np

from aejax import runs
from aejax.analysis import retrieval
from aejax.analysis.reports.retrieval import model_codes

SIZES = (4_000, 16_000, 64_000, 256_000)
NUM_QUERIES, REPEATS, KNN = 100, 5, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished configs/hashing.py workdir")
    args = parser.parse_args()
    run = runs.load_run(args.run)
    # A Run has the model and variables a report reads.
    db_bits = model_codes(run, run.train_split.x).code.astype(np.uint8)
    q_bits = model_codes(run, run.test_split.x[:NUM_QUERIES]).code.astype(np.uint8)
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        extra = rng.integers(0, 2, size=(max(n - len(db_bits), 0), db_bits.shape[1]), dtype=np.uint8)
        db = np.concatenate([db_bits, extra])[:n]
        table = retrieval.HashTable(db)
        fns = {f"r{r}": (lambda r=r, t=table: t.lookup(q_bits, r)) for r in (0, 1, 2)}
        fns["scan"] = lambda db=db: np.argpartition(retrieval.hamming_distances(q_bits, db), KNN - 1, axis=1)[
            :, :KNN
        ]
        times = {k: [] for k in fns}
        for _ in range(REPEATS):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        row = {"N": n, **{f"{k}_queries_per_s": NUM_QUERIES / float(np.median(t)) for k, t in times.items()}}
        row["r2_mean_retrieved"] = float(np.mean([len(f) for f in table.lookup(q_bits, 2)]))
        rows.append(row)
        print(row, flush=True)
    lines = ["| database N | ball r=0 | ball r=1 | ball r=2 (items retrieved) | Hamming scan (top 100) |"]
    lines.append("|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['N']:,} | {r['r0_queries_per_s']:,.0f} | {r['r1_queries_per_s']:,.0f} | "
            f"{r['r2_queries_per_s']:,.0f} ({r['r2_mean_retrieved']:.0f}) | {r['scan_queries_per_s']:,.0f} |"
        )
    print("\n".join(lines))
    with open(os.path.join(args.run, "speed_vs_size.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
