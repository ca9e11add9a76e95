"""Datasets from numpy arrays (`config.dataset = "arrays:<dir>"`): layouts, kinds, errors naming the file, and
the "vector" kind end to end (train, kill and resume to the same parameters, re-analysis with reports)."""

import json
import os

import numpy as np
import pytest

from aejax import runs, train
from aejax.data import load_split
from configs import mnist_ae


def _vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Two Gaussian clusters in 12-D with unequal feature scales (so standardisation matters).
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    x = rng.normal(size=(n, 12)) * np.linspace(0.5, 4.0, 12) + 3.0 * labels[:, None]
    return x.astype(np.float32), labels


def test_npz_npy_and_manifest_layouts_and_kinds(tmp_path):
    x, y = _vectors(10, 0)
    np.savez(tmp_path / "train.npz", x=x, labels=y)
    np.save(tmp_path / "test_x.npy", x[:4])  # no labels: -1
    got = load_split(f"arrays:{tmp_path}", "train")
    assert got.kind == "vector" and got.mask is None and got.labels.dtype == np.int32
    np.testing.assert_array_equal(got.x, x)
    np.testing.assert_array_equal(got.labels, y)
    np.testing.assert_array_equal(load_split(f"arrays:{tmp_path}", "test").labels, [-1] * 4)

    series_dir = tmp_path / "series"
    series_dir.mkdir()
    s = np.random.default_rng(1).normal(size=(5, 6, 2)).astype(np.float32)
    np.savez(series_dir / "a.npz", x=s[:3], lengths=np.array([6, 2, 4]), labels=np.array([0, 1, 2]))
    np.savez(series_dir / "b.npz", x=s[3:], lengths=np.array([1, 5]), labels=np.array([3, 4]))
    manifest = {"kind": "series", "splits": {"train": ["a.npz", "b.npz"], "test": "b.npz"}}
    (series_dir / "manifest.json").write_text(json.dumps(manifest))
    got = load_split(f"arrays:{series_dir}", "train")
    assert got.kind == "series" and got.x.shape == (5, 6, 2)
    np.testing.assert_array_equal(got.labels, [0, 1, 2, 3, 4])  # shards in the listed order
    np.testing.assert_array_equal(got.lengths, [6, 2, 4, 1, 5])
    np.testing.assert_array_equal(got.mask[1], [1, 1, 0, 0, 0, 0])

    images = tmp_path / "images"
    images.mkdir()
    np.savez(images / "train.npz", x=np.zeros((3, 4, 4, 1), np.uint8))
    assert load_split(f"arrays:{images}", "train").kind == "image"


def _expect(tmp_path, split, error, *match):
    with pytest.raises(error) as info:
        load_split(f"arrays:{tmp_path}", split)
    for text in match:
        assert text in str(info.value), str(info.value)


def test_errors_name_the_file(tmp_path):
    x, y = _vectors(8, 0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_split(f"arrays:{tmp_path / 'nowhere'}", "train")
    np.savez(tmp_path / "train.npz", x=x, labels=y)
    _expect(tmp_path, "validation", FileNotFoundError, "validation.npz", "splits present: train")
    np.savez(tmp_path / "test.npz", x=x[:, :5])  # test examples of another shape than train's
    _expect(tmp_path, "test", ValueError, "test.npz", "(5,)", "(12,)", "train.npz")
    np.savez(tmp_path / "nox.npz", inputs=x)
    _expect(tmp_path, "nox", ValueError, "nox.npz", "no array 'x'", "inputs")
    np.savez(tmp_path / "badlabels.npz", x=x, labels=y[:-1])
    _expect(tmp_path, "badlabels", ValueError, "badlabels.npz", "labels must be [N=8]")
    s = np.zeros((4, 6, 1), np.float32)
    np.savez(tmp_path / "badmask.npz", x=s, mask=np.ones((4, 5)))
    _expect(tmp_path, "badmask", ValueError, "badmask.npz", "mask must be [N, T]")
    np.savez(tmp_path / "holes.npz", x=s, mask=np.array([[1, 0, 1, 0, 0, 0]] * 4))
    _expect(tmp_path, "holes", ValueError, "holes.npz", "valid prefix")
    np.savez(tmp_path / "longlengths.npz", x=s, lengths=np.array([1, 2, 7, 3]))
    _expect(tmp_path, "longlengths", ValueError, "longlengths.npz", "in [1, 6]")
    np.savez(tmp_path / "s0.npz", x=s)
    np.savez(tmp_path / "s1.npz", x=np.zeros((4, 7, 1), np.float32))
    manifest = {"kind": "image", "splits": {"shards": ["s0.npz", "s1.npz"], "gone": ["s0.npz", "lost.npz"]}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    _expect(tmp_path, "shards", ValueError, "s1.npz", "s0.npz", "(6, 1)", "(7, 1)")
    _expect(tmp_path, "gone", FileNotFoundError, "lost.npz")
    manifest["splits"]["shards"] = ["s0.npz"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    _expect(tmp_path, "shards", ValueError, "s0.npz", "declared kind 'image'", "[N, H, W, C]")


def _config(data: str, **overrides):
    config = mnist_ae.get_config("runlocal")
    config.dataset = f"arrays:{data}"
    config.likelihood = "gaussian"
    config.transforms.scale = "none"
    config.transforms.standardize = "per_feature"
    config.model.hidden = (16,)
    config.model.code_dim = 3
    config.batch_size = 32
    config.steps_per_call = 1
    for key, value in overrides.items():
        config[key] = value
    return config


def test_vector_arrays_train_resume_and_reanalyse(tmp_path, train_step_killer):
    data = tmp_path / "data"
    data.mkdir()
    (x, y), (xt, yt) = _vectors(256, 0), _vectors(64, 1)
    np.savez(data / "train.npz", x=x, labels=y)
    np.savez(data / "test.npz", x=xt, labels=yt)

    ref = train.train_and_evaluate(_config(str(data)), str(tmp_path / "ref"))
    assert ref["num_train"] == 256 and ref["num_test"] == 64 and ref["code_dim"] == 3
    # The PCA baseline of the run against sklearn's on the same standardised data (train statistics only).
    from sklearn.decomposition import PCA

    mean, std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0)
    pca = PCA(n_components=3).fit((x - mean) / std)
    zt = (xt - mean) / std
    want = np.square(pca.inverse_transform(pca.transform(zt)) - zt).sum(axis=1).mean()
    np.testing.assert_allclose(ref["pca_sq_err"], want, rtol=1e-4)

    workdir = str(tmp_path / "resumed")
    train_step_killer.arm(13)  # killed after step 13; the last checkpoint is at step 10
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(_config(str(data)), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]
    train_step_killer.disarm()
    resumed = train.train_and_evaluate(_config(str(data)), workdir)
    a = runs.load_run(str(tmp_path / "ref"), step=20).variables["params"]
    b = runs.load_run(workdir, step=20).variables["params"]
    for name in a:
        for leaf in a[name]:
            np.testing.assert_array_equal(a[name][leaf], b[name][leaf])
    np.testing.assert_allclose(resumed["test_sq_err"], ref["test_sq_err"], rtol=1e-6)

    # --eval_only's path: the same evaluation from the checkpoint, and reports the run did not have.
    again = runs.reanalyse(workdir, reports="sparsity")
    np.testing.assert_allclose(again["test_sq_err"], ref["test_sq_err"], rtol=1e-6)
    assert "sparsity/mean_activation" in again
    assert os.path.exists(os.path.join(workdir, "sparsity_histogram.png"))
