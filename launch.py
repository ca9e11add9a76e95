"""Launches an aejax experiment from an ml-collections config.

  python launch.py                                           # the main job: configs/mnist_ae.py
  python launch.py --config=configs/mnist_ae.py:code2 --config.num_epochs=10 --workdir=runs/code2

  python launch.py --workdir=runs/mnist_ae --eval_only [--reports=sparsity]   # re-analyse, no training

A workdir that holds checkpoints is resumed from the latest one. The default workdir is runs/<config>[_<arg>].
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = "configs/mnist_ae.py"

config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_CONFIG),
    "Config file, optionally with an argument: path/to/config.py:arg.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, figures and results go.")
flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-process: call jax.distributed.initialize (on SLURM / TPU pods / Open MPI the cluster is auto-detected; "
    "elsewhere pass --coordinator_address, --num_processes and --process_id).",
)
flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0's coordinator.")
flags.DEFINE_integer("num_processes", None, "With --distributed: the number of processes.")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's index in [0, num_processes).")
flags.DEFINE_integer(
    "num_cpu_devices", None, "Simulated CPU devices of this process (jax_num_cpu_devices), e.g. for a local test."
)
flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "With --distributed: seconds after which a silent process is declared lost and the "
    "others stop with an error instead of waiting forever.",
)
flags.DEFINE_integer(
    "initialization_timeout", 300, "With --distributed: seconds to wait for every process to join."
)
flags.DEFINE_bool(
    "eval_only",
    False,
    "Re-run evaluation, figures and reports of the finished run in --workdir with its own config.json, "
    "without training (--config is ignored).",
)
flags.DEFINE_string("reports", None, "With --eval_only: comma-separated reports instead of the run's own.")


def default_workdir(config_flag: str) -> str:
    path, _, arg = config_flag.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", name + (f"_{arg.replace(',', '_')}" if arg else ""))


def _summary(results: dict, extra: tuple[str, ...]) -> dict:
    """The test means of a job's results (every "test_<metric>": test_sq_err, test_error, ...) and `extra`."""
    from aejax import objectives

    keys = [k for k in results if k.startswith(objectives.TEST_PREFIX) and isinstance(results[k], float)]
    return {k: results[k] for k in [*keys, *extra] if k in results}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; -v 0 brings it back
    # The job: the one registered as config.trainer (aejax.jobs; default "train"), looked up after flag parsing
    # because importing JAX is slow and `--help` should not wait for it.
    if flags.FLAGS.distributed or flags.FLAGS.num_cpu_devices:
        import jax

        if flags.FLAGS.num_cpu_devices:
            jax.config.update("jax_num_cpu_devices", flags.FLAGS.num_cpu_devices)
        if flags.FLAGS.distributed:
            # CPU processes exchange gradients through Gloo (harmless for GPU / TPU processes).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(
                coordinator_address=flags.FLAGS.coordinator_address,
                num_processes=flags.FLAGS.num_processes,
                process_id=flags.FLAGS.process_id,
                initialization_timeout=flags.FLAGS.initialization_timeout,
                heartbeat_timeout_seconds=flags.FLAGS.heartbeat_timeout,
            )
    if flags.FLAGS.eval_only:
        if not flags.FLAGS.workdir:
            raise app.UsageError("--eval_only needs --workdir (the finished run to re-analyse).")
        from aejax import runs

        results = runs.reanalyse(flags.FLAGS.workdir, reports=flags.FLAGS.reports)
        summary = _summary(results, ("pca_sq_err",))
        print(f"Re-analysed {os.path.abspath(flags.FLAGS.workdir)}: {summary}")
        return
    from aejax import jobs

    job = jobs.get_job(flags.FLAGS.config.get("trainer", jobs.DEFAULT))  # an unknown name fails before compute
    workdir = flags.FLAGS.workdir or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
    print(f"workdir: {os.path.abspath(workdir)}")
    results = job.train_and_evaluate(flags.FLAGS.config, workdir)
    summary = _summary(results, ("pca_sq_err", "train_time_s"))
    print(f"Done. {summary}. Results, figures and TensorBoard logs in {os.path.abspath(workdir)}")


if __name__ == "__main__":
    app.run(main)
