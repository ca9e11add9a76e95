"""Denoising corruptions against binomial and chi-square bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax import corruptions
from aejax.objectives.autoencoder import corruption_from_config
from configs import mnist_ae

SHAPE = (64, 8, 8, 1)  # N = 4096 components
N = int(np.prod(SHAPE))


@pytest.fixture(scope="module")
def x():
    # Values strictly inside (0, 1), so a corrupted component is recognisable by its value.
    return jax.random.uniform(jax.random.key(0), SHAPE, minval=0.1, maxval=0.9)


def _within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 4 * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("nu", [0.1, 0.25, 0.5])
def test_masking_fraction_and_values(x, nu):
    x_tilde, mask = corruptions.masking(jax.random.key(1), x, nu=nu)
    x, x_tilde, mask = map(np.asarray, (x, x_tilde, mask))
    assert x_tilde.shape == mask.shape == SHAPE and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert _within_binomial(int(mask.sum()), N, nu)
    np.testing.assert_array_equal(x_tilde[mask == 1], 0.0)
    np.testing.assert_array_equal(x_tilde[mask == 0], x[mask == 0])


def test_salt_and_pepper(x):
    nu, low, high = 0.3, -1.0, 2.0
    x_tilde, mask = corruptions.salt_and_pepper(jax.random.key(2), x, nu=nu, low=low, high=high)
    x, x_tilde, mask = map(np.asarray, (x, x_tilde, mask))
    corrupted = mask == 1
    n_corrupted = int(corrupted.sum())
    assert _within_binomial(n_corrupted, N, nu)
    values = x_tilde[corrupted]
    assert np.all((values == low) | (values == high))
    assert _within_binomial(int((values == high).sum()), n_corrupted, 0.5)
    np.testing.assert_array_equal(x_tilde[~corrupted], x[~corrupted])


def test_gaussian_variance_chi_square(x):
    sigma = 0.2
    x_tilde, mask = corruptions.gaussian(jax.random.key(3), x, sigma=sigma)
    assert np.all(np.asarray(mask) == 1.0)
    noise = np.asarray(x_tilde, np.float64) - np.asarray(x, np.float64)
    stat = np.sum(noise**2) / sigma**2  # ~ chi2(N) for N(0, sigma^2) noise
    lo, hi = stats.chi2.ppf([1e-5, 1 - 1e-5], df=N)
    assert lo < stat < hi
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(N)


def test_zero_noise_leaves_input_unchanged(x):
    np.testing.assert_array_equal(corruptions.masking(jax.random.key(4), x, nu=0.0)[0], x)
    np.testing.assert_array_equal(corruptions.gaussian(jax.random.key(4), x, sigma=0.0)[0], x)
    all_masked, mask = corruptions.masking(jax.random.key(4), x, nu=1.0)
    assert float(jnp.max(jnp.abs(all_masked))) == 0.0 and float(jnp.min(mask)) == 1.0


@pytest.mark.parametrize(
    "name, hparams",
    [("gaussian", {"sigma": 0.1}), ("masking", {"nu": 0.25}), ("salt_and_pepper", {"nu": 0.25})],
)
def test_deterministic_per_key(x, name, hparams):
    a = corruptions.corrupt(name, jax.random.key(5), x, **hparams)
    b = corruptions.corrupt(name, jax.random.key(5), x, **hparams)
    c = corruptions.corrupt(name, jax.random.key(6), x, **hparams)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_works_under_jit(x):
    fn = jax.jit(lambda k, v: corruptions.corrupt("salt_and_pepper", k, v, nu=0.2))
    eager = corruptions.salt_and_pepper(jax.random.key(8), x, nu=0.2)
    np.testing.assert_array_equal(fn(jax.random.key(8), x)[0], eager[0])


@pytest.mark.parametrize("nu", [-0.1, 1.5])
def test_bad_nu_raises(x, nu):
    with pytest.raises(ValueError, match="nu"):
        corruptions.masking(jax.random.key(0), x, nu=nu)
    with pytest.raises(ValueError, match="nu"):
        corruptions.salt_and_pepper(jax.random.key(0), x, nu=nu)


def test_bad_sigma_raises(x):
    with pytest.raises(ValueError, match="sigma"):
        corruptions.gaussian(jax.random.key(0), x, sigma=-1.0)


def test_unknown_corruption_lists_known():
    with pytest.raises(KeyError) as err:
        corruptions.CORRUPTIONS.get("dropout")
    for name in ("gaussian", "masking", "salt_and_pepper"):
        assert name in str(err.value)


def test_emphasized_weights():
    mask = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    w = corruptions.emphasized_weights(mask, alpha=1.0, beta=0.25)
    np.testing.assert_array_equal(w, [[1.0, 0.25, 1.0], [0.25, 0.25, 1.0]])
    with pytest.raises(ValueError):
        corruptions.emphasized_weights(mask, alpha=-1.0, beta=0.0)


@pytest.mark.parametrize("through_config", [False, True])
def test_gaussian_clip_is_the_clipped_unclipped_draw(x, through_config):
    # sigma 0.5 on values in (0.1, 0.9): a large share of the components leaves [0, 1] before clipping.
    key, sigma = jax.random.key(11), 0.5
    if through_config:  # config.corruption.clip reaches the corruption (the same key, the same noise)
        cfg = mnist_ae.get_config("runlocal").corruption
        cfg.name, cfg.sigma, cfg.clip = "gaussian", sigma, True
        clipped, _ = corruption_from_config(cfg)(key, x)
    else:
        clipped, _ = corruptions.gaussian(key, x, sigma=sigma, clip=True)
    raw, _ = corruptions.gaussian(key, x, sigma=sigma)
    raw, clipped = np.asarray(raw), np.asarray(clipped)
    np.testing.assert_array_equal(clipped, np.clip(raw, 0.0, 1.0))
    outside = (raw < 0) | (raw > 1)
    # Expected share outside [0, 1]: E over x ~ U(0.1, 0.9) of P(x + eps < 0) + P(x + eps > 1), eps ~ N(0, 0.25).
    grid = np.linspace(0.1, 0.9, 2001)
    p = np.mean(stats.norm.cdf(-grid / sigma) + stats.norm.sf((1 - grid) / sigma))
    assert abs(outside.mean() - p) < 5 * np.sqrt(p * (1 - p) / N)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    np.testing.assert_array_equal(clipped[~outside], raw[~outside])  # inside the range, nothing moves
