"""The autoencoder objective: decoder NLL of the clean x given the (optionally corrupted) input, plus penalties.

loss = mean_B [ -log p_decoder(x | f(x~)) ] + sum_k weight_k(step) * penalty_k

With no corruption x~ = x (the plain autoencoder); with one it is the denoising criterion of Vincent et al.
(2008). Penalties follow the contract of `aejax.regularizers`.
"""

import inspect
from collections.abc import Callable

import jax
import ml_collections
import optax

from aejax import corruptions, regularizers
from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood, squared_error
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import Objective

# corrupt(rng, x) -> (x_tilde, weights or None): weights reweight the NLL per component (emphasized DAE).
CorruptFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]


def make_loss_fn(
    model: AbstractAutoencoder,
    likelihood: Likelihood,
    *,
    corrupt: CorruptFn | None = None,
    penalty: Callable | None = None,
):
    """Returns loss_fn(params, batch, rng, step) -> ([] loss in nats per example, metrics).

    Metrics: "loss/nll" (the reconstruction term) and, from the penalty, "reg/<name>" (unweighted values).
    """

    def loss_fn(params, batch: Batch, rng: jax.Array, step: jax.Array):
        rng_corrupt, rng_penalty = jax.random.split(rng)
        x_in, weights = (batch.x, None) if corrupt is None else corrupt(rng_corrupt, batch.x)
        output, aux = model.apply({"params": params}, x_in)
        outputs = (output, {**aux, regularizers.MODEL_INPUT_KEY: x_in})  # penalties at x~ (DAE + CAE)
        nll = likelihood.nll(outputs[0], batch.x, weights).mean()
        metrics = {"loss/nll": nll}
        total = nll
        if penalty is not None:
            reg, reg_metrics = penalty(
                step=step,
                params=params,
                apply_fn=model.apply,
                batch=batch,
                outputs=outputs,
                rng=rng_penalty,
            )
            total = total + reg
            metrics.update(reg_metrics)
        return total, metrics

    return loss_fn


def make_eval_fn(model: AbstractAutoencoder, likelihood: Likelihood):
    """Returns eval_fn(params, batch) -> {"sq_err": [B] squared error summed over pixels of the mean
    reconstruction, "nll": [B] nats, "z": [B, K] codes} on clean inputs."""

    def eval_fn(params, batch: Batch):
        output, aux = model.apply({"params": params}, batch.x)
        recon = likelihood.mean(output)
        return {
            "sq_err": squared_error(recon, batch.x),
            "nll": likelihood.nll(output, batch.x),
            "z": aux["z"],
        }

    return eval_fn


def corruption_from_config(cfg: ml_collections.ConfigDict) -> CorruptFn | None:
    """`cfg.name` in `corruptions.known_corruptions()` or "none"; the corruption's keyword hyperparameters
    (sigma, nu, low, high) are taken from `cfg` by name. `cfg.emphasis_alpha`/`cfg.emphasis_beta` weight the
    NLL of corrupted / clean components (Vincent et al. 2010); both 1.0 is the plain denoising criterion.

    Raises:
      KeyError: for an unknown corruption name.
    """
    if cfg.name in ("none", "", None):
        return None
    fn = corruptions.get_corruption(cfg.name)
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
