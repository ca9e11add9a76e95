"""Registered jobs: what `config.trainer` names ("train", the default, "stacked", "finetune", "score_dae",
"sequence", ...). A job builds differently (model, objective, data) but trains through the one loop
(`aejax.loop.run`); each is one module of this package that registers a `Job`:

    JOB = JOBS.register("stacked")(Job(train_and_evaluate, reanalyse))    # in aejax/jobs/stacked.py

    get_job(config.get("trainer", "train")).train_and_evaluate(config, workdir)   # launch.py
    get_job(stored_config.trainer).reanalyse(workdir, reports=None)                # aejax.runs.reanalyse

Adding a job is adding a module; the contract test (tests/test_contracts.py) runs every registered job once.
"""

from collections.abc import Callable
from typing import NamedTuple

from aejax.registry import Registry

DEFAULT = "train"
OLD_PREFIX = "jobs."  # configs before the registry named a job by its module, e.g. "jobs.stacked"


class Job(NamedTuple):
    """The protocol of a job.

    Attributes:
      train_and_evaluate: (config, workdir) -> results dict, also written to `<workdir>/results.json`; resumes
        from the workdir's checkpoints; raises ValueError / KeyError on a bad config before any compute.
      reanalyse: (workdir, *, reports: str | None) -> results dict: the evaluation and analyses of a finished run
        from its own config.json, without training (`python launch.py --workdir=DIR --eval_only`).
    """

    train_and_evaluate: Callable[..., dict]
    reanalyse: Callable[..., dict]


JOBS = Registry("job", package=__name__)


def job_name(trainer: str | None) -> str:
    """The registered name of a `config.trainer` value: None / "" -> "train"; an old module spelling
    "jobs.<name>" -> "<name>" (so a stored config.json of an old run still re-analyses)."""
    if not trainer:
        return DEFAULT
    return trainer.removeprefix(OLD_PREFIX)


def get_job(trainer: str | None) -> Job:
    """The job `config.trainer` names (see `job_name`).

    Raises:
      KeyError: for an unknown job; the message lists the registered ones.
    """
    return JOBS.get(job_name(trainer))
