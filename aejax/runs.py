"""Finished runs: load one from its workdir, and re-run its evaluation and reports without training.

    run = runs.load_run("runs/mnist_ae")             # config, model, trained state, data, objective
    codes = run.model.apply(run.variables, run.test_split.x[:10], method="encode")
    runs.reanalyse("runs/mnist_ae", reports="sparsity")   # = python launch.py --workdir=... --eval_only

Any workdir with one network's checkpoints is loadable (the main job, every config whose trainer is the
default, the sequence job, and the stacked job's sub-runs `finetune/` and `random_init/`): `load_run` builds
the run with `aejax.build`, as the trainer did. `reanalyse` hands the run to the `reanalyse` of the job its
config.json names (`aejax.jobs.JOBS`).
"""

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
from jax.sharding import Mesh

from aejax import build, checkpoint, jobs, sharding
from aejax import train_step as ts
from aejax.data.datasets import Split
from aejax.likelihoods import Likelihood
from aejax.models import AbstractAutoencoder
from aejax.objectives import Objective


def _tuples(value):
    # JSON turns the config's tuples (layer widths, ...) into lists; flax module attributes want tuples.
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The locked config a run was trained with (`<workdir>/config.json`).

    Raises:
      FileNotFoundError: if the workdir holds no config.json (no run started there).
    """
    stored = build.stored_config(os.path.abspath(workdir))
    if stored is None:
        raise FileNotFoundError(f"{os.path.abspath(workdir)} holds no config.json: no run was trained there.")
    return ml_collections.ConfigDict(_tuples(stored)).lock()


class Run(NamedTuple):
    """A trained run, ready to apply or analyse.

    Attributes:
      config: its config. workdir: absolute path. step: the checkpoint's step.
      model, likelihood, objective: as the config builds them.
      state: the restored TrainState (replicated on `mesh`).
      train_split, test_split: the data as the model saw it (transforms applied).
      mesh: the data mesh over this process's view of the devices.
    """

    config: ml_collections.ConfigDict
    workdir: str
    step: int
    model: AbstractAutoencoder
    likelihood: Likelihood
    objective: Objective
    state: ts.TrainState
    train_split: Split
    test_split: Split
    mesh: Mesh

    @property
    def variables(self) -> dict[str, Any]:
        """{"params": ..., plus other collections}, host arrays, for `model.apply`."""
        return jax.device_get({"params": self.state.params, **self.state.model_state})


def load_run(workdir: str, *, step: int | None = None) -> Run:
    """Loads a trained network from its workdir: config, model, the checkpoint at `step` (default the
    newest) and the data.

    Raises:
      FileNotFoundError: without config.json or without checkpoints (for a job whose networks are sub-runs,
        such as the stacked job's `finetune/`, the message names them).
      ValueError: if the checkpoint does not hold the state the config builds, or for a language-model run
        (`aejax.jobs.lm.load_lm` loads those).
    """
    workdir = os.path.abspath(workdir)
    config = load_config(workdir)
    if config.get("trainer") == "lm":  # not an autoencoder: its own loader reads no data
        raise ValueError(f"{workdir} is a language-model run: load it with aejax.jobs.lm.load_lm.")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        subruns = sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d, "checkpoints")))
        hint = f"; its trained networks are the sub-runs {', '.join(subruns)}" if subruns else ""
        raise FileNotFoundError(f"{workdir} holds no checkpoints of its own{hint}.")
    mesh = sharding.make_mesh()
    train_split, test_split = build.load_data(config)
    b = build.build(config, train_split)
    init_fn = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(config.seed))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint.")
        if step is None:  # the newest readable one; an unreadable newer one is reported, not moved
            state, _ = ckpt.restore_or_init(init_fn)
            for skipped, why in sorted(ckpt.skipped.items(), reverse=True):
                print(f"Skipped the unreadable checkpoint at step {skipped} in {workdir}: {why}")
        else:
            ckpt.check_compatible(step, jax.eval_shape(init_fn))
            state, _ = ckpt.restore(step, init_fn())
    finally:
        ckpt.close()
    step = int(state.step)
    return Run(config, workdir, step, b.model, b.likelihood, b.objective, state, train_split, test_split, mesh)


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-runs the evaluation and after-training analysis of a finished run without training, through the
    `reanalyse` of the job its config.json names (`config.trainer`; old spellings such as "jobs.stacked" are
    accepted), and updates its results.json.

    Args:
      workdir: the run's workdir.
      reports: comma-separated reports to run instead of the config's `analysis.reports` (None: the config's).

    Returns:
      The job's updated results dict (for the default job: "test_<metric>" from the fresh evaluation, the
      analysis numbers, and every other entry of the old results.json kept).

    Raises:
      FileNotFoundError: without config.json; KeyError: for a job that is not registered.
    """
    job = jobs.get_job(load_config(workdir).get("trainer", jobs.DEFAULT))
    return job.reanalyse(workdir, reports=reports)


# Where the data are read from, not what the run is: a finished run is reused whatever these say.
_LOCATION_FIELDS = ("data_dir", "manual_dir")


def train_or_load(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The results of `config`'s run in `workdir`: read back if it finished there, else trained by its job first.

    An experiment calls this once per run of its sweep, so a relaunch reuses every finished run and resumes an
    interrupted one from its checkpoint (the job's own resume).

    Args:
      config: the run's config; `config.trainer` names its registered job (default "train").
      workdir: the run's workdir.

    Returns:
      The run's results.json as a dict: read back when `workdir` holds a results.json and its config.json (when
      there is one) equals `config` up to the data location fields (data_dir, manual_dir); otherwise the dict
      the job's `train_and_evaluate(config, workdir)` returns (a changed config resumes the run with the new
      one, e.g. more steps or other reports).

    Raises:
      KeyError: for an unknown `config.trainer` (listing the registered jobs); whatever the job raises.
    """
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        stored = build.stored_config(workdir)
        wanted = json.loads(config.to_json_best_effort())
        if stored is None or _without_location(stored) == _without_location(wanted):
            with open(path) as f:
                return json.load(f)
        print(f"{workdir}: its config.json differs from the config asked for; running the job again (it resumes).")
    return jobs.get_job(config.get("trainer", jobs.DEFAULT)).train_and_evaluate(config, workdir)


def _without_location(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _LOCATION_FIELDS}
