"""TrainState (arrays only) and the pure, jitted train and eval steps. No I/O here."""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from aejax import sharding
from aejax.data.batch import Batch

# loss_fn(params, batch, rng, step) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[Any, Batch, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: arrays only, so orbax saves it as is.

    Attributes:
      step: [] int32, the number of updates done.
      params: the model's "params" collection.
      opt_state: the optax state.
      rng: [2] uint32 base key; step t draws from `fold_in(rng, t)`, so a resumed run draws the same noise.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def init_state(params, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """A fresh TrainState at step 0."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    project: Callable[[Any], Any] | None = None,
):
    """One data-parallel update, jitted once with explicit shardings; the old state is donated.

    `project` (params -> params) runs after each update, e.g. renormalising dictionary columns (PSD).

    Returns:
      step_fn(state, batch) -> (new_state, metrics): metrics is a dict of replicated scalars with the loss
      terms, "loss", "grad_norm" and "param_norm".
    """

    def train_step(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, metrics), grads = grad_fn(state.params, batch, rng, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if project is not None:
            params = project(params)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    repl = sharding.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(repl, sharding.batch_sharded(mesh)),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def make_eval_step(per_example_fn: Callable[[Any, Batch], dict[str, jax.Array]], mesh: Mesh):
    """Jitted per-example evaluation: (params, batch) -> dict of [B] arrays, sharded like the batch."""
    data = sharding.batch_sharded(mesh)
    return jax.jit(per_example_fn, in_shardings=(sharding.replicated(mesh), data), out_shardings=data)
