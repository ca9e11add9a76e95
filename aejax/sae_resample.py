"""Resampling of dead SAE latents (Bricken et al. 2023, "Towards Monosemanticity", the resampling procedure),
run inside the jitted (and scanned) train step as the objective's `after_update` hook.

Every `resample_every` steps (a step count after the update, up to `resample_until`; model attributes, see
`aejax.models.sae_base`), if some latent is dead (no activation in the last `dead_after` training examples):

    L_j   = ||x_n,j - x_hat_n,j||^2                    squared reconstruction error of example j of the batch
    j_i   ~ Categorical(p_j proportional to L_j^2)     one draw per dead latent i, with replacement
    u_i   = (x_n,j_i - b) / ||x_n,j_i - b||            b = b_dec + c, the pre-encoder bias
    W_dec[i, :] = u_i                                  (unit norm)
    W_enc[:, i] = 0.2 * mean_{alive l} ||W_enc[:, l]|| * u_i
    b_enc[i]    = 0; any other per-latent parameter (Gated r_mag, b_mag; JumpReLU log_threshold) to its init value
    optimizer moments (Adam mu, nu: every params-shaped tree of the optimizer state) of these entries = 0
    examples_since_fired[i] = 0

(x_n in the model's normalised units; "0.2" is `resample_encoder_scale`). Bricken et al. write "the input
vector"; their encoder sees x - b_dec, so u is the input as the encoder sees it, minus the pre-encoder bias: the
direction a new latent must add to the decoder's bias to reconstruct x_j. With tied weights (Makhzani & Frey) the
row is both encoder and decoder: it becomes 0.2 * mean alive row norm * u_i (u_i itself under a unit-norm
decoder).

Which inputs: the current training batch, not Bricken et al.'s 819,200-input sample. The batch is the only data
inside the jitted, scanned step (no host round trip, works unchanged on a data-parallel mesh: the draw is over the
global batch), and dead latents are by definition the ones no recent example reached; with B candidates several
dead latents may draw the same input, as Bricken et al.'s independent draws also may.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from aejax.data.batch import Batch
from aejax.models.sae_base import MSE, STATE, AbstractSparseAutoencoder

if TYPE_CHECKING:  # aejax.train_step imports the objectives, which import this module
    from aejax.train_step import TrainState

# Axis of the latent index in each per-latent parameter; every other parameter must be shared (b_dec).
LATENT_AXIS = {"W_dec": 0, "W_enc": 1, "b_enc": 0, "r_mag": 0, "b_mag": 0, "log_threshold": 0}
SHARED = ("b_dec",)
RESAMPLE_TAG = 0x5E5A  # folded into the step's key, so resampling draws differ from the loss's noise


def check_params(model: AbstractSparseAutoencoder, params) -> None:
    """Raises ValueError if the model has a parameter this procedure does not know how to resample."""
    unknown = sorted(set(params) - set(LATENT_AXIS) - set(SHARED))
    if unknown:
        raise ValueError(
            f"Dead-latent resampling does not know the latent axis of {type(model).__name__}'s parameters "
            f"{unknown}; declare it in aejax.sae_resample.LATENT_AXIS (known: {', '.join(LATENT_AXIS)})."
        )


def latent_masks(params, dead: jax.Array):
    """A params-shaped tree of bool masks broadcastable to each parameter: True on the entries of dead latents."""
    out = {}
    for name, p in params.items():
        if name in SHARED:
            out[name] = jnp.zeros((), bool)
        else:
            shape = [1] * p.ndim
            shape[LATENT_AXIS[name]] = -1
            out[name] = dead.reshape(shape)
    return out


def resample_dead(
    model: AbstractSparseAutoencoder,
    state: "TrainState",
    batch: Batch,
    tx: optax.GradientTransformation,
    rng: jax.Array,
) -> "TrainState":
    """The state with every dead latent resampled from the batch (the module docstring's equations); the other
    latents, b_dec and the optimizer's other fields are returned unchanged (bit-identical).

    Args:
      model: the SAE; state: its TrainState after an update (Adam-like optimizer state of `tx`).
      batch: Batch with x [B, *input_shape] (the training batch of this step).
      tx: the optimizer that built `state.opt_state` (its params-shaped trees are zeroed on dead entries).
      rng: a typed key for the draws.

    Returns:
      The new TrainState.
    """
    params, sae_state = state.params, state.model_state[STATE]
    dead = sae_state["examples_since_fired"] >= model.dead_after  # [n]
    variables = {"params": params, **state.model_state}
    # Train mode (k, not alpha * k, latents), read-only: the loss the latents are failing on.
    out = model.apply(variables, batch.x, train=True)
    scale, centre = sae_state["input_scale"], sae_state["data_centre"]
    x_n = scale * batch.x.reshape(batch.x.shape[0], -1).astype(jnp.float32)  # [B, d]
    sq_err = out.losses[MSE]  # [B]
    logits = 2.0 * jnp.log(jnp.maximum(sq_err, 1e-30))  # p_j proportional to L_j^2
    choice = jax.random.categorical(rng, logits, shape=dead.shape)  # [n]
    h = x_n - (params["b_dec"] + centre)[None, :]  # [B, d]
    u = h / jnp.maximum(jnp.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    u = u[choice]  # [n, d]

    fresh = model.init(jax.random.key(0), batch.x[:1])["params"]
    w_enc = params["W_dec"].T if model.tied else params["W_enc"]
    enc_norms = jnp.linalg.norm(w_enc, axis=0)  # [n]
    alive = jnp.logical_not(dead)
    mean_alive = jnp.where(jnp.any(alive), jnp.sum(enc_norms * alive) / jnp.maximum(jnp.sum(alive), 1), 1.0)
    enc_rows = model.resample_encoder_scale * mean_alive * u  # [n, d]
    new = {}
    for name, p in params.items():
        if name == "W_dec":
            rows = u if (not model.tied or model.unit_norm_decoder) else enc_rows
            new[name] = jnp.where(dead[:, None], rows.astype(p.dtype), p)
        elif name == "W_enc":
            new[name] = jnp.where(dead[None, :], enc_rows.T.astype(p.dtype), p)
        elif name in SHARED:
            new[name] = p
        else:  # b_enc and the architecture's per-latent parameters: their init values (b_enc = 0)
            mask = latent_masks({name: p}, dead)[name]
            new[name] = jnp.where(mask, fresh[name].astype(p.dtype), p)

    masks = latent_masks(params, dead)
    opt_state = optax.tree_utils.tree_map_params(
        tx, lambda leaf, m: jnp.where(m, jnp.zeros_like(leaf), leaf), state.opt_state, masks
    )
    new_sae_state = {**sae_state, "examples_since_fired": jnp.where(dead, 0, sae_state["examples_since_fired"])}
    return state.replace(params=new, opt_state=opt_state, model_state={**state.model_state, STATE: new_sae_state})


def make_after_update(model: AbstractSparseAutoencoder) -> Callable | None:
    """The `after_update(state, batch, tx) -> state` hook of the SAE objective: `resample_dead` on the steps
    (counted after the update) that are multiples of model.resample_every, up to model.resample_until (0: no
    end), when some latent is dead; the identity otherwise (`lax.cond`, so other steps pay only the test).
    None when model.resample_every == 0.
    """
    every, until = model.resample_every, model.resample_until
    if not every:
        return None

    def after_update(state: "TrainState", batch: Batch, tx: optax.GradientTransformation) -> "TrainState":
        dead = state.model_state[STATE]["examples_since_fired"] >= model.dead_after
        due = (state.step % every == 0) & jnp.any(dead)
        if until:
            due &= state.step <= until
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step), RESAMPLE_TAG)
        return jax.lax.cond(due, lambda s: resample_dead(model, s, batch, tx, rng), lambda s: s, state)

    return after_update
