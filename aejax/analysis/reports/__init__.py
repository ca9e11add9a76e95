"""Per-run reports: what shows a model's regularizer working, written at the end of a run.

`config.analysis.reports = "sparsity,contractive"` runs `aejax.analysis.reports.sparsity.report(ctx)` and
`aejax.analysis.reports.contractive.report(ctx)` after training; each writes its figures into `ctx.workdir` and
returns numbers that go into results.json. Adding a report is adding a module that defines `report`.
"""

import dataclasses
import importlib
import pkgutil
from typing import Any

import ml_collections

from aejax.data.datasets import Split
from aejax.likelihoods import Likelihood
from aejax.models.base import AbstractAutoencoder


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a report may read.

    Attributes:
      config: the run's config.
      workdir: where figures go.
      model: the trained model (apply with `{"params": params}`).
      likelihood: the decoder likelihood (its `mean` maps decoder outputs to reconstructions).
      params: trained parameters, host (numpy) arrays.
      train_split, test_split: the data, images [N, H, W, C] float32.
      eval: per-example test outputs of the objective's eval_fn: "sq_err" [N], "nll" [N], "z" [N, K].
    """

    config: ml_collections.ConfigDict
    workdir: str
    model: AbstractAutoencoder
    likelihood: Likelihood
    params: Any
    train_split: Split
    test_split: Split
    eval: dict


def known_reports() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(names: str, ctx: RunContext) -> dict:
    """Runs the comma-separated reports; returns {"<report>/<key>": value}.

    Raises:
      KeyError: for an unknown report name, listing the known ones.
    """
    out = {}
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in known_reports():
            raise KeyError(f"Unknown report {name!r}. Known reports: {', '.join(known_reports())}.")
        result = importlib.import_module(f"{__name__}.{name}").report(ctx)
        out.update({f"{name}/{k}": v for k, v in result.items()})
    return out
