"""The hashing model's variants (`aejax.models.hashing`, configs/hashing.py) against their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax.models import get_model
from aejax.models.hashing import threshold
from configs import hashing as hashing_config

X = jax.random.uniform(jax.random.key(0), (256, 6, 6, 1))


def _model(**kwargs):
    model = get_model("hashing", input_shape=(6, 6, 1), hidden=(10,), code_dim=12, **kwargs)
    return model, model.init(jax.random.key(1), X[:2])


@pytest.mark.parametrize(
    "variant, noise_std, estimator, bits",
    [
        ("runlocal", 4.0, "noise", 32),
        ("runlocal,no_noise", 0.0, "noise", 32),
        ("runlocal,straight_through", 4.0, "straight_through", 32),
        ("runlocal,bits16", 4.0, "noise", 16),
        ("runlocal,bits64", 4.0, "noise", 64),
    ],
)
def test_config_variants_build_the_model_they_name(variant, noise_std, estimator, bits):
    config = hashing_config.get_config(variant)
    model = get_model(config.model_name, input_shape=(28, 28, 1), **config.model)
    assert (model.noise_std, model.estimator, model.code_dim) == (noise_std, estimator, bits)
    out = model.apply(model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1))), jnp.ones((2, 28, 28, 1)))
    assert out.code.shape == (2, bits)


def test_without_noise_the_training_code_is_the_sigmoid_of_the_logits():
    model, variables = _model(noise_std=0.0)
    out = model.apply(variables, X, train=True)  # no rng needed: nothing is drawn
    np.testing.assert_allclose(out.code, jax.nn.sigmoid(out.extras["code_logits"]), rtol=1e-6)
    np.testing.assert_array_equal(model.apply(variables, X).code, threshold(out.extras["code_logits"]))


def test_training_noise_has_the_configured_standard_deviation():
    # noise_std 1 keeps sigmoid(a + n) away from float32 saturation, so logit(code) - a recovers n exactly.
    model, variables = _model(noise_std=1.0)
    out = model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(3)})
    code = np.asarray(out.code, np.float64)
    n = np.log(code / (1 - code)) - np.asarray(out.extras["code_logits"], np.float64)
    n = n.ravel()  # 3,072 draws of N(0, 1)
    assert abs(n.mean()) < 5 / np.sqrt(n.size)
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], n.size) / n.size
    assert lo < np.mean(n**2) < hi
    assert stats.kstest(n, "norm").pvalue > 1e-4


def test_straight_through_passes_the_bits_forward_and_the_sigmoid_gradient_back():
    model, variables = _model(noise_std=0.0, estimator="straight_through")
    a = jax.random.normal(jax.random.key(4), (16, 12)) * 3
    w = jax.random.normal(jax.random.key(5), (16, 12))

    def binarise(a):
        return model.apply(variables, a, train=True, method=model.binarise)

    np.testing.assert_array_equal(binarise(a), (np.asarray(a) > 0).astype(np.float32))
    grad = jax.grad(lambda a: jnp.sum(w * binarise(a)))(a)
    s = jax.nn.sigmoid(a)
    np.testing.assert_allclose(grad, w * s * (1 - s), rtol=1e-5, atol=1e-7)
