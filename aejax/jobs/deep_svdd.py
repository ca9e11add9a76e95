"""Deep SVDD as a job (Ruff et al., ICML 2018, "Deep One-Class Classification"): pre-train a bias-free
autoencoder on the normal data (an ordinary aejax run of `config.pretrain`), take its encoder phi, fix the
centre c from the initial codes, then train phi through the one loop on the one-class or soft-boundary objective
(`aejax.objectives.deep_svdd`); score the test split by ||phi(x) - c||^2 (minus R^2) and run the reports
(`config.analysis.reports`, "anomaly" by default: the score beside the classical baselines).

Registered as "deep_svdd" (`config.trainer = "deep_svdd"`, configs/deep_svdd.py):

    python launch.py --config=configs/deep_svdd.py --config.train_classes=3 --workdir=runs/svdd3
    python launch.py --workdir=runs/svdd3 --eval_only [--reports=anomaly]

The workdir holds `pretrain/` (the autoencoder run, unless `deep_svdd.pretrained_workdir` names another finished
run), the Deep SVDD checkpoints (the encoder, c and R^2 in the "svdd" collection), metrics, config.json and
results.json: "test_svdd_dist_sq", "test_svdd_score" (means), "radius_sq", "center_norm", timings and the
reports' numbers ("anomaly/svdd_score/roc_auc", ...).
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from aejax import build, loop, optim, runs, sharding
from aejax import train_step as ts
from aejax.analysis import reports as reports_lib
from aejax.jobs import JOBS, Job
from aejax.objectives import deep_svdd as svdd


def _check(config: ml_collections.ConfigDict) -> None:
    s = config.deep_svdd
    if s.objective not in svdd.KINDS:
        raise KeyError(f"Unknown config.deep_svdd.objective {s.objective!r}. Known: {', '.join(svdd.KINDS)}.")
    if not 0.0 < s.nu <= 1.0:
        raise ValueError(f"config.deep_svdd.nu={s.nu} must be in (0, 1].")
    if not s.eps > 0:
        raise ValueError(f"config.deep_svdd.eps={s.eps} must be > 0.")
    if s.objective == "soft_boundary" and s.radius_every < 1:
        raise ValueError(f"config.deep_svdd.radius_every={s.radius_every} must be >= 1 for the soft boundary.")
    if config.pretrain.get("trainer", "train") != "train":
        raise ValueError(f"config.pretrain.trainer={config.pretrain.trainer!r}: pre-train with the default job.")


def _encoder_variables(net: svdd.DeepSVDDNet, pretrained: dict, x: np.ndarray) -> dict:
    """The wrapper's variables with every encoder leaf from the pre-trained autoencoder's variables (the
    wrapper only calls encode, so only the encoder's leaves exist); "svdd" as initialised."""
    init = net.init(jax.random.key(0), jnp.asarray(x[:1]))
    out = {}
    for collection, tree in init.items():
        flat = traverse_util.flatten_dict(dict(tree))
        source = traverse_util.flatten_dict(dict(pretrained.get(collection, {})))
        for path in flat:
            if path[0] != svdd.ENCODER:
                continue
            if path[1:] not in source or np.shape(source[path[1:]]) != np.shape(flat[path]):
                raise ValueError(f"The pre-trained {collection} do not fit the encoder at {'/'.join(path[1:])}.")
            flat[path] = jnp.asarray(source[path[1:]])
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def _with_encoder(ae_variables: dict, trained: dict) -> dict:
    """The autoencoder's variables with its encoder leaves replaced by the Deep SVDD-trained ones (the decoder
    stays the pre-trained one): what the reports apply as `ctx.model`."""
    out = {}
    for collection, tree in ae_variables.items():
        flat = traverse_util.flatten_dict(dict(tree))
        new = traverse_util.flatten_dict(dict(trained.get(collection, {})))
        flat.update({p[1:]: v for p, v in new.items() if p[0] == svdd.ENCODER})
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def _codes(net, variables, x: np.ndarray, batch: int) -> np.ndarray:
    apply = jax.jit(lambda v, xb: net.apply(v, xb))
    return np.concatenate([np.asarray(apply(variables, x[i : i + batch])) for i in range(0, len(x), batch)])


def _report_config(config: ml_collections.ConfigDict, pre: ml_collections.ConfigDict, reports: str | None):
    """The pre-training run's config (data, classes, seed: what the reports read) with this run's analysis."""
    c = ml_collections.ConfigDict(pre.to_dict())
    c.analysis.update(config.analysis.to_dict())
    if reports is not None:
        c.analysis.reports = reports
    return c.lock()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, reports: str | None = None) -> dict:
    """Pre-trains (or reuses) the autoencoder, trains Deep SVDD on its encoder, evaluates and reports.

    Args:
      config: see configs/deep_svdd.py. workdir: the run's directory (resumed from its checkpoints).
      reports: comma-separated reports instead of `config.analysis.reports` (None: the config's).

    Returns:
      The results dict, also written to <workdir>/results.json.

    Raises:
      KeyError / ValueError: for an unknown objective, nu outside (0, 1], eps <= 0, bad steps or optimizer
        fields, or an encoder that can collapse (bias terms, bounded activations; `svdd.check_no_collapse`,
        checked on the network's shapes before the pre-training starts).
    """
    _check(config)
    s = config.deep_svdd
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    pre_dir = s.pretrained_workdir or os.path.join(workdir, "pretrain")
    pre_config = runs.load_config(pre_dir) if s.pretrained_workdir else config.pretrain
    # The collapse guard on the network's parameter shapes, before any training.
    train_split, _ = build.load_data(pre_config)
    b = build.build(pre_config, train_split, batch_size=min(pre_config.batch_size, len(train_split.x)))
    net = svdd.DeepSVDDNet(b.model)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, *train_split.x.shape[1:])))
    svdd.check_no_collapse(shapes["params"], pre_config.model)
    optim.make_optimizer(config.optimizer, max(config.num_train_steps, 1))  # fails before any training

    pre_results = runs.train_or_load(pre_config, pre_dir) if not s.pretrained_workdir else {}
    run = runs.load_run(pre_dir)
    net = svdd.DeepSVDDNet(run.model)
    train_x = np.asarray(run.train_split.x)
    variables = _encoder_variables(net, run.variables, train_x)
    center = svdd.initial_center(_codes(net, variables, train_x, config.eval_batch_size), s.eps)
    variables[svdd.COLLECTION] = {svdd.CENTER: jnp.asarray(center), svdd.RADIUS_SQ: jnp.zeros((), jnp.float32)}
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}

    batch_size = min(config.batch_size, len(train_x))
    loader = build.make_loader(run.config, run.train_split, seed=config.seed, batch_size=batch_size)
    settings = loop.LoopSettings.from_config(config, loader.steps_per_epoch)
    settings = dataclasses.replace(settings, batch_size=batch_size)
    tx = optim.make_optimizer(config.optimizer, settings.num_steps)
    objective = svdd.make_objective(
        net, kind=s.objective, nu=s.nu, train_x=train_x, radius_every=s.radius_every, warmup_steps=s.warmup_steps
    )
    mesh = sharding.make_mesh()
    place = jax.jit(
        lambda p, ms: ts.init_state(p, tx, jax.random.key(config.seed), ms),
        out_shardings=sharding.replicated(mesh),
    )
    before = build.stored_config(workdir)
    result = loop.run(
        settings=settings,
        mesh=mesh,
        objective=objective,
        tx=tx,
        init_fn=lambda: place(params, model_state),
        loader=loader,
        workdir=workdir,
        eval_data=(run.test_split.x, run.test_split.labels),
        eval_seed=config.seed,
        meta={"pretrained_workdir": pre_dir},
        desc=f"deep svdd ({s.objective})",
        on_start=build.record_config(config, workdir, before),
    )
    ev = result.last_eval
    svdd_state = jax.device_get(result.state.model_state[svdd.COLLECTION])
    results = {
        "num_train": len(train_x),
        "num_test": len(run.test_split.x),
        "code_dim": int(ev.code.shape[1]),
        "num_steps": settings.num_steps,
        **{f"test_{k}": float(np.mean(v)) for k, v in ev.metrics.items()},
        "radius_sq": float(svdd_state[svdd.RADIUS_SQ]),
        "center_norm": float(np.linalg.norm(svdd_state[svdd.CENTER])),
        "train_time_s": result.train_time_s,
        "pretrain_train_time_s": pre_results.get("train_time_s"),
        "pretrain_test_sq_err": pre_results.get("test_sq_err"),
        "pretrained_workdir": pre_dir,
    }
    if jax.process_index() == 0:
        trained = jax.device_get({"params": result.state.params, **result.state.model_state})
        ctx = reports_lib.RunContext(
            _report_config(config, run.config, reports), workdir, run.model, run.likelihood,
            _with_encoder(run.variables, trained),
            run.train_split, run.test_split, ev,
        )  # fmt: skip
        results.update(reports_lib.run(ctx.config.analysis.reports, ctx))
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-evaluates a finished Deep SVDD run from its checkpoint (no step is taken) and re-runs the reports
    (`reports`, or the config's), with its own config.json; returns the updated results."""
    return train_and_evaluate(runs.load_config(workdir), workdir, reports=reports)


JOB = JOBS.register("deep_svdd")(Job(train_and_evaluate, reanalyse))
