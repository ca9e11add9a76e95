"""aejax.analysis.inpainting: masks, the missing-pixel metric, iterated projection and the PCA fill against
closed forms."""

import numpy as np
import pytest

from aejax.analysis import inpainting


def test_masks_have_the_stated_pixels_missing():
    square = inpainting.make_missing("center12", (28, 28, 1), 3)
    assert square.shape == (3, 28, 28, 1) and square.sum() == 3 * 144
    assert square[:, 8:20, 8:20].all()
    half = inpainting.make_missing("right_half", (28, 28, 1), 2)
    assert half[:, :, 14:].all() and not half[:, :, :14].any()
    for name, fraction in (("random50", 0.5), ("random80", 0.8)):
        m = inpainting.make_missing(name, (28, 28, 3), 500, seed=1)
        # 500 * 784 Bernoulli(p) pixels: standard error of the fraction < 0.001.
        assert abs(m.mean() - fraction) < 0.005
        assert (m == m[..., :1]).all()  # a pixel's channels go together
        assert not (m[0] == m[1]).all()  # each image its own pixels
        np.testing.assert_array_equal(m, inpainting.make_missing(name, (28, 28, 3), 500, seed=1))
    with pytest.raises(KeyError, match="known: center12, right_half, random50, random80"):
        inpainting.make_missing("left_half", (28, 28), 1)
    with pytest.raises(ValueError, match="does not fit"):
        inpainting.make_missing("center12", (8, 8), 1)
    assert inpainting.applicable_masks((8, 8, 1)) == ("right_half", "random50", "random80")
    assert inpainting.applicable_masks((28, 28, 1)) == inpainting.MASKS


def test_the_metric_counts_only_missing_pixels():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 5, 5))
    missing = rng.random((4, 5, 5)) < 0.3
    missing[:, 0, 0] = True  # every image has a missing pixel
    fill = truth + 0.1 * missing  # off by 0.1 exactly on the missing pixels
    sq_err, psnr = inpainting.missing_pixel_errors(fill, truth, missing)
    np.testing.assert_allclose(sq_err, 0.01 * missing.reshape(4, -1).sum(axis=1), rtol=1e-9)
    np.testing.assert_allclose(psnr, 20.0, rtol=1e-9)  # 10 log10(1 / 0.01)
    wild = np.where(missing, fill, rng.normal(size=fill.shape) * 100)  # observed pixels changed arbitrarily
    np.testing.assert_array_equal(inpainting.missing_pixel_errors(wild, truth, missing)[0], sq_err)
    with pytest.raises(ValueError, match="no missing pixel"):
        inpainting.missing_pixel_errors(fill, truth, np.zeros_like(missing))


def test_iterated_projection_keeps_observed_pixels_exactly_and_counts_iterations():
    rng = np.random.default_rng(1)
    x = rng.random((6, 4, 4)).astype(np.float32)
    missing = rng.random((6, 4, 4)) < 0.5

    def scramble(v):  # changes every pixel, observed ones too
        return np.sin(7.0 * v) + 0.3

    f = inpainting.iterated_projection(scramble, x, missing, init=0.5, max_iters=7, tol=0.0)
    np.testing.assert_array_equal(f.x[~missing], x[~missing])
    np.testing.assert_array_equal(f.iterations, 7)
    # The identity settles after one projection: nothing moves from the initial fill.
    f = inpainting.iterated_projection(lambda v: v, x, missing, init=0.25, max_iters=50)
    np.testing.assert_array_equal(f.iterations, 1)
    assert f.converged.all()
    np.testing.assert_array_equal(f.x, np.where(missing, np.float32(0.25), x))


def test_pca_fill_recovers_data_in_a_k_dimensional_subspace():
    rng = np.random.default_rng(2)
    k, side = 3, 8
    basis = np.linalg.qr(rng.normal(size=(side * side, k)))[0]  # [D, K]
    offset = rng.normal(size=side * side)

    def sample(n):
        return (offset + rng.normal(size=(n, k)) @ basis.T).reshape(n, side, side)

    train_x, test_x = sample(200), sample(20)
    missing = inpainting.make_missing("right_half", (side, side), 20)
    project, mean = inpainting.pca_projector(train_x, k)
    f = inpainting.iterated_projection(project, test_x, missing, init=mean, max_iters=5000, tol=1e-12)
    assert f.converged.all()
    # Closed form: the observed half determines the K coefficients (least squares on the observed rows of the
    # basis), and the missing pixels are offset + basis c on the missing rows.
    obs = ~missing[0].reshape(-1)
    coef = np.linalg.lstsq(basis[obs], (test_x.reshape(20, -1) - offset)[:, obs].T, rcond=None)[0]  # [K, 20]
    closed = (offset[:, None] + basis @ coef).T.reshape(test_x.shape)
    np.testing.assert_allclose(closed, test_x, atol=1e-10)  # the subspace holds the data exactly
    np.testing.assert_allclose(f.x, test_x, atol=1e-6)
    # Noise-free data in the subspace: the fill is exact to the tolerance of the iteration, far below the mean's.
    sq_err, _ = inpainting.missing_pixel_errors(f.x, test_x, missing)
    assert sq_err.max() < 1e-9


def test_pseudo_gibbs_averages_the_means_after_burn_in_and_keeps_observed_pixels():
    x = np.full((2, 3, 3), 0.9, np.float32)
    missing = np.zeros((2, 3, 3), bool)
    missing[:, 1, 1] = True
    seen = []

    def step(v, t):
        seen.append(float(v[0, 1, 1]))
        return np.full(v.shape, float(t)), np.full(v.shape, -1.0)  # mean t, sample -1

    filled = inpainting.pseudo_gibbs(step, x, missing, init=0.5, num_steps=6, burn_in=2)
    np.testing.assert_allclose(filled[:, 1, 1], np.mean([2, 3, 4, 5]))
    np.testing.assert_array_equal(filled[~missing], x[~missing])
    assert seen == [0.5, -1, -1, -1, -1, -1]  # the chain carries the samples, not the means
    with pytest.raises(ValueError, match="burn_in"):
        inpainting.pseudo_gibbs(step, x, missing, init=0.5, num_steps=3, burn_in=3)
