"""Scalars to TensorBoard event files (tensorboardX, no TensorFlow) and to metrics.jsonl, on host 0 only."""

import json
import os

import jax
import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes `{name: scalar}` at a step to `<workdir>/tb/` and appends a line to `<workdir>/metrics.jsonl`."""

    def __init__(self, workdir: str):
        self._active = jax.process_index() == 0
        if self._active:
            self._tb = SummaryWriter(os.path.join(workdir, "tb"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self._active:
            return
        scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._active:
            self._tb.close()
            self._jsonl.close()


def read_metrics(workdir: str) -> list[dict]:
    """The rows of `<workdir>/metrics.jsonl`; on resume a step may appear twice, the last row wins."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            rows[(row["step"], tuple(sorted(row)))] = row
    return sorted(rows.values(), key=lambda r: r["step"])
