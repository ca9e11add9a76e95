"""Training objectives, one per module, registered by name: `config.objective = "autoencoder"` uses the
factory that `aejax/objectives/autoencoder.py` registered with `@OBJECTIVES.register("autoencoder")`.

A factory is `from_config(config, model, likelihood) -> Objective`. Adding an objective (PSD, the ELBO of a VAE,
...) is adding a module. The per-example metric names an objective's eval returns are declared here once
(`SQ_ERR`, `NLL`, ...): reports, plots and jobs read these constants, so a rename fails at import, not as a
silently empty plot.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import ml_collections

from aejax.registry import Registry

# Per-example evaluation metrics ([B] each in `EvalOutput.metrics`; "test_<name>" means in results.json).
SQ_ERR = "sq_err"  # squared error of the mean reconstruction, summed over the input's components
NLL = "nll"  # decoder negative log-likelihood, nats
MSE = "mse"  # sq_err per valid value (sequences)
ELBO = "elbo"  # evidence lower bound, nats (Kingma & Welling 2014)
IWAE = "iwae"  # importance-weighted bound, nats (Burda et al. 2016)
RECON_NLL = "recon_nll"  # -E_q log p(x | z), nats
KL = "kl"  # KL(q(z | x) || p(z)), nats
ENERGY = "energy"  # PSD energy E(x, h*), units of x squared
PRED_SQ_ERR = "pred_sq_err"  # PSD ||f(x) - h*||^2
CODE_SQ_NORM = "code_sq_norm"  # PSD ||h*||^2
ACTIVE = "active"  # PSD fraction of non-zero code entries
ERROR = "error"  # classifier: 1 if misclassified, else 0
XENT = "xent"  # classifier: softmax cross-entropy, nats
NATS_PER_BYTE = "nats_per_byte"  # language model: next-byte cross-entropy, nats per predicted byte
BITS_PER_BYTE = "bits_per_byte"  # the same in bits (nats / ln 2)

# How the loop and the trainer name a metric in logs and results.json.
EVAL_PREFIX = "eval/"  # metrics.jsonl / TensorBoard: "eval/<metric>" means over the eval split
TEST_PREFIX = "test_"  # results.json: "test_<metric>" means over the test split
LOSS = "loss"  # the logged training loss (train_step)


def eval_key(metric: str) -> str:
    """ "eval/<metric>": the logged name of an evaluation metric's mean."""
    return EVAL_PREFIX + metric


def test_key(metric: str) -> str:
    """ "test_<metric>": the results.json name of a metric's mean over the test split."""
    return TEST_PREFIX + metric


@flax.struct.dataclass
class EvalOutput:
    """Per-example evaluation of a batch.

    Attributes:
      metrics: {name: [B]} per-example numbers (e.g. SQ_ERR: squared error summed over pixels, NLL: nats);
        the loop logs every one as "eval/<name>" and the trainer averages it into results.json as
        "test_<name>".
      code: [B, K] the codes of the batch (for plots, probes and reports).
    """

    metrics: dict[str, jax.Array]
    code: jax.Array


class Objective(NamedTuple):
    """What the train loop needs from an objective (contracts in `aejax.train_step`).

    Attributes:
      loss_fn: (params, model_state, batch, rng, step) -> ([] loss, ({name: [] metric}, new model_state));
        differentiated with respect to params.
      eval_fn: (params, model_state, batch, rng) -> EvalOutput(metrics {name: [B]}, code [B, K]) on a batch
        in evaluation mode; every metric is logged and averaged into results.json.
      project: optional params -> params applied after every update (e.g. unit-norm dictionary columns).
      after_update: optional (TrainState, Batch, optimizer) -> TrainState applied inside the jitted step after
        the update and `project`, for changes that need the batch or the optimizer state (SAE dead-latent
        resampling, `aejax.sae_resample`); it decides itself on which steps to act (`lax.cond`).
    """

    loss_fn: Callable
    eval_fn: Callable
    project: Callable[[Any], Any] | None = None
    after_update: Callable[..., Any] | None = None


OBJECTIVES = Registry("objective", package=__name__)


def refuse_unsupported(config: ml_collections.ConfigDict, objective: str) -> None:
    """For objectives that take no penalties and no corruption: refuse a config that sets either, before any
    compute, rather than ignore it (`config.regularizers` and `config.corruption` are read by "autoencoder").

    Raises:
      ValueError: naming the configured regularizers (or corruption) and the objective.
    """
    regs = sorted(config.get("regularizers", None) or {})
    if regs:
        raise ValueError(
            f"config.regularizers sets {', '.join(regs)}, but the {objective!r} objective applies no "
            'regularizers (only "autoencoder" does); remove them or use objective="autoencoder".'
        )
    corruption = config.get("corruption", None)
    name = corruption.get("name", "none") if corruption is not None else "none"
    if name not in ("none", "", None):
        raise ValueError(
            f"config.corruption.name={name!r}, but the {objective!r} objective corrupts no inputs (only "
            '"autoencoder" does); set corruption.name="none" or use objective="autoencoder".'
        )


def from_config(config, model, likelihood) -> Objective:
    """Builds the objective registered under `config.objective` (default "autoencoder").

    Raises:
      KeyError: for an unknown objective name, listing the known ones.
      ValueError: for options the objective cannot honour (see the objective's factory).
    """
    return OBJECTIVES.get(config.get("objective", "autoencoder"))(config, model, likelihood)
