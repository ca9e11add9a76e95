"""Decoder likelihoods against closed forms computed independently (numpy / scipy)."""

import jax
import numpy as np
import pytest
from scipy import stats

from aejax.likelihoods import get_likelihood, squared_error


def test_bernoulli_nll_matches_closed_form():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3, 3, 1)).astype(np.float32) * 3
    x = rng.uniform(size=(4, 3, 3, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(4, -1).sum(1)
    lik = get_likelihood("bernoulli")
    np.testing.assert_allclose(lik.nll(logits, x), expected, rtol=1e-5)
    np.testing.assert_allclose(lik.mean(logits), p, rtol=1e-5)


def test_bernoulli_binary_data_is_log_prob_of_scipy_bernoulli():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5)).astype(np.float32)
    x = (rng.uniform(size=(3, 5)) < 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -stats.bernoulli.logpmf(x, p).sum(1)
    np.testing.assert_allclose(get_likelihood("bernoulli").nll(logits, x), expected, rtol=1e-5)


@pytest.mark.parametrize("sigma", [1.0, 0.3])
def test_gaussian_nll_is_scipy_normal_logpdf(sigma):
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(4, 6)).astype(np.float32)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    expected = -stats.norm.logpdf(x, mu, sigma).sum(1)
    np.testing.assert_allclose(get_likelihood("gaussian", sigma=sigma).nll(mu, x), expected, rtol=1e-5)


def test_emphasis_weights_and_squared_error():
    rng = np.random.default_rng(3)
    mu, x = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    w = np.array([[1.0, 0.0, 2.0, 0.5]] * 2, np.float32)
    elem = -stats.norm.logpdf(x, mu, 1.0)
    np.testing.assert_allclose(get_likelihood("gaussian").nll(mu, x, w), (elem * w).sum(1), rtol=1e-5)
    np.testing.assert_allclose(squared_error(jax.numpy.asarray(mu), x), ((mu - x) ** 2).sum(1), rtol=1e-6)


def test_unknown_likelihood_and_bad_sigma():
    with pytest.raises(KeyError, match="Known likelihoods: bernoulli, gaussian"):
        get_likelihood("poisson")
    with pytest.raises(ValueError, match="sigma > 0"):
        get_likelihood("gaussian", sigma=0.0)
