"""Runs the score-matching analysis of DAEs (Alain & Bengio 2014) and prints the README's table.

  python -m experiments.alain_bengio_2014.run                  # the quick variant, about 2-4 min on 2 CPU cores
  python -m experiments.alain_bengio_2014.run --variant=       # the full variant
  python -m experiments.alain_bengio_2014.run --workdir=/tmp/ab14

Equivalent to `python launch.py --config=configs/score_dae.py:quick --workdir=...` followed by the table.
"""

import argparse
import json
import os

from aejax.jobs import score_dae
from configs import score_dae as score_config


def table(r: dict) -> str:
    """Markdown rows: measured number, what the paper / theory says."""
    rows = []
    if "mixture1d/DAE" in r:
        for label in ("DAE", "RCAE"):
            m = r.get(f"mixture1d/{label}")
            if m:
                rows.append(
                    (
                        f"1-D mixture, {label}: rel. RMSE to Tweedie target / corr.",
                        f"{m['rel_rmse_tweedie']:.3f} / {m['corr_tweedie']:.4f}",
                        "-> 0 / 1 (optimal DAE)",
                    )
                )
                rows.append(
                    (
                        f"1-D mixture, {label}: rel. RMSE to true score",
                        f"{m['rel_rmse_true']:.3f}",
                        f"~ Tweedie gap {r['mixture1d/tweedie_gap']:.3f} at this sigma",
                    )
                )
    if "spiral" in r:
        m = r["spiral"]
        rows.append(
            (
                "spiral: median cosine of r(x) - x to the manifold, band 0.08-0.3",
                f"{m['median_cosine']:.4f}",
                "~1 (DL book Fig 14.5)",
            )
        )
        rows.append(
            (
                "spiral: mean ||r(x) - x|| on / off the curve",
                f"{m['norm_on']:.3f} / {m['norm_off']:.3f}",
                "~0 on the manifold",
            )
        )
    for row in r.get("sweep", []):
        rows.append(
            (
                f"sweep sigma={row['sigma']}: bias / seed std / Tweedie gap (rel.)",
                f"{row['rel_bias']:.3f} / {row['rel_std']:.3f} / {row['tweedie_gap']:.3f}",
                "bias falls, variance rises as sigma -> 0",
            )
        )
    for name in ("1d", "spiral"):
        for k, v in r.get(f"sampling/{name}", {}).items():
            rows.append(
                (f"sampling {name}: energy distance to held-out, {k.removeprefix('energy/')}", f"{v:.4f}", "")
            )
    lines = ["| quantity | measured | expected |", "|---|---|---|"]
    return "\n".join([*lines, *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="quick")
    parser.add_argument("--workdir", default="runs/alain_bengio_2014")
    args = parser.parse_args()
    results = score_dae.train_and_evaluate(score_config.get_config(args.variant), args.workdir)
    print(table(results))
    print(f"\nFigures and results.json in {os.path.abspath(args.workdir)}; {results['train_time_s']:.0f} s.")
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table(json.loads(json.dumps(results))) + "\n")


if __name__ == "__main__":
    main()
