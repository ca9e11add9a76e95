"""natural_patches: seeded sampling, disjoint regions, variance threshold, LCN / ZCA statistics, the TFDS build."""

import numpy as np
import pytest

from aejax.data import datasets
from aejax.data.builders import natural_patches as nat

SMALL = dict(size=8, num_train=600, num_test=120)


@pytest.fixture(scope="module")
def images():
    return nat.load_images()


def test_images_are_grey_levels(images):
    assert len(images) == len(nat.IMAGES)
    for img in images:
        assert img.ndim == 2 and img.min() >= 0 and img.max() <= 1 and img.std() > 0.05


def test_sampling_is_seeded_and_regions_are_disjoint(images):
    a, la = nat.sample_patches(images, size=8, per_image=20, split="train", seed=0)
    b, lb = nat.sample_patches(images, size=8, per_image=20, split="train", seed=0)
    c, _ = nat.sample_patches(images, size=8, per_image=20, split="train", seed=5)
    assert a.shape == (20 * len(images), 8, 8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.bincount(la), np.full(len(images), 20))
    # A patch whose pixels all lie in the right 20% of an image cannot be found in the left 80% (and vice versa):
    # check with a single-image "image" made of its column indices.
    cols = np.tile(np.arange(100.0), (30, 1))
    train, _ = nat.sample_patches([cols], size=8, per_image=200, split="train", seed=0)
    test, _ = nat.sample_patches([cols], size=8, per_image=200, split="test", seed=1)
    assert train.max() < 80 and test.min() >= 80
    with pytest.raises(ValueError, match="split"):
        nat.sample_patches(images, size=8, per_image=1, split="valid", seed=0)


def test_variance_threshold_keeps_exactly_the_patches_above_it(images):
    config = nat.PatchesConfig(name="t", min_std=0.05, **SMALL)
    kept, labels = nat._kept(images, config, "train", config.num_train)
    assert kept.shape == (600, 8, 8) and labels.shape == (600,)
    # Independent reference: redo the draws (2N in all, doubled until N pass) and filter with numpy.
    per_image = int(np.ceil(2 * 600 / len(images)))
    while True:
        raw, raw_labels = nat.sample_patches(images, size=8, per_image=per_image, split="train", seed=0)
        centred = raw - raw.mean(axis=(1, 2), keepdims=True)
        std = np.sqrt(np.mean(centred**2, axis=(1, 2)))
        if (std >= 0.05).sum() >= 600:
            break
        per_image *= 2
    assert (std < 0.05).any(), "the threshold should drop some flat patches"
    np.testing.assert_allclose(kept, centred[std >= 0.05][:600], atol=1e-12)
    np.testing.assert_array_equal(labels, raw_labels[std >= 0.05][:600])


def test_lcn_patches_have_zero_mean_and_unit_contrast():
    config = nat.PatchesConfig(name="t", preprocessing="lcn", **SMALL)
    splits = nat.make_splits(config)
    for split, n in (("train", 600), ("test", 120)):
        x, labels = splits[split]
        assert x.shape == (n, 8, 8, 1) and x.dtype == np.float32 and labels.shape == (n,)
        np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-5)
        var = x.var(axis=(1, 2, 3))
        # var after LCN = v / (v + eps) with v >= min_std^2: in [min_std^2 / (min_std^2 + eps), 1).
        floor = config.min_std**2 / (config.min_std**2 + config.eps_lcn)
        assert var.min() >= floor - 1e-5 and var.max() <= 1 + 1e-5
        assert np.median(var) > 0.97


def test_zca_whitens_the_train_covariance(images):
    config = nat.PatchesConfig(name="t", preprocessing="zca", size=6, num_train=4000, num_test=100)
    x = nat.make_splits(config)["train"][0].reshape(4000, 36).astype(np.float64)
    centred, _ = nat._kept(images, config, "train", 4000)
    lam = np.linalg.eigvalsh(np.cov(centred.reshape(4000, 36), rowvar=False, bias=True))
    lam = np.maximum(lam, 0)
    expected = lam / (lam + config.zca_eps * lam.mean())  # ZCA with regulariser eps: closed form
    got = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))
    np.testing.assert_allclose(np.sort(got), np.sort(expected), atol=1e-4)
    # White within tolerance on the directions carrying most of the variance; the DC direction stays empty.
    assert np.sort(got)[-18:].min() > 0.9 and np.sort(got)[0] < 1e-6


def test_unknown_preprocessing_raises():
    with pytest.raises(ValueError, match="preprocessing"):
        nat.make_splits(nat.PatchesConfig(name="t", preprocessing="pca", **SMALL))


def test_load_split_builds_the_config_deterministically(tmp_path):
    split = datasets.load_split("natural_patches/8x8", "test", data_dir=str(tmp_path))
    config = next(c for c in nat.NaturalPatches.BUILDER_CONFIGS if c.name == "8x8")
    reference, labels = nat.make_splits(config)["test"]
    assert split.x.shape == (2000, 8, 8, 1) and split.x.dtype == np.float32

    def rows_sorted(x, y):  # TFDS stores records in the order of their hashed keys: compare as sets of rows
        flat = np.concatenate([x.reshape(len(x), -1), y[:, None].astype(np.float32)], axis=1)
        return flat[np.lexsort(flat.T[::-1])]

    np.testing.assert_array_equal(rows_sorted(split.x, split.labels), rows_sorted(reference, labels))
    assert set(np.unique(split.labels)) == set(range(len(nat.IMAGES)))
    with pytest.raises(Exception, match="16x16"):
        datasets.load_split("natural_patches/16x16", "test", data_dir=str(tmp_path))
