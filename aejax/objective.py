"""The training objective: decoder NLL of the clean x given the (optionally corrupted) input, plus penalties.

loss = mean_B [ -log p_decoder(x | f(x~)) ] + sum_k weight_k(step) * penalty_k

With no corruption x~ = x (the plain autoencoder); with one it is the denoising criterion of Vincent et al.
(2008). Penalties follow the contract of `aejax.regularizers`.
"""

from collections.abc import Callable

import jax

from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood, squared_error
from aejax.models.base import AbstractAutoencoder

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
        outputs = model.apply({"params": params}, x_in)
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
