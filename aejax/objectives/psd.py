"""The predictive sparse decomposition objective: infer the optimal codes, then a gradient step on D and f.

Kavukcuoglu, Ranzato & LeCun (2008), eq. 3: for an input x [n], dictionary D [n, K] and encoder f,

    E(x, h) = ||x - D h||_2^2 + lam ||h||_1 + gamma ||h - f(x)||_2^2

(units of x squared, summed over the n input dimensions). Training alternates, per batch:

1. Inference: h* = argmin_h E(x, h), by FISTA started at h = f(x), with D and f(x) held fixed. E is a Lasso
   in h with the augmented dictionary and target

       D_aug = [D; sqrt(gamma) I_K]  [n + K, K],   x_aug = [x; sqrt(gamma) f(x)]  [n + K],

   since ||x_aug - D_aug h||^2 = ||x - D h||^2 + gamma ||h - f(x)||^2; `aejax.sparse_coding.fista` minimises
   0.5 ||x_aug - D_aug h||^2 + lam' ||h||_1, so it is called with lam' = lam / 2 (E = 2 * its energy), and
   the Lipschitz constant ||D_aug||_2^2 = ||D||_2^2 + gamma exactly.
2. Learning: the loss is E(x, h*) averaged over the batch with h* a constant (stop_gradient), so its gradient
   moves D towards reconstructing x from h* and the encoder towards predicting h*. `project` then rescales
   D's columns to unit norm.
"""

import jax
import jax.numpy as jnp
import ml_collections

from aejax import sparse_coding
from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood, squared_error
from aejax.models.psd import DICTIONARY, unit_columns
from aejax.objectives import (
    ACTIVE,
    CODE_SQ_NORM,
    ENERGY,
    OBJECTIVES,
    PRED_SQ_ERR,
    SQ_ERR,
    EvalOutput,
    Objective,
    refuse_unsupported,
)


def energy(x: jax.Array, D: jax.Array, h: jax.Array, f: jax.Array, *, lam: float, gamma: float) -> dict:
    """The three terms of the PSD energy per example.

    Args:
      x: [B, n] inputs.
      D: [n, K] dictionary.
      h: [B, K] codes.
      f: [B, K] encoder predictions f(x).
      lam: L1 weight lambda.
      gamma: prediction weight gamma.

    Returns:
      {"recon": ||x - D h||^2, "l1": lam ||h||_1, "pred": gamma ||h - f||^2, "total": their sum}, each [B],
      units of x squared.
    """
    terms = {
        "recon": jnp.sum(jnp.square(x - h @ D.T), axis=-1),
        "l1": lam * jnp.sum(jnp.abs(h), axis=-1),
        "pred": gamma * jnp.sum(jnp.square(h - f), axis=-1),
    }
    return {**terms, "total": terms["recon"] + terms["l1"] + terms["pred"]}


def infer_codes(
    x: jax.Array, D: jax.Array, f: jax.Array, *, lam: float, gamma: float, num_steps: int
) -> jax.Array:
    """h* = argmin_h E(x, h) by `num_steps` FISTA steps (with restart) from h = f, as the augmented Lasso.

    Args:
      x: [B, n] inputs.
      D: [n, K] dictionary.
      f: [B, K] encoder predictions, the warm start and the target of the gamma term.
      lam: L1 weight lambda >= 0.
      gamma: prediction weight gamma >= 0.
      num_steps: static number of FISTA iterations.

    Returns:
      [B, K] codes, a constant for differentiation (stop_gradient).

    Raises:
      ValueError: if x is not [B, n], D not [n, K] or f not [B, K].
    """
    if x.ndim != 2 or D.ndim != 2 or f.shape != (x.shape[0], D.shape[1]) or x.shape[1] != D.shape[0]:
        raise ValueError(f"Expected x [B, n], D [n, K], f [B, K]; got {x.shape}, {D.shape}, {f.shape}.")
    x, D, f = (jax.lax.stop_gradient(a) for a in (x, D, f))
    root = jnp.sqrt(jnp.asarray(gamma, D.dtype))
    d_aug = jnp.concatenate([D, root * jnp.eye(D.shape[1], dtype=D.dtype)], axis=0)  # [n + K, K]
    x_aug = jnp.concatenate([x, root * f], axis=1)  # [B, n + K]
    lipschitz = jnp.linalg.norm(D, 2) ** 2 + gamma
    h = sparse_coding.fista(x_aug, d_aug, lam=lam / 2, num_steps=num_steps, z0=f, lipschitz=lipschitz)
    return jax.lax.stop_gradient(h)


def project(params):
    """Params with the dictionary's columns rescaled to unit norm (applied after every update)."""
    return {**params, DICTIONARY: unit_columns(params[DICTIONARY])}


@OBJECTIVES.register("psd")
def from_config(config: ml_collections.ConfigDict, model, likelihood: Likelihood) -> Objective:
    """The PSD objective of `config.psd` (lam, gamma, fista_steps, eval_fista_steps) for a `psd.Model`.

    loss_fn metrics: "loss/recon", "loss/l1", "loss/pred" (batch means of the terms at h*), "psd/active"
    (fraction of non-zero entries of h*) and "psd/rel_pred_err" = sum_b ||f(x_b) - h*_b||^2 / sum_b ||h*_b||^2.

    eval_fn(params, model_state, batch, rng) -> EvalOutput with code f(x) [B, K] and metrics, each [B]:
    "sq_err" (squared error of the encoder-only reconstruction D f(x) summed over pixels), "energy" (E(x, h*),
    units of x squared), "pred_sq_err" (||f(x) - h*||^2), "code_sq_norm" (||h*||^2), "active" (fraction of
    non-zero entries of h*).

    Raises:
      ValueError: if lam or gamma is negative or a number of FISTA steps is not positive; for config.regularizers
        or a corruption, which PSD does not apply (`objectives.refuse_unsupported`).
    """
    refuse_unsupported(config, "psd")
    del likelihood  # the energy is the PSD energy, whatever the decoder likelihood
    cfg = config.psd
    lam, gamma = float(cfg.lam), float(cfg.gamma)
    if lam < 0 or gamma < 0 or cfg.fista_steps < 1 or cfg.eval_fista_steps < 1:
        raise ValueError(f"PSD needs lam, gamma >= 0 and positive FISTA steps, got {cfg}.")

    def codes(params, x, num_steps):
        f = model.apply({"params": params}, x, method="encode")  # [B, K]
        x_flat = x.reshape(x.shape[0], -1)  # [B, n]
        h = infer_codes(x_flat, params[DICTIONARY], f, lam=lam, gamma=gamma, num_steps=num_steps)
        return x_flat, f, h

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        del rng, step
        x, f, h = codes(params, batch.x, cfg.fista_steps)
        terms = energy(x, params[DICTIONARY], h, f, lam=lam, gamma=gamma)
        metrics = {f"loss/{k}": v.mean() for k, v in terms.items() if k != "total"}
        metrics["psd/active"] = jnp.mean(h != 0)
        metrics["psd/rel_pred_err"] = jnp.sum(jnp.square(f - h)) / jnp.maximum(jnp.sum(jnp.square(h)), 1e-12)
        return terms["total"].mean(), (metrics, model_state)

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        del model_state, rng  # PSD has no other collections; inference is deterministic
        x, f, h = codes(params, batch.x, cfg.eval_fista_steps)
        recon = model.apply({"params": params}, f, method="decode")
        metrics = {
            SQ_ERR: squared_error(recon, batch.x),
            ENERGY: energy(x, params[DICTIONARY], h, f, lam=lam, gamma=gamma)["total"],
            PRED_SQ_ERR: jnp.sum(jnp.square(f - h), axis=-1),
            CODE_SQ_NORM: jnp.sum(jnp.square(h), axis=-1),
            ACTIVE: jnp.mean(h != 0, axis=-1),
        }
        return EvalOutput(metrics=metrics, code=f)

    return Objective(loss_fn, eval_fn, project)
