"""Densities with known scores: checked against scipy, autodiff, Monte Carlo and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from aejax.analysis import densities as dens

MIXTURES = {"1d": dens.mixture_1d, "2d": dens.mixture_2d}
Z = 5.0  # tolerance in standard errors for every Monte-Carlo comparison


def _params(gm):
    return (
        np.asarray(gm.weights, np.float64),
        np.asarray(gm.means, np.float64),
        np.asarray(gm.scales, np.float64),
    )


def _np_samples(gm, n, rng):
    """Independent numpy sampler of the mixture: [n, D] float64."""
    w, mu, s = _params(gm)
    comp = rng.choice(len(w), size=n, p=w / w.sum())
    return mu[comp] + s[comp, None] * rng.standard_normal((n, mu.shape[1]))


def _scipy_log_prob(gm, x):
    w, mu, s = _params(gm)
    per_comp = [np.log(w[m]) + stats.norm.logpdf(x, mu[m], s[m]).sum(axis=1) for m in range(len(w))]
    return special.logsumexp(np.stack(per_comp), axis=0)


def _probe_points(gm, n=40, seed=0):
    lo, hi = np.asarray(gm.means).min(0) - 1.5, np.asarray(gm.means).max(0) + 1.5
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, gm.dim)).astype(np.float32)


@pytest.mark.parametrize("name", MIXTURES)
def test_score_equals_autodiff_of_log_prob(name):
    gm = MIXTURES[name]()
    x = _probe_points(gm)
    auto = jax.vmap(jax.grad(lambda xi: gm.log_prob(xi[None])[0]))(jnp.asarray(x))
    score = gm.score(x)
    assert score.shape == x.shape
    np.testing.assert_allclose(score, auto, rtol=1e-4, atol=1e-4 * float(jnp.abs(auto).max()))


@pytest.mark.parametrize("name", MIXTURES)
def test_log_prob_matches_scipy(name):
    gm = MIXTURES[name]()
    x = _probe_points(gm, seed=1)
    np.testing.assert_allclose(gm.log_prob(x), _scipy_log_prob(gm, x.astype(np.float64)), rtol=1e-5, atol=1e-4)


def test_log_prob_integrates_to_one():
    grid = np.linspace(-6.0, 7.0, 20001, dtype=np.float32)[:, None]
    p = np.exp(np.asarray(dens.mixture_1d().log_prob(grid), np.float64))
    assert abs(np.trapezoid(p, grid[:, 0]) - 1.0) < 1e-4
    g1, g2 = np.linspace(-5.0, 5.0, 401), np.linspace(-5.0, 6.0, 441)
    xy = np.stack(np.meshgrid(g1, g2, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    p2 = np.exp(np.asarray(dens.mixture_2d().log_prob(xy), np.float64)).reshape(401, 441)
    assert abs(np.trapezoid(np.trapezoid(p2, g2, axis=1), g1) - 1.0) < 1e-4


@pytest.mark.parametrize("name", MIXTURES)
def test_smoothed_density_matches_monte_carlo_convolution(name):
    gm, sigma, n = MIXTURES[name](), 0.5, 50_000
    x = _np_samples(gm.smoothed(sigma), 5, np.random.default_rng(2)).astype(np.float32)
    eps = np.random.default_rng(3).standard_normal((n, gm.dim)).astype(np.float32)
    shifted = (x[:, None, :] - sigma * eps[None, :, :]).reshape(-1, gm.dim)  # [5 n, D]
    vals = np.exp(np.asarray(gm.log_prob(shifted), np.float64)).reshape(5, n)
    mc, se = vals.mean(1), vals.std(1) / math.sqrt(n)
    closed = np.exp(np.asarray(gm.smoothed(sigma).log_prob(x), np.float64))
    assert np.all(np.abs(closed - mc) < Z * se + 1e-7), (closed, mc, se)


@pytest.mark.parametrize("name", MIXTURES)
def test_tweedie_matches_importance_weighted_posterior_mean(name):
    gm, sigma, n = MIXTURES[name](), 0.4, 200_000
    xs = _np_samples(gm, n, np.random.default_rng(4))  # [n, D] draws from p
    x_tilde = _np_samples(gm.smoothed(sigma), 6, np.random.default_rng(5))  # draws of p_sigma
    # E[x | x~] = sum_i x_i N(x~; x_i, sigma^2 I) / sum_i N(x~; x_i, sigma^2 I), x_i ~ p.
    logw = -np.sum((x_tilde[:, None, :] - xs[None]) ** 2, -1) / (2 * sigma**2)  # [6, n]
    w = np.exp(logw - logw.max(1, keepdims=True))
    est = w @ xs / w.sum(1, keepdims=True)
    # Delta-method standard error of the self-normalised estimate.
    se = np.sqrt(np.einsum("kn,knd->kd", w**2, (xs[None] - est[:, None]) ** 2)) / w.sum(1)[:, None]
    tweedie = np.asarray(gm.tweedie_denoiser(x_tilde, sigma), np.float64)
    assert np.all(np.abs(tweedie - est) < Z * se + 1e-4), (tweedie, est, se)


@pytest.mark.parametrize("name", MIXTURES)
def test_sample_moments_within_clt_bounds(name):
    gm, n = MIXTURES[name](), 100_000
    w, mu, s = _params(gm)
    mean = w @ mu
    cov = np.einsum("m,mi,mj->ij", w, mu, mu) + np.sum(w * s**2) * np.eye(gm.dim)
    cov -= np.outer(mean, mean)
    x = np.asarray(gm.sample(jax.random.key(0), n), np.float64)
    assert x.shape == (n, gm.dim)
    assert np.all(np.abs(x.mean(0) - mean) < Z * np.sqrt(np.diag(cov) / n))
    z = x - mean
    prods = z[:, :, None] * z[:, None, :]  # [n, D, D]
    cov_se = prods.std(0) / math.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - cov) < Z * cov_se)


def test_sample_1d_matches_mixture_cdf():
    gm = dens.mixture_1d()
    w, mu, s = _params(gm)
    x = np.asarray(gm.sample(jax.random.key(1), 100_000), np.float64)[:, 0]
    cdf = lambda v: np.sum(w * stats.norm.cdf((v[:, None] - mu[None, :, 0]) / s), axis=1)
    assert stats.kstest(x, cdf).pvalue > 1e-3


def test_linear_gaussian_tweedie_is_the_least_squares_line():
    s, sigma = 0.8, 0.6
    slope = s**2 / (s**2 + sigma**2)
    gm = dens.GaussianMixture(jnp.array([1.0]), jnp.array([[0.0]]), jnp.array([s]))
    x_tilde = np.linspace(-3.0, 3.0, 41, dtype=np.float32)[:, None]
    np.testing.assert_allclose(gm.tweedie_denoiser(x_tilde, sigma), slope * x_tilde, rtol=1e-5, atol=1e-6)
    # Least-squares regression of x on x~ (zero means, no intercept) from samples.
    rng = np.random.default_rng(6)
    n = 100_000
    x = s * rng.standard_normal(n)
    xt = x + sigma * rng.standard_normal(n)
    fit = np.sum(x * xt) / np.sum(xt * xt)
    fit_se = math.sqrt(s**2 * sigma**2 / (s**2 + sigma**2) / np.sum(xt * xt))
    code_slope = float(gm.tweedie_denoiser(jnp.ones((1, 1)), sigma)[0, 0])
    assert abs(fit - code_slope) < Z * fit_se


def test_mixture_is_a_pytree_through_jit():
    gm = dens.mixture_2d()
    x = _probe_points(gm, n=8)
    jitted = jax.jit(lambda g, x, sigma: g.tweedie_denoiser(x, sigma))(gm, x, 0.3)
    np.testing.assert_allclose(jitted, gm.tweedie_denoiser(x, 0.3), rtol=1e-5, atol=1e-6)
    # Its arrays are the pytree's leaves (what jit traces), in field order.
    leaves = jax.tree.leaves(gm)
    assert len(leaves) == 3
    for leaf, field in zip(leaves, (gm.weights, gm.means, gm.scales), strict=True):
        np.testing.assert_array_equal(leaf, field)


def test_mixture_validation():
    mu = jnp.zeros((2, 1))
    with pytest.raises(ValueError, match="sum to 1"):
        dens.GaussianMixture(jnp.array([0.5, 0.6]), mu, jnp.ones(2))
    with pytest.raises(ValueError, match="positive"):
        dens.GaussianMixture(jnp.array([1.5, -0.5]), mu, jnp.ones(2))
    with pytest.raises(ValueError, match="Scales"):
        dens.GaussianMixture(jnp.array([0.5, 0.5]), mu, jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="Expected weights"):
        dens.GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros((3, 1)), jnp.ones(2))
    with pytest.raises(ValueError, match="shape"):
        dens.mixture_2d().log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="sigma"):
        dens.mixture_1d().smoothed(-0.1)


def _spiral_points_np(t):
    r = 0.4 + t / (2 * np.pi)  # the default Spiral, written independently
    return np.stack([r * np.cos(t), r * np.sin(t)], -1)


def _spiral_arc_length_np(t):
    """Closed-form arc length of r = a + b t from t = 0 (b = 1 / (2 pi), a = 0.4)."""
    b = 1 / (2 * np.pi)
    f = lambda u: 0.5 * b * (u * np.sqrt(1 + u**2) + np.arcsinh(u))
    return f((0.4 + b * t) / b) - f(0.4 / b)


@pytest.mark.parametrize("curve", [dens.Spiral(), dens.Circle(radius=1.5)], ids=["spiral", "circle"])
def test_points_on_curve_are_their_own_nearest_point(curve):
    t = np.random.default_rng(7).uniform(*curve.t_range, size=200).astype(np.float32)
    pts = np.asarray(curve.point(jnp.asarray(t)))
    np.testing.assert_allclose(curve.nearest_point(pts), pts, atol=1e-4)
    assert float(curve.distance(pts).max()) < 1e-4
    samples = curve.sample(jax.random.key(1), 300)  # noise-free samples lie on the curve
    assert float(curve.distance(samples).max()) < 1e-4


def test_circle_nearest_point_is_radial_projection():
    radius = 1.5
    rng = np.random.default_rng(8)
    ang, rad = rng.uniform(0, 2 * np.pi, 300), rng.uniform(0.1, 3.0, 300)
    x = np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1).astype(np.float32)
    circle = dens.Circle(radius=radius)
    np.testing.assert_allclose(circle.nearest_point(x), radius * x / rad[:, None], atol=2e-5)
    np.testing.assert_allclose(circle.distance(x), np.abs(rad - radius), atol=2e-5)


def test_spiral_matches_brute_force_projection():
    spiral = dens.Spiral()
    band = np.asarray(spiral.sample(jax.random.key(2), 60, noise_std=0.15))
    box = np.random.default_rng(9).uniform(-2.5, 2.5, (40, 2)).astype(np.float32)
    x = np.concatenate([band, box])
    dense = _spiral_points_np(np.linspace(0.0, 4 * np.pi, 200_001))  # spacing < 1e-4 in arc
    ref_idx = np.array([np.argmin(np.sum((dense - xi) ** 2, 1)) for xi in x.astype(np.float64)])
    ref = dense[ref_idx]
    np.testing.assert_allclose(spiral.distance(x), np.linalg.norm(x - ref, axis=1), atol=1e-4)
    # The projection itself is unique in the band (arms are 1.0 apart); compare it there.
    np.testing.assert_allclose(spiral.nearest_point(band), ref[:60], atol=2e-4)


def test_spiral_samples_are_uniform_in_arc_length():
    spiral = dens.Spiral()
    t = np.asarray(spiral.nearest_t(spiral.sample(jax.random.key(3), 2000)), np.float64)
    u = _spiral_arc_length_np(t) / _spiral_arc_length_np(4 * np.pi)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("curve", [dens.Spiral(), dens.Circle()], ids=["spiral", "circle"])
def test_direction_is_unit_and_points_toward_curve(curve):
    x = curve.sample(jax.random.key(4), 300, noise_std=0.15)
    d = np.asarray(curve.distance(x))
    assert np.all(d >= 0)
    x, d = x[d > 0.02], d[d > 0.02]
    u = curve.direction_to_manifold(x)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-5)
    # Half-way along the segment to the nearest point, the distance is exactly halved.
    np.testing.assert_allclose(curve.distance(x + 0.5 * d[:, None] * u), 0.5 * d, atol=1e-4)


def test_metrics_against_numpy():
    rng = np.random.default_rng(10)
    target = rng.standard_normal((50, 3)).astype(np.float32)
    est = (target + 0.3 * rng.standard_normal((50, 3))).astype(np.float32)
    np.testing.assert_allclose(dens.relative_rmse(1.1 * target, target), 0.1, rtol=1e-4)
    np.testing.assert_allclose(dens.relative_rmse(np.zeros_like(target), target), 1.0, rtol=1e-6)
    ref = np.sqrt(np.mean(np.sum((est - target) ** 2, 1)) / np.mean(np.sum(target**2, 1)))
    np.testing.assert_allclose(dens.relative_rmse(est, target), ref, rtol=1e-5)
    np.testing.assert_allclose(
        dens.correlation(est, target), np.corrcoef(est.ravel(), target.ravel())[0, 1], rtol=1e-5
    )
    cos = np.sum(est * target, 1) / np.linalg.norm(est, axis=1) / np.linalg.norm(target, axis=1)
    np.testing.assert_allclose(dens.cosine(est, target), cos, rtol=1e-5, atol=1e-6)
    assert float(dens.cosine(np.zeros((1, 3)), target[:1])[0]) == 0.0
    with pytest.raises(ValueError, match="same shape|one shape"):
        dens.relative_rmse(est, target[:10])
