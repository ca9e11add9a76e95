"""Many SAEs from one pass (issue 21): S sparse autoencoders that differ in k, a sparsity coefficient or the init
seed, trained by ONE jitted step on the same batch (`jax.vmap` over stacked parameters and hyperparameters).

    config.sweep = "k=8,16,32,64"                   # one axis; "l1_coeff=0.5,1,2;seed=0,1" is the grid of two

The sweep is an objective and an optimizer wrapper, so the one loop, train step, checkpoints and NaN checks are
those of every run:
- the state is one TrainState whose params, model_state and opt_state have a leading member axis S, initialised
  by vmapping the model's init over the members' keys (member i's init is exactly its single run's:
  `split(key(seed_i))`);
- the optimizer is the member optimizer vmapped (`stacked_optimizer`), so each member keeps its own Adam moments
  and schedule count, and clipping or weight decay stay per member;
- the loss is the SUM of the members' losses, the member loss vmapped over (params, model_state) with the batch
  shared: d(sum)/d(params_i) is member i's gradient, so each member takes exactly the step of its own run (up to
  the reassociation of batched matrix products);
- a swept size (k: the static size of lax.top_k) makes groups: the members of one k share one model and are
  vmapped together, and the groups are unrolled inside the one jitted step. Members of the largest k's
  top-k, keeping the first k of the sorted values, would be exact too but cost every member the largest top-k:
  on CPU, TopK k = 8..64 x 2 seeds ran at 0.59x the sequential runs that way against 0.92x with one model per
  k (benchmarks/bench_sweep.py, small size, README);
- swept coefficients (l1_coeff, l0_coeff) are traced inputs, not static attributes: every member's model_state
  carries the collection `sae_base.HPARAMS` ({"l1_coeff": [], ...} plus the member's base key "rng"), which the
  modules read instead of their attribute (`AbstractSparseAutoencoder.hparam`). Carrying the values in the state
  (rather than cloning the module with tracers) leaves the modules' validation and single-model code untouched,
  checkpoints them with the run, and makes evaluation read them with no extra argument;
- metrics are per-member scalars "<member>/<metric>" (e.g. "k=8/loss/mse"), so a non-finite value names the
  member and the term; "loss", "grad_norm" and "param_norm" are over the whole sweep.

What vmap cannot share: every member's FLOPs. A `lax.cond` whose predicate differs per member becomes a select
under vmap (both branches computed): AuxK's "any latent dead?" is therefore decided once per group, conservatively
(`stacked_objective`), and while a latent of a member may be dead, AuxK is computed for the group's every member.
Dead-latent resampling (`resample_every`) is refused in a sweep. A seed axis changes the init only: the members
share the batches, drawn with the first member's seed.
"""

import copy
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax import sharding
from aejax import train_step as ts
from aejax.models import get_model
from aejax.models.sae_base import AUXK, HPARAMS, STATE, AbstractSparseAutoencoder
from aejax.objectives import EvalOutput, Objective

SEED = "seed"
STATIC = ("k",)  # swept sizes: one model (and one vmap) per value
# Swept name -> the model names that have it (seed: every model; it is config.seed, not a model attribute).
SWEEPABLE = {
    "k": ("topk", "batchtopk"),
    "l1_coeff": ("relu_l1", "gated"),
    "l0_coeff": ("jumprelu",),
    SEED: None,
}
READY = "statistics_ready"  # the SAE's flag: input scale and data centre estimated (sae_base)
RNG = "rng"  # a member's base key data [2] in its HPARAMS collection (its single run's TrainState.rng)


class Member(NamedTuple):
    """One model of a sweep.

    Attributes:
      name: "k=8" or "l1_coeff=1.0,seed=1": the member's metric prefix and directory name.
      hparams: {swept name: value}.
      config: the member's own config (config.sweep cleared, the swept values set): what a single run of the
        member would be launched with, and what its member directory's config.json holds.
    """

    name: str
    hparams: dict
    config: ml_collections.ConfigDict


def _number(name: str, text: str):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"config.sweep: {name}={text!r} is not a number.") from None
    if name in ("k", SEED):
        if value != int(value):
            raise ValueError(f"config.sweep: {name} must be an integer, got {text!r}.")
        return int(value)
    return value


def parse_sweep(spec) -> dict[str, list]:
    """The axes of a sweep spec: "k=8,16,32" -> {"k": [8, 16, 32]}; axes separated by ";" form a grid; a dict or
    ConfigDict {"k": (8, 16, 32)} is accepted as is.

    Raises:
      ValueError: for an empty spec or axis, a malformed axis, a non-number, or a repeated value.
      KeyError: for a name that cannot be swept, listing the sweepable ones.
    """
    if isinstance(spec, (dict, ml_collections.ConfigDict)):
        items = [
            (str(k), [str(v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])]) for k, vs in spec.items()
        ]
    else:
        items = []
        for axis in str(spec or "").split(";"):
            name, sep, values = axis.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"config.sweep={spec!r}: each axis is name=v1,v2,... (axes separated by ';').")
            items.append((name.strip(), [v.strip() for v in values.split(",") if v.strip()]))
    if not items:
        raise ValueError("config.sweep is empty: give e.g. 'k=8,16,32'.")
    axes = {}
    for name, values in items:
        if name not in SWEEPABLE:
            raise KeyError(f"config.sweep: {name!r} cannot be swept. Sweepable: {', '.join(SWEEPABLE)}.")
        if name in axes:
            raise ValueError(f"config.sweep names {name!r} twice.")
        if not values:
            raise ValueError(f"config.sweep: the axis {name!r} has no values.")
        parsed = [_number(name, v) for v in values]
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"config.sweep: {name} repeats a value: {values}.")
        axes[name] = parsed
    return axes


def _model_axis(config) -> int:
    mesh = config.get("mesh")
    if isinstance(mesh, (dict, ml_collections.ConfigDict)):
        return int(mesh.get("model", 1) or 1)
    return 1


def members(config: ml_collections.ConfigDict) -> list[Member]:
    """The members of `config.sweep` (the grid of its axes, first axis slowest), each with its own config.

    Raises:
      KeyError / ValueError: from `parse_sweep`; ValueError if the model has no such hyperparameter (naming the
        sweepable ones for it), or for a mesh with a model axis > 1 (sharded latents are not vmapped yet).
    """
    axes = parse_sweep(config.get("sweep"))
    if _model_axis(config) > 1:
        raise ValueError(
            "config.sweep with a model axis > 1 in config.mesh (latents sharded across devices) is not supported "
            "yet: train the members separately, or sweep on a data-only mesh."
        )
    model_name = config.model_name
    for name in axes:
        if SWEEPABLE[name] is not None and model_name not in SWEEPABLE[name]:
            can = [n for n, models in SWEEPABLE.items() if models is None or model_name in models]
            raise ValueError(
                f"config.sweep sweeps {name!r}, which model {model_name!r} does not have; sweepable for it: "
                f"{', '.join(can)}."
            )
    out = []
    for values in itertools.product(*axes.values()):
        hparams = dict(zip(axes, values, strict=True))
        c = copy.deepcopy(config)
        c.sweep = ""
        for name, value in hparams.items():
            if name == SEED:
                c.seed = value
            else:
                c.model[name] = value
        out.append(Member(",".join(f"{k}={v}" for k, v in hparams.items()), hparams, c.lock()))
    return out


def template_config(ms: Sequence[Member]) -> ml_collections.ConfigDict:
    """The config the sweep's loader, optimizer and init are built from: the first member's (they differ only in
    swept values, which change neither the parameter shapes nor the initial values)."""
    return ms[0].config


class Group(NamedTuple):
    """Members that share one model (the same static hyperparameters), vmapped together.

    Attributes:
      indices: the members' positions in the sweep (leading axis of the stacked state).
      model: their model; objective: its `sae` objective.
      no_auxk: for a model with AuxK, the objective of the same model without it (None otherwise): the group's
        step while no member can have a dead latent (`stacked_objective`).
    """

    indices: tuple[int, ...]
    model: AbstractSparseAutoencoder
    objective: Objective
    no_auxk: Objective | None = None


def groups(ms: Sequence[Member], input_shape, objective_factory) -> list[Group]:
    """One Group per distinct value of the STATIC swept names (one group when only coefficients or seeds are
    swept); builds every member's model (its own validation: k <= n_latents, coefficients >= 0) before compute.

    Args:
      objective_factory: (config, model) -> Objective (`objectives.from_config` with the likelihood).

    Raises:
      ValueError / KeyError: from a member's model, prefixed with the member's name; ValueError if the model
        resamples dead latents.
    """
    by_key: dict[tuple, list[int]] = {}
    models = {}
    for i, m in enumerate(ms):
        try:
            model = get_model(m.config.model_name, input_shape=tuple(input_shape), **m.config.model)
        except (ValueError, KeyError) as e:
            raise type(e)(f"sweep member {m.name}: {e}") from e
        if not isinstance(model, AbstractSparseAutoencoder):
            raise TypeError(f"config.sweep trains sparse autoencoders, got {type(model).__name__}.")
        if model.resample_every:
            raise ValueError(
                "config.sweep does not resample dead latents (model.resample_every > 0): a sweep vmaps its "
                "members and resampling is a per-member data-dependent rewrite of the optimizer state; use AuxK "
                "(aux_k)."
            )
        key = tuple(m.hparams[n] for n in STATIC if n in m.hparams)
        by_key.setdefault(key, []).append(i)
        models.setdefault(key, (m.config, model))
    out = []
    for key, idx in by_key.items():
        config, model = models[key]
        no_auxk = objective_factory(config, model.clone(aux_k=0)) if model.aux_k else None
        out.append(Group(tuple(idx), model, objective_factory(config, model), no_auxk))
    return out


def _hparam_arrays(ms: Sequence[Member]) -> dict[str, jax.Array]:
    """{swept model hyperparameter: [S]} (the seed is not a model input)."""
    names = [n for n in ms[0].hparams if n != SEED and n not in STATIC]
    return {n: jnp.asarray([m.hparams[n] for m in ms], jnp.int32 if n == "k" else jnp.float32) for n in names}


def stacked_optimizer(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """The member optimizer `tx` vmapped over the leading member axis of params, gradients and state: member i's
    state evolves exactly as in its own run (moments, schedule count, clipping of its own gradient norm)."""
    return optax.GradientTransformation(jax.vmap(tx.init), jax.vmap(tx.update))


def make_init_fn(template: AbstractSparseAutoencoder, tx, ms: Sequence[Member], input_shape, mesh):
    """() -> the stacked TrainState on the mesh: member i's variables from split(key(seed_i))[0] (as
    `build.make_init_fn` of its own run; `template` is any member's model: k changes no parameter), its base key
    split(...)[1] and swept coefficients in its HPARAMS collection,
    its optimizer state `tx.init` (tx the member optimizer). params, model_state, opt_state leaves: [S, ...]."""
    keys = jnp.stack([jax.random.key_data(jax.random.key(m.config.seed)) for m in ms])  # [S, 2]
    hparams = _hparam_arrays(ms)

    def init(keys, hparams):
        def one(key_data, hp):
            init_rng, state_rng = jax.random.split(jax.random.wrap_key_data(key_data))
            variables = template.init(init_rng, jnp.zeros((1, *input_shape), jnp.float32))
            model_state = {k: v for k, v in variables.items() if k != "params"}
            model_state[HPARAMS] = {**hp, RNG: jax.random.key_data(state_rng)}
            return variables["params"], model_state, tx.init(variables["params"])

        params, model_state, opt_state = jax.vmap(one)(keys, hparams)
        return ts.TrainState(jnp.zeros((), jnp.int32), params, model_state, opt_state, keys[0])

    return lambda: jax.jit(init, out_shardings=sharding.replicated(mesh))(keys, hparams)


def _take(tree, idx):
    return jax.tree.map(lambda a: a[np.asarray(idx)], tree)


def stacked_objective(gs: Sequence[Group], names: Sequence[str]) -> Objective:
    """The sweep's objective from its groups' objectives (`objectives.sae`).

    loss_fn: the sum of the members' losses; metrics "<name>/<metric>" for each member's metrics and its loss.
    eval_fn: metrics "<name>/<metric>" [B] of every member; the code is [B, 0] (each member's codes are
      evaluated in its own directory after training, `aejax.jobs.sae_sweep`, not held S times here).
    project: the member's projection vmapped. after_update: none (resampling is refused, `groups`).
    """
    order = np.concatenate([g.indices for g in gs])
    inverse = np.argsort(order)  # group-major results back to member order
    single = len(gs) == 1 and tuple(order) == tuple(range(len(order)))

    def per_group(fn, params, model_state):
        """fn(group, params_g, model_state_g) -> pytree with leading axis |g|, for every group, in member order."""
        if single:
            return fn(gs[0], params, model_state)
        outs = [fn(g, _take(params, g.indices), _take(model_state, g.indices)) for g in gs]
        return jax.tree.map(lambda *a: jnp.concatenate(a)[inverse], *outs)

    def loss_fn(params, model_state, batch, rng, step):
        del rng  # each member draws from its own key, as its own run does

        def group_loss(g, p, s):
            def member(objective):
                def one(p, s):
                    key = jax.random.fold_in(jax.random.wrap_key_data(s[HPARAMS][RNG]), step)
                    loss, (metrics, new_state) = objective.loss_fn(p, s, batch, key, step)
                    if objective is g.no_auxk:  # the term AuxK gives with no dead latent
                        metrics = {**metrics, f"loss/{AUXK}": jnp.zeros((), loss.dtype)}
                    return loss, metrics, new_state

                # The statistics flag is the same for every member (they see the same batches): passed unbatched,
                # the model's cond on it stays a cond, so the first batch's geometric median is not recomputed
                # by a select on every step.
                def call(p, s):
                    s = {**s, STATE: {**s[STATE], READY: s[STATE][READY][0]}}
                    axes = jax.tree.map(lambda _: 0, s)
                    axes[STATE][READY] = None
                    return jax.vmap(one, in_axes=(0, axes))(p, s)

                return call

            if g.no_auxk is None:
                return member(g.objective)(p, s)
            # AuxK's own cond ("any latent dead?") has a per-member predicate, which vmap turns into a select
            # that computes AuxK for every member on every step. One cond for the group instead: while no
            # member can have a dead latent after this batch (examples since fired + B < dead_after for all),
            # the model without AuxK gives exactly the same loss (AuxK is 0 with no dead latent).
            since = s[STATE]["examples_since_fired"]  # [|g|, n]
            maybe_dead = jnp.any(since + batch.x.shape[0] >= g.model.dead_after)
            return jax.lax.cond(maybe_dead, member(g.objective), member(g.no_auxk), p, s)

        losses, metrics, new_state = per_group(group_loss, params, model_state)
        flat = {f"{name}/loss": losses[i] for i, name in enumerate(names)}
        flat.update({f"{name}/{k}": v[i] for k, v in metrics.items() for i, name in enumerate(names)})
        return jnp.sum(losses), (flat, new_state)

    def eval_fn(params, model_state, batch, rng):
        def group_eval(g, p, s):
            return jax.vmap(lambda p, s: g.objective.eval_fn(p, s, batch, rng).metrics)(p, s)

        out = per_group(group_eval, params, model_state)
        flat = {f"{name}/{k}": v[i] for k, v in out.items() for i, name in enumerate(names)}
        return EvalOutput(metrics=flat, code=jnp.zeros((batch.x.shape[0], 0), jnp.float32))

    project = gs[0].objective.project  # the same for every group (unit-norm decoder rows)
    return Objective(loss_fn, eval_fn, None if project is None else jax.vmap(project), None)


def member_state(state: ts.TrainState, i: int) -> ts.TrainState:
    """Member i's own TrainState (host arrays): what its single run's checkpoint holds at the same step."""
    take = lambda tree: jax.tree.map(lambda a: np.asarray(a)[i], jax.device_get(tree))  # noqa: E731
    model_state = take(state.model_state)
    rng = model_state.pop(HPARAMS)[RNG]
    return ts.TrainState(
        step=np.asarray(jax.device_get(state.step)), params=take(state.params), model_state=model_state,
        opt_state=take(state.opt_state), rng=rng,
    )  # fmt: skip
