"""Orientation selectivity: analytic filters (gratings, Gabors, isotropic blobs, noise) and the figure helper."""

import numpy as np
import pytest

from aejax.analysis import filters


def _grid(size):
    c = (size - 1) / 2
    return np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")  # (y, x)


def _gabor(size, theta, wavelength=4.0, sigma=2.5):
    y, x = _grid(size)
    u = x * np.cos(theta) + y * np.sin(theta)
    return np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(2 * np.pi * u / wavelength)


def _blob(size, sigma):
    y, x = _grid(size)
    return np.exp(-(x**2 + y**2) / (2 * sigma**2))


@pytest.mark.parametrize("theta", [0.0, np.pi / 6, np.pi / 4, 2.0])
def test_oriented_filters_score_high(theta):
    gabor = _gabor(12, theta)[None]
    assert filters.orientation_selectivity(gabor)[0] > 0.8


def test_axis_aligned_grating_is_perfectly_selective():
    # cos(2 pi x / 4) on a 12-wide grid has all its power at k = (+-1/4, 0): S = 1 exactly.
    _, x = _grid(12)
    grating = np.cos(2 * np.pi * x / 4)[None]
    np.testing.assert_allclose(filters.orientation_selectivity(grating), [1.0], atol=1e-12)


def test_isotropic_and_centre_surround_filters_score_low():
    blob = _blob(12, 1.5)
    dog = blob - _blob(12, 3.0) * (blob.sum() / _blob(12, 3.0).sum())  # difference of Gaussians, zero sum
    scores = filters.orientation_selectivity(np.stack([blob, dog]))
    assert np.all(scores < 0.05), scores


def test_white_noise_scores_low():
    # i.i.d. noise: power is spread over ~M/2 independent frequency pairs, so S ~ 1/sqrt(M/2) ~ 0.12 at 12x12.
    noise = filters.random_filters(500, 12, 12, seed=3)
    scores = filters.orientation_selectivity(noise)
    assert 0.05 < scores.mean() < 0.25
    assert filters.selectivity_score(np.stack([_gabor(12, 0.3)] * 4)) > 3 * scores.mean()


def test_score_ignores_scale_sign_and_mean():
    g = _gabor(8, 1.0)
    a = filters.orientation_selectivity(g[None])
    b = filters.orientation_selectivity((-3.0 * g + 7.0)[None])
    np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_array_equal(filters.orientation_selectivity(np.zeros((1, 8, 8))), [0.0])


def test_columns_as_filters_and_bad_shapes():
    d = np.arange(2 * 144, dtype=float).reshape(144, 2)
    bank = filters.columns_as_filters(d, (12, 12, 1))
    assert bank.shape == (2, 12, 12)
    np.testing.assert_array_equal(bank[1].ravel(), d[:, 1])
    with pytest.raises(ValueError, match="matrix"):
        filters.columns_as_filters(d, (8, 8))
    with pytest.raises(ValueError, match=r"\[F, h, w\]"):
        filters.orientation_selectivity(np.zeros((12, 12)))


def test_filter_panels_figure(tmp_path, assert_figure):
    path = tmp_path / "f.png"
    filters.plot_filter_panels(
        {"gabor": _gabor(8, 0.5)[None], "noise": filters.random_filters(10, 8, 8)}, str(path)
    )
    assert_figure(path)
    with pytest.raises(ValueError):
        filters.plot_filter_panels({}, str(path))
