"""Per-run reports: what shows a model's regularizer working, written at the end of a run or on a finished run
(`python launch.py --workdir=DIR --eval_only`).

`config.analysis.reports = "sparsity,contractive"` runs the reports registered as "sparsity" and "contractive"
(`@REPORTS.register(name)` in a module of this package) after training; each writes its figures into
`ctx.workdir` and returns numbers that go into results.json as "<report>/<key>". Adding a report is adding a
module.
"""

import dataclasses
from typing import Any

import ml_collections

from aejax.data.datasets import Split
from aejax.likelihoods import Likelihood
from aejax.loop import EvalResult
from aejax.models.base import AbstractAutoencoder
from aejax.registry import Registry

REPORTS = Registry("report", package=__name__)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a report may read.

    Attributes:
      config: the run's config.
      workdir: where figures go.
      model: the trained model; apply it with `variables` (evaluation mode by default).
      likelihood: the decoder likelihood (its `mean` maps decoder outputs to reconstructions).
      variables: {"params": ..., plus any other collections such as "batch_stats"}, host (numpy) arrays.
      train_split, test_split: the data as the model sees it (transforms applied), x [N, *input_shape].
      eval: the objective's per-example evaluation of the test split (`EvalResult`: metrics {name: [N]},
        code [N, K]).
    """

    config: ml_collections.ConfigDict
    workdir: str
    model: AbstractAutoencoder
    likelihood: Likelihood
    variables: dict[str, Any]
    train_split: Split
    test_split: Split
    eval: EvalResult

    @property
    def params(self):
        """The "params" collection."""
        return self.variables["params"]


def run(names: str, ctx: RunContext) -> dict:
    """Runs the comma-separated reports; returns {"<report>/<key>": value}.

    Raises:
      KeyError: for an unknown report name, listing the known ones.
    """
    out = {}
    for name in filter(None, (n.strip() for n in names.split(","))):
        result = REPORTS.get(name)(ctx)
        out.update({f"{name}/{k}": v for k, v in result.items()})
    return out
