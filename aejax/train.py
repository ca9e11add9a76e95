"""The default job "train": build the run (`aejax.build`), train it through the one loop (`aejax.loop`), analyse
it (`aejax.analysis.run_analysis`); `reanalyse` repeats the evaluation and analysis of a finished run.

    python launch.py --config=configs/mnist_ae.py --workdir=runs/mnist_ae     # train_and_evaluate
    python launch.py --workdir=runs/mnist_ae --eval_only                       # reanalyse
"""

import json
import os

import jax
import ml_collections

from aejax import build, checkpoint, loop, objectives, runs
from aejax import train_step as ts
from aejax.analysis import reports as reports_lib
from aejax.analysis import run_analysis


def _read_results(path: str) -> dict:
    if not os.path.exists(path):
        return {}
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
      loop.NonFiniteLossError: if a step produced a non-finite loss, gradient or parameter norm.
    """
    workdir, mesh, train_split, test_split = build.setup_run(config, workdir)
    b = build.build(config, train_split)
    rng = jax.random.key(config.seed)
    init_fn = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, rng, init_params)
    before = build.stored_config(workdir)
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
            on_start=build.record_config(config, workdir, before),
        )
    except checkpoint.IncompatibleCheckpointError as e:
        raise build.incompatible_config_error(e, config, before) from e

    results_path = os.path.join(workdir, "results.json")
    examples_per_s = result.examples_per_s
    if examples_per_s is None:  # relaunching a finished run keeps its rate
        examples_per_s = _read_results(results_path).get("examples_per_s")
    ev = result.last_eval
    results = {
        "dataset": config.dataset,
        "num_train": int(len(train_split.labels)),
        "num_test": int(len(test_split.labels)),
        "code_dim": int(ev.code.shape[1]),
        "num_steps": b.settings.num_steps,
        **ev.means(objectives.TEST_PREFIX),
        "eval_time_s": round(ev.time_s, 2),
        "train_time_s": result.train_time_s,
        "examples_per_s": examples_per_s,
        "steps_per_call": result.steps_per_call,
        "num_devices": int(mesh.devices.size),
    }
    variables = {"params": result.state.params, **result.state.model_state}
    if jax.process_index() == 0:
        ctx = reports_lib.RunContext(
            config, workdir, b.model, b.likelihood, jax.device_get(variables), train_split, test_split, ev
        )
        results.update(run_analysis.analyse(ctx))
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-runs evaluation and the after-training analysis (PCA baseline, figures, reports) of a finished run of
    this job, without training, and updates its results.json.

    Args:
      workdir: the run's workdir.
      reports: comma-separated reports to run instead of the config's `analysis.reports` (None: the config's).

    Returns:
      The updated results dict: "test_<metric>" from the fresh evaluation, the analysis numbers, and every
      other entry of the old results.json (timings) kept.

    Raises:
      FileNotFoundError: without config.json or checkpoints; KeyError: for an unknown report.
    """
    run = runs.load_run(workdir)
    config = run.config
    if reports is not None:
        config = ml_collections.ConfigDict(config.to_dict())
        config.analysis.reports = reports
        config.lock()
    eval_step = ts.make_eval_step(run.objective.eval_fn, run.mesh)
    ev = loop.evaluate(
        run.state, eval_step, run.test_split.x, run.test_split.labels, run.mesh, config.eval_batch_size,
        seed=config.seed, mask=run.test_split.mask,
    )  # fmt: skip
    path = os.path.join(run.workdir, "results.json")
    results = _read_results(path)
    results.update(ev.means(objectives.TEST_PREFIX))
    results["eval_time_s"] = round(ev.time_s, 2)
    if jax.process_index() == 0:
        ctx = reports_lib.RunContext(
            config, run.workdir, run.model, run.likelihood, run.variables, run.train_split, run.test_split, ev
        )
        results.update(run_analysis.analyse(ctx))
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    return results
