"""Training objectives, one per module, registered by name: `config.objective = "autoencoder"` uses the
factory that `aejax/objectives/autoencoder.py` registered with `@OBJECTIVES.register("autoencoder")`.

A factory is `from_config(config, model, likelihood) -> Objective`. Adding an objective (PSD, the ELBO of a VAE,
...) is adding a module.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from aejax.registry import Registry


class Objective(NamedTuple):
    """What the train loop needs from an objective (contracts in `aejax.train_step`).

    Attributes:
      loss_fn: (params, model_state, batch, rng, step) -> ([] loss, ({name: [] metric}, new model_state));
        differentiated with respect to params.
      eval_fn: (params, model_state, batch, rng) -> EvalOutput(metrics {name: [B]}, code [B, K]) on a batch
        in evaluation mode; every metric is logged and averaged into results.json.
      project: optional params -> params applied after every update (e.g. unit-norm dictionary columns).
    """

    loss_fn: Callable
    eval_fn: Callable
    project: Callable[[Any], Any] | None = None


OBJECTIVES = Registry("objective", package=__name__)


def from_config(config, model, likelihood) -> Objective:
    """Builds the objective registered under `config.objective` (default "autoencoder").

    Raises:
      KeyError: for an unknown objective name, listing the known ones.
    """
    return OBJECTIVES.get(config.get("objective", "autoencoder"))(config, model, likelihood)
