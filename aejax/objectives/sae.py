"""The sparse-autoencoder objective: reconstruction MSE + the architecture's sparsity terms + AuxK.

    loss = mean_B [ ||x_n - x_hat_n||^2 + sum of the model's terms ]   (normalised units, summed over d)

The model (`aejax.models.sae_base.AbstractSparseAutoencoder`) computes every term per example with its
coefficient (L1 or L0 weight, Gated's auxiliary loss, alpha * AuxK), since the coefficients are the
architecture's hyperparameters (config.model); this objective sums them, logs each as "loss/<name>" and keeps
the decoder rows at unit norm after each step (`project`) when the model asks for it, and resamples dead
latents (`after_update`, `aejax.sae_resample`) when model.resample_every > 0.

Evaluation metrics per example (names declared below; FVU itself needs the split's mean, so the `sae` report
computes it, `aejax.analysis.sae_metrics`), all in the data's units:
  SQ_ERR ||x - x_hat||^2, X_SQ_NORM ||x||^2, L0 number of non-zero latents, COS_SIM cos(x, x_hat),
  SHRINKAGE ||x_hat|| / ||x||.
"""

import jax
import jax.numpy as jnp
import ml_collections

from aejax.data.batch import Batch
from aejax.models.sae_base import STATE, AbstractSparseAutoencoder, unit_rows
from aejax.objectives import OBJECTIVES, SQ_ERR, EvalOutput, Objective
from aejax.objectives.autoencoder import apply_train
from aejax.sae_resample import check_params, make_after_update

X_SQ_NORM, L0, COS_SIM, SHRINKAGE = "x_sq_norm", "l0", "cos_sim", "shrinkage"
NUM_DEAD = "sae/num_dead"  # training metric: latents without activation in the last `dead_after` examples


def eval_metrics(x: jax.Array, x_hat: jax.Array, code: jax.Array) -> dict[str, jax.Array]:
    """Per-example SAE metrics: x, x_hat [B, ...] (data units), code [B, n] -> {name: [B]}."""
    x, x_hat = x.reshape(x.shape[0], -1), x_hat.reshape(x_hat.shape[0], -1)
    x_norm, r_norm = jnp.linalg.norm(x, axis=1), jnp.linalg.norm(x_hat, axis=1)
    safe = jnp.maximum(x_norm, 1e-12)
    return {
        SQ_ERR: jnp.sum(jnp.square(x - x_hat), axis=1),
        X_SQ_NORM: jnp.square(x_norm),
        L0: jnp.sum(code != 0, axis=1).astype(jnp.float32),
        COS_SIM: jnp.sum(x * x_hat, axis=1) / (safe * jnp.maximum(r_norm, 1e-12)),
        SHRINKAGE: r_norm / safe,
    }


def project(params):
    """Params with W_dec's rows rescaled to unit norm (after every update)."""
    return {**params, "W_dec": unit_rows(params["W_dec"])}


@OBJECTIVES.register("sae")
def from_config(config: ml_collections.ConfigDict, model, likelihood) -> Objective:
    """The SAE objective for a model of `aejax.models.sae_base` (config.model_name topk, batchtopk, jumprelu,
    gated, relu_l1).

    loss_fn metrics: "loss/<term>" (batch means of the model's weighted terms: mse, l1, l0, aux, auxk),
    NUM_DEAD and "sae/l0" (mean active latents per example in training).

    Raises:
      TypeError: if the model is not a sparse autoencoder (naming it).
      ValueError: if the config asks for a corruption or regularizers, which this objective does not apply.
    """
    del likelihood  # the loss is the SAE's own squared error; the likelihood only names the reconstruction
    if config is not None:
        corruption = config.get("corruption", {}).get("name", "none")
        if corruption not in ("none", "", None) or len(config.get("regularizers", {})):
            raise ValueError(
                f"The 'sae' objective applies no corruption or regularizers (its sparsity terms are the model's); "
                f"got corruption={corruption!r}, regularizers={list(config.get('regularizers', {}))}."
            )
    if not isinstance(model, AbstractSparseAutoencoder):
        raise TypeError(
            f"The 'sae' objective needs a sparse autoencoder model (topk, batchtopk, jumprelu, gated, relu_l1), "
            f"got {type(model).__name__}."
        )

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        del step
        if STATE not in model_state:
            raise ValueError(f"model_state has no {STATE!r} collection; initialise the state with model.init.")
        out, new_state = apply_train(model, params, model_state, batch.x, rng)
        terms = {name: v.mean() for name, v in out.losses.items()}
        metrics = {f"loss/{name}": v for name, v in terms.items()}
        metrics[NUM_DEAD] = out.num_dead.astype(jnp.float32)
        metrics["sae/l0"] = jnp.mean(jnp.sum(out.code != 0, axis=1).astype(jnp.float32))
        return sum(terms.values()), (metrics, new_state)

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        del rng
        out = model.apply({"params": params, **model_state}, batch.x)
        return EvalOutput(metrics=eval_metrics(batch.x, out.decoder_output, out.code), code=out.code)

    if model.resample_every:
        check_params(
            model, jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *model.input_shape)))["params"]
        )
    return Objective(loss_fn, eval_fn, project if model.unit_norm_decoder else None, make_after_update(model))
