"""The hashing model's variants (`aejax.models.hashing`, configs/hashing.py), the balanced / decorrelated-bits
penalties and code-space ITQ against their closed forms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax import regularizers
from aejax.analysis import binary_codes
from aejax.models import AutoencoderOutput, get_model
from aejax.models.hashing import CODE_PROBS, threshold
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


# The balanced / decorrelated-bits penalties (aejax/regularizers/bit_*.py) against their closed forms.


def _penalty(name, code, extras=None):
    outputs = AutoencoderOutput(decoder_output=None, code=jnp.asarray(code), input=None, extras=extras or {})
    return float(regularizers.get(name)(params={}, apply_fn=None, batch=None, outputs=outputs, rng=None))


def _all_patterns(num_bits: int) -> np.ndarray:
    """[2^b, b] every 0/1 code once: each bit is balanced and every pair of bits uncorrelated."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=num_bits)), np.float32)


@pytest.mark.parametrize("num_bits", [1, 3, 5])
def test_balanced_uncorrelated_codes_have_zero_penalties(num_bits):
    codes = _all_patterns(num_bits)
    assert abs(_penalty("bit_balance", codes)) < 1e-6
    assert abs(_penalty("bit_decorrelation", codes)) < 1e-6


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_codes_give_the_maximal_balance_penalty_and_zero_covariance(value):
    codes = np.full((10, 6), value, np.float32)
    np.testing.assert_allclose(_penalty("bit_balance", codes), 6 / 4, rtol=1e-6)  # (1/2)^2 per bit
    np.testing.assert_allclose(_penalty("bit_decorrelation", codes), 6 / 16, rtol=1e-6)  # ||0 - I/4||^2


def test_identical_balanced_bits_give_the_off_diagonal_decorrelation_penalty():
    column = np.array([0.0, 1.0] * 4, np.float32)[:, None]
    codes = np.repeat(column, 5, axis=1)  # 5 copies of one balanced bit: covariance 1/4 everywhere
    np.testing.assert_allclose(_penalty("bit_decorrelation", codes), (25 - 5) / 16, rtol=1e-6)
    assert abs(_penalty("bit_balance", codes)) < 1e-7


def test_penalties_match_a_numpy_reference_on_real_valued_codes():
    s = np.random.default_rng(0).uniform(size=(50, 7)).astype(np.float32)
    expected_balance = np.sum((s.astype(np.float64).mean(axis=0) - 0.5) ** 2)
    cov = np.cov(s.astype(np.float64), rowvar=False, bias=True)  # 1/B normalisation
    expected_decorrelation = np.sum((cov - np.eye(7) / 4) ** 2)
    np.testing.assert_allclose(_penalty("bit_balance", s), expected_balance, rtol=1e-5)
    np.testing.assert_allclose(_penalty("bit_decorrelation", s), expected_decorrelation, rtol=1e-5)


def test_penalties_read_the_noise_free_code_probs_of_a_hashing_model():
    # The training code sigmoid(a + n) is noisy; the penalties read sigmoid(a) from extras.
    noisy = np.zeros((8, 3), np.float32)
    probs = _all_patterns(3)
    assert abs(_penalty("bit_balance", noisy, {CODE_PROBS: jnp.asarray(probs)})) < 1e-7
    np.testing.assert_allclose(_penalty("bit_balance", noisy), 3 / 4, rtol=1e-6)


def test_config_variants_set_the_penalties_and_the_noise_schedule():
    c = hashing_config.get_config("balance,decorrelation,noise_schedule")
    assert c.regularizers.bit_balance.weight == hashing_config.BALANCE_WEIGHT
    assert c.regularizers.bit_decorrelation.weight == hashing_config.DECORRELATION_WEIGHT
    assert c.model.noise_schedule_steps == c.num_epochs * (4000 // c.batch_size) // 2
    assert "bit_balance" not in hashing_config.get_config("bits32").regularizers


def test_noise_schedule_ramps_the_std_linearly_and_counts_training_steps():
    model, variables = _model(noise_std=4.0, noise_std_initial=1.0, noise_schedule_steps=4)
    stds = []
    for t in range(6):
        stds.append(float(model.apply(variables, train=True, method=model.current_noise_std)))
        rngs = {"dropout": jax.random.key(t)}
        _, state = model.apply(variables, X[:2], train=True, rngs=rngs, mutable=["schedule"])
        variables = {**variables, **state}
    np.testing.assert_allclose(stds, [1.0, 1.75, 2.5, 3.25, 4.0, 4.0], rtol=1e-6)
    # Evaluation does not advance the counter.
    model.apply(variables, X[:2])
    assert int(variables["schedule"]["step"]) == 6


# Code-space ITQ (aejax/analysis/binary_codes.code_itq).


def test_code_itq_rotation_is_orthogonal_and_lowers_the_quantisation_loss_of_its_start():
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 8)) + 3.0  # correlated, off-centre
    hash_fn, losses = binary_codes.code_itq(codes, iterations=20)
    r = hash_fn.projection
    np.testing.assert_allclose(r.T @ r, np.eye(8), atol=1e-10)
    np.testing.assert_allclose(hash_fn.mean, codes.mean(axis=0), rtol=1e-12)
    # The start is the identity: the signs of the centred codes themselves, loss computed here by hand.
    v = codes - codes.mean(axis=0)
    start_loss = np.square(np.sign(v) - v).sum() / len(v)
    np.testing.assert_allclose(losses[0], start_loss, rtol=1e-12)
    end_loss = np.square((2.0 * hash_fn(codes) - 1) - v @ r).sum() / len(v)
    assert end_loss <= losses[-1] * (1 + 1e-9) and losses[-1] < start_loss
    assert np.all(np.diff(losses) <= 1e-10 * start_loss)
