"""train_and_evaluate(config, workdir): mesh, data, init or resume, the train loop, evaluation, checkpoints and
the run's results (results.json, figures)."""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from aejax import checkpoint, objectives, optim, plots, sharding
from aejax import train_step as ts
from aejax.analysis import pca, reports
from aejax.data import datasets, pipeline
from aejax.likelihoods import get_likelihood
from aejax.metric_writer import MetricWriter, read_metrics
from aejax.models import get_model


class NonFiniteLossError(FloatingPointError):
    """A train step produced a non-finite value; the last good checkpoint is kept."""


def check_finite(step0: int, window: list[dict]) -> None:
    """Raises NonFiniteLossError naming the first step (0-based, as `state.step`) and its non-finite terms."""
    for i, metrics in enumerate(window):
        bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(v)}
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise NonFiniteLossError(
                f"Non-finite value in train step {step0 + i}: {terms}. Stopping; the last good checkpoint is "
                "kept (lower the learning rate or a penalty weight and relaunch to resume from it)."
            )


def evaluate(params, eval_step, split: datasets.Split, mesh, batch_size: int) -> dict[str, np.ndarray]:
    """Per-example eval outputs over a whole split, in order: {"sq_err": [N], "nll": [N], "z": [N, K]}."""
    outs = []
    for batch, num_valid in pipeline.eval_batches(
        split.images, split.labels, batch_size=batch_size, multiple_of=mesh.devices.size
    ):
        out = eval_step(params, sharding.to_global(sharding.host_rows(batch), mesh))
        outs.append({k: np.asarray(v)[:num_valid] for k, v in jax.device_get(out).items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def setup_run(config: ml_collections.ConfigDict, workdir: str):
    """Creates the workdir (with config.json), the mesh and the data of a run, failing early on bad input.

    Returns:
      (absolute workdir, mesh, train Split, test Split).

    Raises:
      ValueError: if the batch size does not divide over the devices; KeyError / FileNotFoundError for a
        dataset that is unknown or missing (see `datasets.load_split`).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    mesh = sharding.make_mesh()
    sharding.check_batch_size(config.batch_size, mesh)
    load = dict(data_dir=config.data_dir, manual_dir=config.manual_dir)
    train_split = datasets.load_split(config.dataset, "train", **load)
    test_split = datasets.load_split(config.dataset, "test", **load)
    return workdir, mesh, train_split, test_split


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, init_params=None) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and writes the run's results.

    Args:
      config: the run's config (see configs/mnist_ae.py).
      workdir: where checkpoints, metrics, figures and results.json go.
      init_params: optional "params" collection of the model to start from instead of the random init (e.g.
        greedy layer-wise pretraining, `aejax.jobs.stacked`); ignored when `workdir` holds a checkpoint.

    Returns:
      The dict written to `<workdir>/results.json`.

    Raises:
      ValueError / KeyError: on a bad config or `init_params` whose shapes differ from the model's, before
        any training.
      NonFiniteLossError: if a step produced a non-finite loss, gradient or parameter norm.
    """
    workdir, mesh, train_split, test_split = setup_run(config, workdir)
    loader = pipeline.InMemoryLoader(
        train_split.images,
        train_split.labels,
        global_batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    num_steps = config.num_train_steps or config.num_epochs * loader.steps_per_epoch

    model = get_model(config.model_name, input_shape=train_split.images.shape[1:], **config.model)
    likelihood = get_likelihood(config.likelihood)
    tx = optim.make_optimizer(config.optimizer, num_steps)
    objective = objectives.from_config(config, model, likelihood)

    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))

    def init(params):
        if params is None:
            params = model.init(init_rng, jnp.zeros((1, *train_split.images.shape[1:]), jnp.float32))["params"]
        return ts.init_state(params, tx, state_rng)

    if init_params is not None:
        want = jax.eval_shape(lambda: init(None).params)
        got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), init_params)
        if got != want:
            raise ValueError(f"init_params {got} do not match the model's parameters {want}.")
    # init_params is an argument, not a closed-over constant, so large kernels are not baked into the program.
    init = functools.partial(jax.jit(init, out_shardings=sharding.replicated(mesh)), init_params)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    state, _ = ckpt.restore_or_init(init)
    start = int(state.step)
    if start and jax.process_index() == 0:
        print(f"Resuming from the checkpoint at step {start} of {num_steps} in {workdir}")

    train_step = ts.make_train_step(objective.loss_fn, tx, mesh, project=objective.project)
    eval_step = ts.make_eval_step(objective.eval_fn, mesh)
    writer = MetricWriter(workdir)
    window, window_start, t_window = [], start, time.perf_counter()
    t_start, examples_per_s = time.perf_counter(), []

    def flush(done: int) -> dict[str, float]:
        nonlocal window, window_start, t_window
        if not window:
            return {}
        host = jax.device_get(window)
        check_finite(window_start, host)
        now = time.perf_counter()
        rate = len(host) * config.batch_size / (now - t_window)
        if window_start > start:  # the first window includes compilation
            examples_per_s.append(rate)
        means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        writer.write(done, {**means, "examples_per_s": rate})
        window, window_start, t_window = [], done, now
        return {**means, "examples_per_s": rate}

    def save(done: int) -> None:
        meta = {"step": done, "data": loader.state(done), "dataset": config.dataset}
        ckpt.save(done, state, meta)

    try:
        with tqdm(total=num_steps, initial=start, disable=jax.process_index() != 0, desc="train") as bar:
            for step in range(start, num_steps):
                state, metrics = train_step(state, sharding.to_global(loader.batch(step), mesh))
                window.append(metrics)
                done = step + 1
                bar.update(1)
                if done % config.log_every == 0 or done == num_steps:
                    m = flush(done)
                    bar.set_postfix(loss=f"{m['loss']:.3f}", ex_per_s=f"{m['examples_per_s']:.0f}")
                if done % config.eval_every == 0 or done == num_steps:
                    ev = evaluate(state.params, eval_step, test_split, mesh, config.eval_batch_size)
                    writer.write(done, {"eval/sq_err": ev["sq_err"].mean(), "eval/nll": ev["nll"].mean()})
                if done % config.checkpoint_every == 0 or done == num_steps:
                    flush(done)  # never save a state that followed a non-finite step
                    save(done)
                if not window:  # examples/s measures training only, not evaluation or checkpointing
                    t_window = time.perf_counter()
    finally:
        ckpt.wait()  # an interrupted run still finishes writing its last good checkpoint
        writer.close()
    train_time = time.perf_counter() - t_start
    results_path = os.path.join(workdir, "results.json")
    if start and os.path.exists(results_path):  # relaunching a finished run keeps its recorded timings
        with open(results_path) as f:
            before = json.load(f)
        train_time += before.get("train_time_s", 0.0)
        examples_per_s = examples_per_s or ([before["examples_per_s"]] if before.get("examples_per_s") else [])

    ev = evaluate(state.params, eval_step, test_split, mesh, config.eval_batch_size)
    results = {
        "dataset": config.dataset,
        "num_train": int(len(train_split.labels)),
        "num_test": int(len(test_split.labels)),
        "code_dim": int(ev["z"].shape[1]),
        "num_steps": int(num_steps),
        "test_sq_err": float(ev["sq_err"].mean()),
        "test_nll": float(ev["nll"].mean()),
        "train_time_s": round(train_time, 2),
        "examples_per_s": float(np.median(examples_per_s)) if examples_per_s else None,
        "num_devices": int(mesh.devices.size),
    }
    if jax.process_index() == 0:
        results.update(_write_analysis(config, workdir, model, likelihood, state, train_split, test_split, ev))
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
    ckpt.close()
    return results


def _write_analysis(config, workdir, model, likelihood, state, train_split, test_split, ev) -> dict:
    """PCA baseline at the same code size, and the run's figures."""
    out = {}
    k = ev["z"].shape[1]
    dim = int(np.prod(train_split.images.shape[1:]))
    n = 10
    x = test_split.images[:n]
    output, _ = model.apply({"params": jax.device_get(state.params)}, jnp.asarray(x))
    rows, titles = [x, np.asarray(likelihood.mean(output))], ["original", "autoencoder"]
    if config.analysis.pca_baseline and k < dim:  # an overcomplete code has no PCA counterpart
        t = time.perf_counter()
        pca_recon = pca.pca_reconstruction(train_split.images, test_split.images, k)
        pca_err = np.square(pca_recon - test_split.images).reshape(len(pca_recon), -1).sum(axis=1)
        out["pca_sq_err"] = float(pca_err.mean())
        out["pca_time_s"] = round(time.perf_counter() - t, 2)
        out["beats_pca"] = bool(ev["sq_err"].mean() < pca_err.mean())
        rows.append(np.clip(pca_recon[:n], 0, 1))  # shown like the pixels; the error above is unclipped
        titles.append(f"PCA, k={k}")
    plots.image_rows(rows, titles, os.path.join(workdir, "reconstructions.png"), n=n)
    points, how = pca.embed_2d(ev["z"], config.analysis.embedding, seed=config.seed)
    plots.latent_scatter(points, test_split.labels, os.path.join(workdir, "latent.png"), title=f"{how}, test set")
    plots.loss_curves(read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
    ctx = reports.RunContext(
        config, workdir, model, likelihood, jax.device_get(state.params), train_split, test_split, ev
    )
    out.update(reports.run(config.analysis.reports, ctx))
    return out
