"""TrainState (arrays only) and the pure, jitted train and eval steps. No I/O here.

The contracts every objective implements (`aejax.objectives.Objective`):

    loss_fn(params, model_state, batch, rng, step) -> ([] loss, (metrics {name: []}, new model_state))
    eval_fn(params, model_state, batch, rng) -> EvalOutput(metrics {name: [B]}, code [B, K])

`model_state` holds the model's mutable collections other than "params" (e.g. {"batch_stats": ...} for
BatchNorm; {} for most models); the loss returns its updated value (train mode), evaluation only reads it.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from aejax import sharding
from aejax.data.batch import Batch
from aejax.objectives import EvalOutput

NOT_COMPUTED = -1.0  # the value of the SKIPPABLE metrics on the steps that skip them (see make_train_step)
SKIPPABLE = ("grad_norm", "param_norm")

LossFn = Callable[[Any, Any, Batch, jax.Array, jax.Array], tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: arrays only, so orbax saves it as is.

    Attributes:
      step: [] int32, the number of updates done.
      params: the model's "params" collection.
      model_state: the model's other mutable collections ({"batch_stats": ...}, or {}).
      opt_state: the optax state.
      rng: [2] uint32 key data; step t draws from `fold_in(wrap_key_data(rng), t)`, so a resumed run draws the
        same noise as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array


def init_state(params, tx: optax.GradientTransformation, rng: jax.Array, model_state=None) -> TrainState:
    """A fresh TrainState at step 0; `rng` is a typed key (`jax.random.key`) or raw key data."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state={} if model_state is None else model_state,
        opt_state=tx.init(params),
        rng=rng,
    )


def step_rng(state: TrainState) -> jax.Array:
    """The typed key of step `state.step`: fold_in(rng, step)."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def update_fn(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    project: Callable[[Any], Any] | None = None,
    after_update: Callable[..., TrainState] | None = None,
    norms_every: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure update `(state, batch) -> (new_state, metrics)` that `make_train_step` jits and
    `make_multi_step` scans.

    `project` (params -> params) runs after each update, e.g. renormalising dictionary columns (PSD).
    `after_update` ((new_state, batch, tx) -> new_state) runs last, for what needs the batch or the optimizer
    state (SAE dead-latent resampling); it chooses its own steps with `lax.cond`.
    `norms_every`: "grad_norm" and "param_norm" cost two extra passes over the parameters (measured 5-9% of a
    step of the main job's MLP on CPU, benchmarks/bench_train.py), so they are computed only on the steps whose
    count after the update, `state.step + 1`, is a multiple of it (the loop passes its log interval); on the
    other steps they are NOT_COMPUTED (-1.0), which `window_means` skips. The loss is there every step.

    Raises:
      ValueError: if norms_every < 1.
    """
    if norms_every < 1:
        raise ValueError(f"norms_every must be >= 1, got {norms_every}.")

    def norms(grads, params):
        return {"grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params)}

    def skipped(grads, params):
        del grads, params
        return {k: jnp.float32(NOT_COMPUTED) for k in SKIPPABLE}

    def train_step(state: TrainState, batch: Batch):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(
            state.params, state.model_state, batch, step_rng(state), state.step
        )
        # Every read of the old parameters (the backward pass) happens before the in-place update of the donated
        # buffers; without the barrier XLA copies the kernels it cannot order (~8 MB per step for the main MLP).
        grads, old_params = jax.lax.optimization_barrier((grads, state.params))
        updates, opt_state = tx.update(grads, state.opt_state, old_params)
        params = optax.apply_updates(old_params, updates)
        if project is not None:
            params = project(params)
        if norms_every == 1:
            norm_metrics = norms(grads, params)
        else:
            norm_metrics = jax.lax.cond((state.step + 1) % norms_every == 0, norms, skipped, grads, params)
        metrics = {**metrics, "loss": loss, **norm_metrics}
        new_state = state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state)
        if after_update is not None:
            new_state = after_update(new_state, batch, tx)
        return new_state, metrics

    return train_step


def under_mesh(fn: Callable, mesh: Mesh) -> Callable:
    """fn traced under `mesh` (`jax.sharding.get_abstract_mesh()` inside it is the mesh), so the SAEs' top-k
    (`aejax.models.sae_select`) sees the "model" axis it must select across."""

    @functools.wraps(fn)
    def wrapped(*args):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args)

    return wrapped


def _state_sharding(mesh: Mesh, state_sharding: sharding.TreeShardings | None):
    """The state's shardings as a pytree prefix for jit: the given ones, or replicated (a prefix of any state)."""
    return sharding.replicated(mesh) if state_sharding is None else state_sharding.tree()


@functools.lru_cache(maxsize=64)  # the same (loss, optimizer, mesh) compiles once, e.g. DAEs that differ in seed
def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    project: Callable[[Any], Any] | None = None,
    after_update: Callable[..., TrainState] | None = None,
    norms_every: int = 1,
    state_sharding: sharding.TreeShardings | None = None,
):
    """One data-parallel (and, with `state_sharding` split over "model", latent-parallel) update (`update_fn`),
    jitted once with explicit shardings and traced under `mesh`; the old state is donated.

    `state_sharding`: the state's shardings (`sharding.TreeShardings.of(state)`); None: replicated.

    Returns:
      step_fn(state, batch) -> (new_state, metrics): metrics is a dict of replicated scalars with the loss
      terms, "loss", "grad_norm" and "param_norm".

    Raises:
      ValueError: if norms_every < 1.
    """
    repl, state = sharding.replicated(mesh), _state_sharding(mesh, state_sharding)
    update = update_fn(loss_fn, tx, project=project, after_update=after_update, norms_every=norms_every)
    return jax.jit(
        under_mesh(update, mesh),
        in_shardings=(state, sharding.batch_sharded(mesh)),
        out_shardings=(state, repl),
        donate_argnums=0,
    )


# Primitives that a backend runs far slower inside a while loop (the `lax.scan` of `make_multi_step`) than in
# straight-line code. On XLA:CPU the kernel-gradient convolution of a conv layer is canonicalised to an Eigen
# convolution (operands transposed) in straight-line code but not inside a loop body, where it falls back to a
# naive loop nest: a conv AE step runs 3-20x slower inside a scan (benchmarks/bench_scan_unroll.py; the HLO shows
# `dim_labels=b01f_01io->b01f` outside the loop and `f01b_i01o->01bf` inside). Dense layers, LSTM/GRU cells,
# `lax.top_k`, max pooling and resizing were measured too and do not slow down in a scan.
SLOW_IN_SCAN = {"cpu": frozenset({"conv_general_dilated"})}


def primitive_names(jaxpr) -> set[str]:
    """The names of every primitive of a (closed) jaxpr, including those of its sub-jaxprs (scan, cond, pjit,
    custom_vjp bodies)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= primitive_names(sub)
    return names


def slow_in_scan(
    loss_fn: LossFn, tx: optax.GradientTransformation, state: TrainState, batch: Batch, platform: str
) -> set[str]:
    """The primitives of one update (`update_fn`) that `platform` runs slowly inside a scan (SLOW_IN_SCAN), found
    by tracing the update on `state` and `batch` (shapes only; nothing is computed).

    Returns:
      A set of primitive names, empty when K steps per call are safe on `platform`.
    """
    slow = SLOW_IN_SCAN.get(platform, frozenset())
    if not slow:
        return set()
    return primitive_names(jax.make_jaxpr(update_fn(loss_fn, tx))(state, batch)) & slow


@functools.lru_cache(maxsize=64)
def make_multi_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    project: Callable[[Any], Any] | None = None,
    after_update: Callable[..., TrainState] | None = None,
    norms_every: int = 1,
    state_sharding: sharding.TreeShardings | None = None,
):
    """K updates in one jitted call (`jax.lax.scan` of `update_fn` over steps), with each step's batch gathered
    on the device from a split kept in device memory, so nothing crosses from the host per step but K * B row
    indices. Step t of the scan is exactly step t of `make_train_step`: the same update, the same
    `fold_in(rng, step)` and, given the loader's indices, the same rows.

    Returns:
      multi_step(state, x [N, ...], labels [N], mask [N, T] or None, indices [K, B] int32) -> (new_state,
      metrics {name: [K]}): x, labels and mask (`Split.mask`) replicated (the whole split on every device; each
      device computes only its rows of each batch), indices the global batch rows of the K steps; K is the
      leading size of `indices` (a new K compiles once more). The old state is donated; `state_sharding` as in
      `make_train_step`.

    Raises:
      ValueError: if norms_every < 1.
    """
    update = update_fn(loss_fn, tx, project=project, after_update=after_update, norms_every=norms_every)
    data = sharding.batch_sharded(mesh)

    def multi_step(state: TrainState, x: jax.Array, labels: jax.Array, mask: jax.Array | None, indices: jax.Array):
        def one(state, rows):
            batch = Batch(*(None if a is None else jnp.take(a, rows, axis=0) for a in (x, labels, mask)))
            return update(state, jax.lax.with_sharding_constraint(batch, data))

        return jax.lax.scan(one, state, indices)

    repl, state = sharding.replicated(mesh), _state_sharding(mesh, state_sharding)
    return jax.jit(
        under_mesh(multi_step, mesh),
        in_shardings=(state, *(repl,) * 4),
        out_shardings=(state, repl),
        donate_argnums=0,
    )


def window_means(window: list[dict]) -> dict[str, float]:
    """The mean of each metric over a window of host metrics, over the steps that computed it (the SKIPPABLE
    norms are NOT_COMPUTED on most steps)."""
    out = {}
    for key in window[0]:
        values = [m[key] for m in window if not (key in SKIPPABLE and m[key] == NOT_COMPUTED)]
        if values:
            out[key] = float(np.mean(values))
    return out


def make_eval_step(
    eval_fn: Callable[..., EvalOutput], mesh: Mesh, state_sharding: sharding.TreeShardings | None = None
):
    """Jitted per-example evaluation: (params, model_state, batch, rng) -> EvalOutput sharded like the batch
    (rows over "data"; the code's latents gathered whole). `state_sharding` as in `make_train_step`."""
    repl, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    state = _state_sharding(mesh, state_sharding)
    params, model_state = (repl, repl) if state_sharding is None else (state.params, state.model_state)
    return jax.jit(under_mesh(eval_fn, mesh), in_shardings=(params, model_state, data, repl), out_shardings=data)
