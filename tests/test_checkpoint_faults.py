"""Damaged checkpoints: an unreadable newest checkpoint is reported by step and skipped, the newest readable one is
used and the run goes on; with none readable the error names every step. Nothing is deleted."""

import os

import jax
import numpy as np
import pytest

from aejax import checkpoint, runs, train
from configs import mnist_ae


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir):
    config = mnist_ae.get_config("runlocal")  # checkpoints at steps 10 and 20
    config.data_dir = data_dir
    config.analysis.pca_baseline, config.analysis.embedding = False, "pca"
    return config


def _truncate(step_dir):
    """Cuts every file of a checkpoint to half its length, as a disk error or a copy cut short would."""
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)


def test_an_unreadable_newest_checkpoint_is_skipped_and_the_run_goes_on(tmp_path, data_dir, capsys):
    ref = str(tmp_path / "ref")
    train.train_and_evaluate(_config(data_dir), ref)
    workdir = str(tmp_path / "damaged")
    train.train_and_evaluate(_config(data_dir), workdir)
    _truncate(os.path.join(workdir, "checkpoints", "20"))
    capsys.readouterr()

    train.train_and_evaluate(_config(data_dir), workdir)  # resumes from 10, trains 10 -> 20 again
    out = capsys.readouterr().out
    assert "Skipped the checkpoint at step 20" in out and "from the checkpoint at step 10" in out
    assert os.path.isdir(os.path.join(workdir, "checkpoints_damaged", "20"))  # kept, not deleted
    # Resuming from step 10 is exact, so the run ends with the parameters of the undamaged one.
    a, b = runs.load_run(ref).variables["params"], runs.load_run(workdir).variables["params"]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_with_every_checkpoint_damaged_the_error_names_them_all(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(_config(data_dir), workdir)
    for step in ("10", "20"):
        _truncate(os.path.join(workdir, "checkpoints", step))
    with pytest.raises(checkpoint.NoReadableCheckpointError, match=r"step 20: .*step 10: "):
        train.train_and_evaluate(_config(data_dir), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]  # nothing deleted or moved
