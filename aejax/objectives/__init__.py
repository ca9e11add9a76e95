"""Training objectives, one per module, found by name: `config.objective = "autoencoder"` uses
`aejax.objectives.autoencoder`.

An objective module defines `from_config(config, model, likelihood) -> Objective`. Adding an objective (PSD,
the ELBO of a VAE, ...) is adding a module.
"""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, NamedTuple


class Objective(NamedTuple):
    """What the train loop needs from an objective.

    Attributes:
      loss_fn: (params, batch, rng, step) -> ([] loss, {name: [] metric}); differentiated w.r.t. params.
      eval_fn: (params, batch) -> {"sq_err": [B], "nll": [B], "z": [B, K], ...} per-example evaluation.
      project: optional params -> params applied after every update (e.g. unit-norm dictionary columns).
    """

    loss_fn: Callable
    eval_fn: Callable
    project: Callable[[Any], Any] | None = None


def known_objectives() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def from_config(config, model, likelihood) -> Objective:
    """Builds `aejax.objectives.<config.objective>.from_config(config, model, likelihood)`.

    Raises:
      KeyError: for an unknown objective name, listing the known ones.
    """
    name = config.get("objective", "autoencoder")
    if name not in known_objectives():
        raise KeyError(f"Unknown objective {name!r}. Known objectives: {', '.join(known_objectives())}.")
    return importlib.import_module(f"{__name__}.{name}").from_config(config, model, likelihood)
