"""aejax.analysis.inpainting: masks, the missing-pixel metric, iterated projection and the PCA fill against
closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax.analysis import inpainting, latent_inpainting


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


# Code-space fills (aejax.analysis.latent_inpainting) on a linear-Gaussian decoder x = W z + b + noise, where the
# best code and the posterior are closed forms.
def _linear_decoder(rng, d=12, k=3):
    w = rng.normal(size=(d, k)).astype(np.float32)
    b = rng.normal(size=d).astype(np.float32)
    return w, b, (lambda z: z @ jnp.asarray(w).T + jnp.asarray(b)[None, :])


def test_code_fit_keeps_observed_pixels_and_matches_least_squares_on_a_linear_decoder():
    rng = np.random.default_rng(3)
    w, b, decode = _linear_decoder(rng)
    n, d, k = 5, *w.shape
    x = rng.normal(size=(n, d)).astype(np.float32)  # off the decoder's range: the fit is a real projection
    missing = rng.random((n, d)) < 0.4
    missing[:, :2] = False  # >= k observed pixels per image, so the least-squares problem is well posed
    z0 = rng.normal(size=(n, k)).astype(np.float32)
    identity = lambda o: o  # noqa: E731
    args = (decode, latent_inpainting.squared_error_nll, identity, jnp.asarray(x), jnp.asarray(missing), z0)
    fit = latent_inpainting.fit_codes(
        *args,
        steps=1000, learning_rate=0.05,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(fit.x)[~missing], x[~missing])
    prior = latent_inpainting.gaussian_code_prior(rng.normal(size=(50, k)) @ rng.normal(size=(k, k)) + 1.0)
    ridge = latent_inpainting.fit_codes(
        *args,
        prior=prior, prior_weight=2.0, steps=1000, learning_rate=0.05,
    )  # fmt: skip
    p, mu = np.asarray(prior.precision, np.float64), np.asarray(prior.mean, np.float64)
    for i in range(n):
        obs = ~missing[i]
        want = np.linalg.lstsq(w[obs], x[i, obs] - b[obs], rcond=None)[0]
        np.testing.assert_allclose(fit.z[i], want, atol=2e-3)
        np.testing.assert_allclose(fit.x[i, ~obs], w[~obs] @ want + b[~obs], atol=5e-3)
        # With the prior: (W_o^T W_o + 2 P) z = W_o^T (x_o - b_o) + 2 P mu (half squared error + prior / 2 * 2).
        a = w[obs].T @ w[obs] + 2.0 * p
        want = np.linalg.solve(a, w[obs].T @ (x[i, obs] - b[obs]) + 2.0 * p @ mu)
        np.testing.assert_allclose(ridge.z[i], want, atol=2e-3)
    with pytest.raises(ValueError, match="needs a prior"):
        latent_inpainting.fit_codes(
            decode, latent_inpainting.squared_error_nll, identity, x, missing, z0, prior_weight=1.0
        )


def _gaussian_posterior(w, b, sigma, x, observed):
    """p(z | x_obs) of z ~ N(0, I), x = W z + b + N(0, sigma^2 I): (mean [K], covariance [K, K])."""
    wo = w[observed].astype(np.float64)
    cov = np.linalg.inv(np.eye(w.shape[1]) + wo.T @ wo / sigma**2)
    return cov @ wo.T @ (x[observed] - b[observed]) / sigma**2, cov


def test_importance_weights_match_a_numpy_reference_and_are_constant_at_the_true_posterior():
    rng = np.random.default_rng(4)
    w, b, decode = _linear_decoder(rng, d=6, k=2)
    sigma, n, s = 0.5, 3, 64
    nll = lambda o, t: 0.5 * jnp.square((o - t) / sigma)  # noqa: E731  (constants cancel in the weights)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    missing = np.zeros((n, 6), bool)
    missing[:, 4:] = True
    pm = rng.normal(size=(n, 2)).astype(np.float32)
    plv = rng.normal(size=(n, 2)).astype(np.float32) * 0.3
    key = jax.random.key(0)
    fill, ess = latent_inpainting.importance_fill(
        decode, nll, lambda o: o, x, missing, pm, plv, key, num_samples=s
    )
    # Reference: the same draws, weights from scipy densities, normalised in float64.
    eps = np.stack([np.asarray(jax.random.normal(k, (n, 2))) for k in jax.random.split(key, s)])  # [S, N, K]
    z = pm + np.exp(0.5 * plv) * eps
    for i in range(n):
        obs = ~missing[i]
        log_w = np.array([
            stats.norm(w[obs] @ zs + b[obs], sigma).logpdf(x[i, obs]).sum()
            + stats.multivariate_normal(np.zeros(2)).logpdf(zs)
            - stats.multivariate_normal(pm[i], np.diag(np.exp(plv[i]))).logpdf(zs)
            for zs in z[:, i]
        ])  # fmt: skip
        weights = np.exp(log_w - log_w.max())
        weights /= weights.sum()
        np.testing.assert_allclose(fill[i, 4:], weights @ (z[:, i] @ w[4:].T + b[4:]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ess[i], 1.0 / np.sum(weights**2), rtol=1e-4)
        np.testing.assert_array_equal(np.asarray(fill)[i, obs], x[i, obs])
    # At the exact posterior as the proposal, p(x_obs | z) p(z) / q(z) = p(x_obs) for every z: ESS = S. The
    # posterior is a diagonal Gaussian when the observed rows of W have orthogonal columns.
    w_diag = w.copy()
    w_diag[:4] = np.linalg.qr(rng.normal(size=(4, 2)))[0] * np.array([3.0, 0.5], np.float32)
    m, c = _gaussian_posterior(w_diag, b, sigma, x[0], ~missing[0])
    np.testing.assert_allclose(c, np.diag(np.diag(c)), atol=1e-8)
    decode_diag = lambda zz: zz @ jnp.asarray(w_diag).T + jnp.asarray(b)[None, :]  # noqa: E731
    fill, ess = latent_inpainting.importance_fill(
        decode_diag, nll, lambda o: o, x[:1], missing[:1],
        m[None].astype(np.float32), np.log(np.diag(c))[None].astype(np.float32), key, num_samples=s,
    )  # fmt: skip
    np.testing.assert_allclose(ess, s, rtol=1e-4)
    # ... and the fill estimates E[x_miss | x_obs] = W_miss E[z | x_obs] + b_miss (Monte Carlo error ~ 1/sqrt(S)).
    sd = np.sqrt(np.diag(w_diag[4:] @ c @ w_diag[4:].T))
    assert np.all(np.abs(fill[0, 4:] - (w_diag[4:] @ m + b[4:])) < 4.0 * sd / np.sqrt(s))
