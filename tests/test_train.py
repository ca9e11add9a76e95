"""End to end: the real launch.py path on the runlocal config, kill-and-resume equality, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA

from aejax import loop, runs, train
from configs import mnist_ae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, **overrides):
    config = mnist_ae.get_config("runlocal")
    config.data_dir = data_dir
    for key, value in overrides.items():
        config[key] = value
    return config


def _final_params(workdir, step):
    return runs.load_run(str(workdir), step=step).variables["params"]


def test_launch_py_end_to_end_and_eval_only(tmp_path, data_dir, assert_figure):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "launch.py",
        "--config=configs/mnist_ae.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["num_train"] == 4000 and results["num_test"] == 1000
    assert results["num_steps"] == 20 and results["code_dim"] == 8
    # Both errors recomputed independently on the run's own splits: the model's from its checkpoint in float64
    # numpy, the baseline's with sklearn's PCA of the train split (K = the code size, 8).
    run = runs.load_run(str(workdir))
    flat = lambda a: np.asarray(a, np.float64).reshape(len(a), -1)  # noqa: E731
    test_x = flat(run.test_split.x)
    recon = flat(run.likelihood.mean(run.model.apply(run.variables, run.test_split.x).decoder_output))
    np.testing.assert_allclose(results["test_sq_err"], np.square(recon - test_x).sum(axis=1).mean(), rtol=1e-4)
    pca = PCA(n_components=8).fit(flat(run.train_split.x))
    pca_err = np.square(pca.inverse_transform(pca.transform(test_x)) - test_x).sum(axis=1).mean()
    np.testing.assert_allclose(results["pca_sq_err"], pca_err, rtol=1e-3)
    assert results["beats_pca"] == (results["test_sq_err"] < results["pca_sq_err"])
    assert_figure(workdir / "reconstructions.png", min_width=500)
    assert_figure(workdir / "latent.png")
    assert_figure(workdir / "loss_curves.png")
    assert json.loads((workdir / "config.json").read_text())["model"]["code_dim"] == 8
    assert list((workdir / "tb").iterdir()), "no TensorBoard event file"
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows if "loss" in r} == {5, 10, 15, 20}
    # Every metric of the objective's eval is logged at each evaluation (eval_every 10, and the last step).
    assert {r["step"] for r in rows if "eval/sq_err" in r and "eval/nll" in r} == {10, 20}

    # Re-analysis of the finished run, without training: same parameters, so the same test error; a report the
    # run did not have is added; no step is taken (no new metrics, no new checkpoint).
    (workdir / "latent.png").unlink()
    cmd = [sys.executable, "launch.py", f"--workdir={workdir}", "--eval_only", "--reports=sparsity"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((workdir / "results.json").read_text())
    np.testing.assert_allclose(again["test_sq_err"], results["test_sq_err"], rtol=1e-6)
    assert again["train_time_s"] == results["train_time_s"]  # the training record is kept
    assert "sparsity/mean_activation" in again
    assert_figure(workdir / "latent.png")
    assert_figure(workdir / "sparsity_histogram.png")
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == len(rows)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]


def test_config_typo_fails_with_suggestion(tmp_path):
    cmd = [sys.executable, "launch.py", f"--workdir={tmp_path}", "--config.num_epoch=3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "num_epochs" in proc.stderr and "Did you mean" in proc.stderr


def test_kill_and_resume_gives_the_same_parameters(tmp_path, data_dir, train_step_killer):
    """One step per call (K > 1 is tested in test_steps_per_call.py)."""
    ref = train.train_and_evaluate(_config(data_dir, steps_per_call=1), str(tmp_path / "ref"))

    workdir = str(tmp_path / "resumed")
    train_step_killer.arm(13)  # killed after step 13; the last checkpoint is at step 10
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(_config(data_dir, steps_per_call=1), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]
    train_step_killer.disarm()
    resumed = train.train_and_evaluate(_config(data_dir, steps_per_call=1), workdir)

    a, b = _final_params(str(tmp_path / "ref"), 20), _final_params(workdir, 20)
    for name in a:
        for leaf in a[name]:
            np.testing.assert_array_equal(a[name][leaf], b[name][leaf], err_msg=f"{name}/{leaf}")
    assert resumed["test_sq_err"] == ref["test_sq_err"]


def test_non_finite_loss_stops_with_step_and_term_and_keeps_last_checkpoint(tmp_path, data_dir):
    config = _config(data_dir)
    config.optimizer.learning_rate = 1e30  # diverges within a few steps
    config.optimizer.schedule = "constant"
    workdir = str(tmp_path / "nan")
    with pytest.raises(loop.NonFiniteLossError, match=r"in train step \d+: (loss|param_norm|grad_norm)"):
        train.train_and_evaluate(config, workdir)
    saved = (
        os.listdir(os.path.join(workdir, "checkpoints"))
        if os.path.isdir(os.path.join(workdir, "checkpoints"))
        else []
    )
    for step in saved:  # any checkpoint that was written holds finite parameters
        params = _final_params(workdir, int(step))
        assert all(np.isfinite(v).all() for layer in params.values() for v in layer.values())


def test_bad_steps_and_learning_rate_fail_before_training_naming_the_field(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"config.num_train_steps=-5"):
        train.train_and_evaluate(_config(data_dir, num_train_steps=-5), str(tmp_path / "a"))
    config = _config(data_dir)
    config.optimizer.learning_rate = -1.0
    with pytest.raises(ValueError, match=r"config.optimizer.learning_rate=-1.0"):
        train.train_and_evaluate(config, str(tmp_path / "b"))
    for run in ("a", "b"):  # nothing was recorded for runs that never started
        assert not os.path.exists(tmp_path / run / "config.json")
        assert not os.path.exists(tmp_path / run / "checkpoints")


def test_relaunch_with_another_model_is_refused_and_keeps_the_record(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(_config(data_dir), workdir)
    before = (tmp_path / "run" / "config.json").read_text()
    changed = _config(data_dir)
    changed.model.code_dim = 16
    with pytest.raises(ValueError, match=r"model.code_dim: 8 -> 16") as info:
        train.train_and_evaluate(changed, workdir)
    assert "params/encoder_2/kernel" in str(info.value)  # the differing parameter is named too
    assert (tmp_path / "run" / "config.json").read_text() == before
    # Extending a finished run keeps working: it resumes at step 20 and trains 10 more steps.
    longer = train.train_and_evaluate(_config(data_dir, num_train_steps=30), workdir)
    assert longer["num_steps"] == 30 and runs.load_run(workdir).step == 30
    assert json.loads((tmp_path / "run" / "config.json").read_text())["num_train_steps"] == 30


def test_bad_batch_size_and_unknown_names_fail_before_training(tmp_path, data_dir):
    with pytest.raises(ValueError, match="does not divide over 4 devices"):
        train.train_and_evaluate(_config(data_dir, batch_size=30), str(tmp_path / "a"))
    config = _config(data_dir)
    config.model_name = "nope"
    with pytest.raises(KeyError, match="Known models"):
        train.train_and_evaluate(config, str(tmp_path / "b"))
    with pytest.raises(KeyError, match="Known likelihoods"):
        train.train_and_evaluate(_config(data_dir, likelihood="poisson"), str(tmp_path / "c"))
    with pytest.raises(KeyError, match="mnist5k"):
        train.train_and_evaluate(_config(data_dir, dataset="not_a_dataset"), str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "a" / "checkpoints")
