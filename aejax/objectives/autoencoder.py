"""The autoencoder objective: decoder NLL of the clean x given the (optionally corrupted) input, plus penalties.

loss = mean_B [ -log p_decoder(x | f(x~)) ] + sum_k weight_k(step) * penalty_k

With no corruption x~ = x (the plain autoencoder); with one it is the denoising criterion of Vincent et al.
(2008). Penalties follow the contract of `aejax.regularizers`.
"""

import inspect
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

from aejax import corruptions, regularizers
from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood, squared_error
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import NLL, OBJECTIVES, SQ_ERR, EvalOutput, Objective

# corrupt(rng, x) -> (x_tilde, weights or None): weights reweight the NLL per component (emphasized DAE).
CorruptFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]


def bind_model_state(model: AbstractAutoencoder, model_state) -> Callable[..., Any]:
    """`apply_fn(variables, *args, **kwargs)`: `model.apply` with the non-"params" collections (BatchNorm
    statistics) of `model_state` bound, in evaluation mode unless `train=True` is passed. Regularizers get it
    as their `apply_fn`, so a penalty sees the model the way evaluation does (no dropout, running statistics)."""

    def apply_fn(variables, *args, **kwargs):
        return model.apply({**model_state, **variables}, *args, **kwargs)

    return apply_fn


def apply_train(model: AbstractAutoencoder, params, model_state, x: jax.Array, rng: jax.Array, **kwargs):
    """The forward pass in training mode: (AutoencoderOutput, updated model_state).

    Dropout draws from `rng`; the mutable collections of `model_state` (BatchNorm statistics) are updated from
    the batch. With no such collections the state comes back unchanged. `kwargs` go to the model's `__call__`
    (e.g. `mask=` of a sequence model).
    """
    variables = {"params": params, **model_state}
    if not model_state:
        return model.apply(variables, x, train=True, rngs={"dropout": rng}, **kwargs), model_state
    return model.apply(variables, x, train=True, rngs={"dropout": rng}, mutable=list(model_state), **kwargs)


def make_loss_fn(
    model: AbstractAutoencoder,
    likelihood: Likelihood,
    *,
    corrupt: CorruptFn | None = None,
    penalty: Callable | None = None,
):
    """Returns loss_fn(params, model_state, batch, rng, step) -> ([] loss in nats per example,
    (metrics, new model_state)).

    Metrics: "loss/nll" (the reconstruction term) and, from the penalty, "reg/<name>" (unweighted values).
    """

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        rng_corrupt, rng_penalty = jax.random.split(rng)
        x_in, weights = (batch.x, None) if corrupt is None else corrupt(rng_corrupt, batch.x)
        # outputs.input is x~: a penalty at the model input (DAE + CAE) is taken where the encoder was applied.
        outputs, new_model_state = apply_train(model, params, model_state, x_in, jax.random.fold_in(rng, 2))
        nll = likelihood.nll(outputs.decoder_output, batch.x, weights).mean()
        metrics = {"loss/nll": nll}
        total = nll
        if penalty is not None:
            reg, reg_metrics = penalty(
                step=step,
                params=params,
                apply_fn=bind_model_state(model, model_state),
                batch=batch,
                outputs=outputs,
                rng=rng_penalty,
            )
            total = total + reg
            metrics.update(reg_metrics)
        return total, (metrics, new_model_state)

    return loss_fn


def make_eval_fn(model: AbstractAutoencoder, likelihood: Likelihood):
    """Returns eval_fn(params, model_state, batch, rng) -> EvalOutput on clean inputs, evaluation mode:
    metrics "sq_err" [B] (squared error of the mean reconstruction summed over the input's components) and
    "nll" [B] (nats); code [B, K]."""

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        del rng  # deterministic encoder and decoder
        outputs = model.apply({"params": params, **model_state}, batch.x)
        recon = likelihood.mean(outputs.decoder_output)
        metrics = {
            SQ_ERR: squared_error(recon, batch.x),
            NLL: likelihood.nll(outputs.decoder_output, batch.x),
        }
        return EvalOutput(metrics=metrics, code=outputs.code)

    return eval_fn


def corruption_from_config(cfg: ml_collections.ConfigDict) -> CorruptFn | None:
    """`cfg.name` in `corruptions.CORRUPTIONS` or "none"; the corruption's keyword hyperparameters
    (sigma, nu, low, high) are taken from `cfg` by name. `cfg.emphasis_alpha`/`cfg.emphasis_beta` weight the
    NLL of corrupted / clean components (Vincent et al. 2010); both 1.0 is the plain denoising criterion.

    Raises:
      KeyError: for an unknown corruption name.
    """
    if cfg.name in ("none", "", None):
        return None
    fn = corruptions.CORRUPTIONS.get(cfg.name)
    keys = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    hparams = {k: cfg[k] for k in keys if k in cfg}
    alpha, beta = cfg.get("emphasis_alpha", 1.0), cfg.get("emphasis_beta", 1.0)
    emphasized = (alpha, beta) != (1.0, 1.0)

    def corrupt(rng, x):
        x_tilde, mask = fn(rng, x, **hparams)
        weights = corruptions.emphasized_weights(mask, alpha=alpha, beta=beta) if emphasized else None
        return x_tilde, weights

    return corrupt


def penalty_from_config(cfg: ml_collections.ConfigDict):
    """`cfg` maps regularizer name -> {weight, [warmup_steps], **hparams}; None when empty.

    A `warmup_steps` > 0 ramps the weight linearly from 0 (an optax schedule), e.g. a KL or sparsity warm-up.
    """
    terms = []
    for name, term in cfg.items():
        term = dict(term)
        weight, warmup = term.pop("weight"), term.pop("warmup_steps", 0)
        if warmup:
            weight = optax.linear_schedule(0.0, weight, warmup)
        terms.append(regularizers.Term(name, weight, term))
    return regularizers.combine(*terms) if terms else None


@OBJECTIVES.register("autoencoder")
def from_config(
    config: ml_collections.ConfigDict, model: AbstractAutoencoder, likelihood: Likelihood
) -> Objective:
    """The (denoising, regularized) autoencoder objective of a config (`config.corruption`,
    `config.regularizers`)."""
    loss_fn = make_loss_fn(
        model,
        likelihood,
        corrupt=corruption_from_config(config.corruption),
        penalty=penalty_from_config(config.regularizers),
    )
    return Objective(loss_fn, make_eval_fn(model, likelihood))
