"""train_and_evaluate(config, workdir): data, model, objective and optimizer of a config, trained by the one loop
(`aejax.loop`), then the run's results (results.json, figures, reports). `analyse` is the after-training part,
which `aejax.runs.reanalyse` also runs on a finished run.
"""

import functools
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import checkpoint, loop, objectives, optim, plots, sharding
from aejax import train_step as ts
from aejax.analysis import embedding, pca, reports
from aejax.data import classes, datasets, pipeline, transforms
from aejax.likelihoods import Likelihood, get_likelihood
from aejax.metric_writer import read_metrics
from aejax.models import AbstractAutoencoder, get_model

# Kept here for callers of the trainer; the loop owns the check.
NonFiniteLossError = loop.NonFiniteLossError


def load_data(config: ml_collections.ConfigDict) -> tuple[datasets.Split, datasets.Split]:
    """The train and test splits of `config.dataset`, with the config's transforms applied (a training split
    under dynamic binarisation stays grey; the loader samples it every step). `config.train_classes` ("" all,
    "3", "1,7") keeps only those classes of the train split; the test split is whole (`aejax.data.classes`).

    Raises:
      KeyError / FileNotFoundError / ValueError: for a dataset that is unknown, missing or unreadable, bad
        transforms (see `datasets.load_split`, `transforms.Transforms.from_config`), or a train class that is
        not in the data.
    """
    t = transforms.Transforms.from_config(config.get("transforms"))
    load = dict(data_dir=config.data_dir, manual_dir=config.manual_dir)
    train_split = datasets.load_split(config.dataset, "train", **load)
    # .get: runs saved before the field existed trained on every class.
    train_split = classes.select_classes(train_split, classes.parse_classes(config.get("train_classes", "")))
    test_split = datasets.load_split(config.dataset, "test", **load)
    return transforms.apply_splits(train_split, test_split, t)  # z-normalisation statistics from train_split


def setup_run(config: ml_collections.ConfigDict, workdir: str):
    """The workdir (absolute, created), the mesh and the data of a run, failing early on bad input.

    Returns:
      (absolute workdir, mesh, train Split, test Split).

    Raises:
      ValueError: if the batch size does not divide over the devices; KeyError / FileNotFoundError for a
        dataset that is unknown or missing (see `datasets.load_split`).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(config.batch_size, mesh)
    train_split, test_split = load_data(config)
    return workdir, mesh, train_split, test_split


def make_loader(config, split: datasets.Split, *, seed: int) -> pipeline.InMemoryLoader:
    """The training loader of a split: seeded per-epoch order, this host's rows, dynamic binarisation if set."""
    t = transforms.Transforms.from_config(config.get("transforms"))
    return pipeline.InMemoryLoader(
        split.x,
        split.labels,
        global_batch_size=config.batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=transforms.dynamic_binarizer(t, seed, jax.process_index()),
        mask=split.mask,
    )


def make_init_fn(model: AbstractAutoencoder, tx, input_shape, mesh, rng: jax.Array, init_params=None):
    """() -> a fresh TrainState on the mesh: the model's variables from split(rng)[0], the state's base key
    split(rng)[1] ("params" replaced by `init_params` when given; other collections such as "batch_stats"
    from the init).

    Raises:
      ValueError: if `init_params` does not have the model's parameter shapes.
    """
    init_rng, state_rng = jax.random.split(rng)

    def init(params):
        variables = model.init(init_rng, jnp.zeros((1, *input_shape), jnp.float32))
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return ts.init_state(variables["params"] if params is None else params, tx, state_rng, model_state)

    if init_params is not None:
        want = checkpoint.leaf_shapes(jax.eval_shape(lambda: init(None).params))
        got = checkpoint.leaf_shapes(jax.tree.map(jnp.asarray, init_params))
        if got != want:
            diff = "; ".join(checkpoint.describe_difference(got, want)[:6])
            raise ValueError(f"init_params do not match the model's parameters: {diff}.")
    # init_params is an argument, not a closed-over constant, so large kernels are not baked into the program.
    return functools.partial(jax.jit(init, out_shardings=sharding.replicated(mesh)), init_params)


class Built(NamedTuple):
    """What a config builds: the pieces of a run, before any training."""

    model: AbstractAutoencoder
    likelihood: Likelihood
    objective: objectives.Objective
    tx: Any
    settings: loop.LoopSettings
    loader: pipeline.InMemoryLoader


def build(config: ml_collections.ConfigDict, train_split: datasets.Split) -> Built:
    """Model, likelihood, objective, optimizer, loop settings and loader of `config`.

    Raises:
      KeyError: for unknown model, likelihood, objective, corruption, regularizer or optimizer names.
      ValueError: for bad step counts, intervals or optimizer hyperparameters (naming the config field).
    """
    loader = make_loader(config, train_split, seed=config.seed)
    settings = loop.LoopSettings.from_config(config, loader.steps_per_epoch)
    model = get_model(config.model_name, input_shape=tuple(train_split.x.shape[1:]), **config.model)
    likelihood = get_likelihood(config.likelihood)
    objective = objectives.from_config(config, model, likelihood)
    tx = optim.make_optimizer(config.optimizer, settings.num_steps)
    return Built(model, likelihood, objective, tx, settings, loader)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """["model.code_dim: 8 -> 16", ...]: the fields whose values differ between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def stored_config(workdir: str) -> dict | None:
    """The config.json of a workdir as a dict, or None."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, init_params=None) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and writes the run's results.

    Args:
      config: the run's config (see configs/mnist_ae.py).
      workdir: where checkpoints, metrics, figures, config.json and results.json go.
      init_params: optional "params" collection of the model to start from instead of the random init (e.g.
        greedy layer-wise pretraining, `aejax.jobs.stacked`); ignored when `workdir` holds a checkpoint.

    Returns:
      The dict written to `<workdir>/results.json`: "test_<metric>" (the mean of every metric of the
      objective's eval over the test split, e.g. test_sq_err, squared error per image summed over pixels, and
      test_nll, nats), the PCA baseline, timings (train_time_s; eval_time_s, the wall time of the final
      evaluation of the test split, e.g. what a VAE's k-sample bound cost) and the reports' numbers.

    Raises:
      ValueError / KeyError: on a bad config or `init_params` whose shapes differ from the model's, before any
        training; a relaunch whose config builds another state structure than the workdir's checkpoint holds
        (the message names the differing config fields). config.json is written only once training starts.
      NonFiniteLossError: if a step produced a non-finite loss, gradient or parameter norm.
    """
    workdir, mesh, train_split, test_split = setup_run(config, workdir)
    b = build(config, train_split)
    init_fn = make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(config.seed), init_params)
    before = stored_config(workdir)

    def on_start(start: int) -> None:  # the state restored or initialised: now config.json may describe the run
        if start and before is not None:
            changed = config_differences(before, json.loads(config.to_json_best_effort()))
            if changed and jax.process_index() == 0:
                print(f"Resuming with changed config fields: {'; '.join(changed)}")
        if jax.process_index() == 0:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2))

    try:
        result = loop.run(
            settings=b.settings,
            mesh=mesh,
            objective=b.objective,
            tx=b.tx,
            init_fn=init_fn,
            loader=b.loader,
            workdir=workdir,
            eval_data=(test_split.x, test_split.labels, test_split.mask),
            eval_seed=config.seed,
            meta={"dataset": config.dataset},
            on_start=on_start,
        )
    except checkpoint.IncompatibleCheckpointError as e:
        changed = config_differences(before or {}, json.loads(config.to_json_best_effort()))
        raise ValueError(
            f"{e}\nThe config differs from the run's config.json in: {'; '.join(changed) or '(no field)'}. "
            "Use another --workdir for a different model, or relaunch with the run's own config."
        ) from e

    results_path = os.path.join(workdir, "results.json")
    examples_per_s = result.examples_per_s
    if examples_per_s is None and os.path.exists(results_path):  # relaunching a finished run keeps its rate
        with open(results_path) as f:
            examples_per_s = json.load(f).get("examples_per_s")
    ev = result.last_eval  # the final step's evaluation; a relaunched finished run evaluates here
    if ev is None:
        eval_step = ts.make_eval_step(b.objective.eval_fn, mesh)
        ev = loop.evaluate(result.state, eval_step, *(test_split.x, test_split.labels), mesh,
                           config.eval_batch_size, seed=config.seed, mask=test_split.mask)  # fmt: skip
    results = {
        "dataset": config.dataset,
        "num_train": int(len(train_split.labels)),
        "num_test": int(len(test_split.labels)),
        "code_dim": int(ev.code.shape[1]),
        "num_steps": b.settings.num_steps,
        **ev.means("test_"),
        "eval_time_s": round(ev.time_s, 2),
        "train_time_s": result.train_time_s,
        "examples_per_s": examples_per_s,
        "steps_per_call": result.steps_per_call,
        "num_devices": int(mesh.devices.size),
    }
    variables = {"params": result.state.params, **result.state.model_state}
    if jax.process_index() == 0:
        ctx = reports.RunContext(
            config, workdir, b.model, b.likelihood, jax.device_get(variables), train_split, test_split, ev
        )
        results.update(analyse(ctx))
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
    return results


def analyse(ctx: reports.RunContext) -> dict:
    """After training: the PCA baseline at the same code size, the run's figures and the configured reports.

    Writes reconstructions.png (images only), latent.png, loss_curves.png and each report's files into
    `ctx.workdir`. Returns the numbers for results.json: "pca_sq_err", "pca_time_s", "beats_pca" (when the
    objective reports "sq_err" and the code is undercomplete) and "<report>/<key>".
    """
    config, workdir, ev = ctx.config, ctx.workdir, ctx.eval
    out = {}
    k = ev.code.shape[1]
    dim = int(np.prod(ctx.train_split.x.shape[1:]))
    n = min(10, len(ctx.test_split.x))
    rows, titles = [ctx.test_split.x[:n]], ["original"]
    if ctx.test_split.kind == "image":
        output = ctx.model.apply(ctx.variables, jnp.asarray(ctx.test_split.x[:n])).decoder_output
        rows, titles = rows + [np.asarray(ctx.likelihood.mean(output))], titles + ["autoencoder"]
    if config.analysis.pca_baseline and "sq_err" in ev.metrics and k < dim:  # overcomplete: no PCA counterpart
        t0 = time.perf_counter()
        recon = pca.pca_reconstruction(ctx.train_split.x, ctx.test_split.x, k)
        pca_err = np.square(recon - ctx.test_split.x).reshape(len(recon), -1).sum(axis=1)
        out["pca_sq_err"] = float(pca_err.mean())
        out["pca_time_s"] = round(time.perf_counter() - t0, 2)
        out["beats_pca"] = bool(ev.metrics["sq_err"].mean() < pca_err.mean())
        rows.append(np.clip(recon[:n], 0, 1))  # shown like the pixels; the error above is unclipped
        titles.append(f"PCA, k={k}")
    if ctx.test_split.kind == "image":
        plots.image_rows(rows, titles, os.path.join(workdir, "reconstructions.png"), n=n)
    points, how = embedding.embed_2d(ev.code, config.analysis.embedding, seed=config.seed)
    plots.latent_scatter(
        points, ctx.test_split.labels, os.path.join(workdir, "latent.png"), title=f"{how}, test set"
    )
    plots.loss_curves(read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
    out.update(reports.run(config.analysis.reports, ctx))
    return out
