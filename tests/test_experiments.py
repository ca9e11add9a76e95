"""Experiments: `runs.train_or_load` reuses a finished run only when its config matches, every experiment imports
as a package (`python -m experiments.<name>.run`, no sys.path edits), and the cheapest one runs end to end."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from aejax import jobs, runs
from configs import mnist_ae

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.parent.name for p in (ROOT / "experiments").glob("*/run.py"))


def _finished(workdir, config, results):
    os.makedirs(workdir)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    (workdir / "results.json").write_text(json.dumps(results))


def _fake_jobs(monkeypatch, calls):
    """Every job replaced by one that records (registered job name, workdir) and returns {"trained": name}."""

    def get_job(trainer):
        name = jobs.JOBS.get(jobs.job_name(trainer)) and jobs.job_name(trainer)  # unknown names still raise
        return jobs.Job(lambda c, w: calls.append((name, w)) or {"trained": name}, None)

    monkeypatch.setattr(jobs, "get_job", get_job)


def test_train_or_load_reads_a_finished_run_and_trains_otherwise(tmp_path, monkeypatch):
    calls = []
    _fake_jobs(monkeypatch, calls)
    config = mnist_ae.get_config("runlocal")
    done = tmp_path / "done"
    _finished(done, config, {"test_sq_err": 1.5})
    assert runs.train_or_load(config, str(done)) == {"test_sq_err": 1.5} and calls == []
    # Where the data are read from is not part of the run.
    config.data_dir = "/elsewhere"
    assert runs.train_or_load(config, str(done)) == {"test_sq_err": 1.5} and calls == []
    # A different run in the same workdir (more steps) goes to the job, which resumes it.
    config.num_train_steps = 40
    assert runs.train_or_load(config, str(done)) == {"trained": "train"} and calls == [("train", str(done))]
    # No results.json: trained.
    assert runs.train_or_load(config, str(tmp_path / "new")) == {"trained": "train"}
    assert calls == [("train", str(done)), ("train", str(tmp_path / "new"))]


def test_train_or_load_runs_the_configs_job(tmp_path, monkeypatch):
    calls = []
    _fake_jobs(monkeypatch, calls)
    config = mnist_ae.get_config("runlocal")
    with config.unlocked():
        config.trainer = "jobs.stacked"  # the spelling of configs before the registry
    assert runs.train_or_load(config, str(tmp_path / "run")) == {"trained": "stacked"}
    with config.unlocked():
        config.trainer = "stacekd"
    with pytest.raises(KeyError, match="Known jobs"):
        runs.train_or_load(config, str(tmp_path / "typo"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_imports_as_a_package_and_parses_its_flags(name, monkeypatch, capsys):
    assert len(EXPERIMENTS) == 14  # a new experiment updates this count on purpose
    source = (ROOT / "experiments" / name / "run.py").read_text()
    assert "sys.path" not in source
    module = importlib.import_module(f"experiments.{name}.run")
    monkeypatch.setattr(sys, "argv", [f"experiments/{name}/run.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0 and "--" in capsys.readouterr().out


def test_the_cheapest_experiment_runs_end_to_end_as_a_module(tmp_path, assert_figure):
    # kavukcuoglu_2008 --runlocal: three 20-step runs and the filter analysis (~60-90 s on 2 loaded cores); the
    # other experiments' runlocal modes cost 3-8 minutes each there, so they are only imported above.
    cmd = [sys.executable, "-m", "experiments.kavukcuoglu_2008.run", "--runlocal", f"--workdir={tmp_path}",
           f"--data_dir={tmp_path / 'tfds'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for method in ("kl_sparse", "dae"):
        run = json.loads((tmp_path / method / "results.json").read_text())
        assert run["num_steps"] == 20
        assert summary[f"{method}_test_sq_err"] == run["test_sq_err"]
    assert set(summary["patches"]) == {"psd", "kl_sparse", "dae"}
    assert_figure(tmp_path / "filters_comparison.png")
