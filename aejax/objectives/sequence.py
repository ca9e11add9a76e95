"""The masked sequence autoencoder objective: decoder NLL of the valid steps only.

loss = mean_B sum_{t < L_b} sum_c -log p(x_{b,t,c} | decoder output), on series [B, T, C] whose valid steps
are `Batch.mask` ([B, T], 1 on the first L_b steps; None: all T). Padding (t >= L_b) has weight 0 and its
values are replaced by zeros before the likelihood, so whatever it holds changes neither the loss, nor its
gradient, nor the evaluation metrics; with the encoder's `seq_lengths` and the reversed decoder
(`aejax.models.sequence`) a padded sequence scores exactly what the same sequence scores alone.

With `config.corruption` (Gaussian noise or masking, `aejax.corruptions`) it is the denoising criterion of
Vincent et al. (2008) on series: the model reads x~ ~ C(x~ | x) (zero on padding) and the NLL is of the clean x;
a teacher-forced recurrent decoder then also reads the corrupted previous values. Evaluation is never corrupted.
"""

import jax
import jax.numpy as jnp
import ml_collections

from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import MSE, NLL, OBJECTIVES, SQ_ERR, EvalOutput, Objective, refuse_unsupported
from aejax.objectives.autoencoder import CorruptFn, apply_train, corruption_from_config


def masked_terms(
    likelihood: Likelihood, output: jax.Array, x: jax.Array, mask: jax.Array | None
) -> dict[str, jax.Array]:
    """Per-sequence terms of decoder output [B, T, C] against targets x [B, T, C] with valid steps mask [B, T]
    (None: every step).

    Returns:
      {"nll": [B] nats summed over valid steps and channels, "sq_err": [B] squared error of the mean
      reconstruction summed over valid steps and channels, "mse": [B] sq_err / (L_b C), per valid value}.
    """
    mask = jnp.ones(x.shape[:2], x.dtype) if mask is None else mask.astype(x.dtype)
    weights = jnp.broadcast_to(mask[..., None], x.shape)  # [B, T, C]
    x = jnp.where(weights > 0, x, 0.0)
    output = jnp.where(weights > 0, output, 0.0)
    sq = jnp.square(likelihood.mean(output) - x) * weights
    sq_err = sq.reshape(len(x), -1).sum(axis=1)
    return {
        NLL: likelihood.nll(output, x, weights),
        SQ_ERR: sq_err,
        MSE: sq_err / weights.reshape(len(x), -1).sum(axis=1),
    }


def make_loss_fn(model: AbstractAutoencoder, likelihood: Likelihood, corrupt: CorruptFn | None = None):
    """loss_fn(params, model_state, batch, rng, step) -> ([] mean masked NLL, ({"loss/nll", "loss/mse"}, state)),
    the model in training mode (teacher forcing when the model uses it), reading corrupt(rng, x) if given."""

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        del step
        x_in = batch.x
        if corrupt is not None:
            rng, rng_corrupt = jax.random.split(rng)
            x_in, _ = corrupt(rng_corrupt, batch.x)
            if batch.mask is not None:  # padding stays zero
                x_in = x_in * batch.mask[..., None].astype(x_in.dtype)
        outputs, new_state = apply_train(model, params, model_state, x_in, rng, mask=batch.mask)
        terms = masked_terms(likelihood, outputs.decoder_output, batch.x, batch.mask)
        nll = terms[NLL].mean()
        return nll, ({"loss/nll": nll, "loss/mse": terms[MSE].mean()}, new_state)

    return loss_fn


def make_eval_fn(model: AbstractAutoencoder, likelihood: Likelihood):
    """eval_fn(params, model_state, batch, rng) -> EvalOutput(metrics {"nll", "sq_err", "mse"} [B], code [B, K]),
    evaluation mode (a recurrent decoder runs free)."""

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        del rng
        outputs = model.apply({"params": params, **model_state}, batch.x, mask=batch.mask)
        metrics = masked_terms(likelihood, outputs.decoder_output, batch.x, batch.mask)
        return EvalOutput(metrics=metrics, code=outputs.code)

    return eval_fn


@OBJECTIVES.register("sequence")
def from_config(
    config: ml_collections.ConfigDict, model: AbstractAutoencoder, likelihood: Likelihood
) -> Objective:
    """The masked sequence objective, denoising with `config.corruption` (no penalties, no emphasis).

    Raises:
      ValueError: if the config sets regularizers (`objectives.refuse_unsupported`) or emphasis weights.
      KeyError: for an unknown corruption name.
    """
    corruption = config.get("corruption", None)
    if corruption is not None and corruption.get("name", "none") not in ("none", "", None):
        if (corruption.get("emphasis_alpha", 1.0), corruption.get("emphasis_beta", 1.0)) != (1.0, 1.0):
            raise ValueError("The 'sequence' objective has no emphasized denoising; set emphasis_alpha/beta to 1.")
        without = ml_collections.ConfigDict({k: v for k, v in config.items() if k != "corruption"})
        refuse_unsupported(without, "sequence")
        return Objective(
            make_loss_fn(model, likelihood, corruption_from_config(corruption)), make_eval_fn(model, likelihood)
        )
    refuse_unsupported(config, "sequence")
    return Objective(make_loss_fn(model, likelihood), make_eval_fn(model, likelihood))
