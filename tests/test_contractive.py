"""Contractive penalties against independent references: closed forms, per-example jax.jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import regularizers
from aejax.data.batch import Batch
from aejax.models import AutoencoderOutput, get_model
from aejax.regularizers.contractive import (
    choose_method,
    encoder_jacobian,
    jacobian_frobenius_sq,
    sigmoid_layer_closed_form,
)
from aejax.regularizers.contractive_higher_order import jacobian_difference_sq
from aejax.regularizers.kl_sparsity import kl_sparsity


def _encoder(input_shape, hidden, code_dim, activation, code_activation, seed=0, batch=3):
    model = get_model(
        "mlp",
        input_shape=input_shape,
        hidden=hidden,
        code_dim=code_dim,
        activation=activation,
        code_activation=code_activation,
    )
    x = jax.random.normal(jax.random.key(seed + 100), (batch, *input_shape))
    params = model.init(jax.random.key(seed), x)["params"]
    return model, params, x, lambda v: model.apply({"params": params}, v, method="encode")


def _reference_frobenius_sq(encode, x):
    """Per example: the single-example map's full jax.jacobian, no vmap, no flattening."""
    jac_fn = jax.jit(jax.jacobian(lambda xi: encode(xi[None])[0]))  # [H, *input_shape]
    return np.array([float(jnp.sum(jac_fn(x[i]) ** 2)) for i in range(x.shape[0])])


@pytest.fixture(scope="module")
def deep():
    """A random 20-16-12-8 tanh encoder (d_in > d_code, so "auto" is reverse mode)."""
    return _encoder((20,), (16, 12), 8, "tanh", "tanh")


def test_choose_method():
    assert choose_method(3, 5) == "jacfwd"
    assert choose_method(5, 3) == "jacrev"
    assert choose_method(4, 4) == "jacrev"
    assert choose_method(784, 1000) == "jacfwd"
    assert choose_method(784, 30) == "jacrev"


def test_sigmoid_layer_exact_equals_closed_form():
    # Overcomplete one-layer sigmoid encoder on image-shaped input: auto = forward mode.
    model, params, x, encode = _encoder((2, 3, 1), (), 9, "relu", "sigmoid")
    exact = jacobian_frobenius_sq(encode, x, method="auto")
    closed = sigmoid_layer_closed_form(encode(x), params["encoder_0"]["kernel"])
    np.testing.assert_allclose(exact, closed, rtol=1e-5)
    np.testing.assert_allclose(exact, _reference_frobenius_sq(encode, x), rtol=1e-5)
    fn = regularizers.get("contractive")
    kwargs = dict(
        params=params,
        apply_fn=model.apply,
        batch=Batch(x, jnp.zeros((3,), jnp.int32)),
        outputs=model.apply({"params": params}, x),
        rng=None,
    )
    np.testing.assert_allclose(fn(**kwargs), np.mean(closed), rtol=1e-5)
    np.testing.assert_allclose(fn(**kwargs, method="closed_form"), np.mean(closed), rtol=1e-5)


@pytest.mark.parametrize("method", ["auto", "jacfwd", "jacrev"])
def test_deep_mlp_exact_matches_jax_jacobian(deep, method):
    _, _, x, encode = deep
    got = jacobian_frobenius_sq(encode, x, method=method)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, _reference_frobenius_sq(encode, x), rtol=1e-5)


def test_jacfwd_equals_jacrev_matrices(deep):
    _, _, x, encode = deep
    fwd = encoder_jacobian(encode, x, "jacfwd")
    assert fwd.shape == (3, 8, 20)
    np.testing.assert_allclose(fwd, encoder_jacobian(encode, x, "jacrev"), rtol=1e-5, atol=1e-7)


def test_linear_encoder_penalty_is_kernel_norm():
    # z = W^T x + b: J = W^T for every x, so ||J||_F^2 = ||W||_F^2.
    model, params, x, encode = _encoder((5,), (), 3, "relu", "linear")
    w_sq = float(np.sum(np.asarray(params["encoder_0"]["kernel"], np.float64) ** 2))
    for method in ("jacfwd", "jacrev", "auto"):
        np.testing.assert_allclose(jacobian_frobenius_sq(encode, x, method=method), w_sq, rtol=1e-5)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(deep, probe):
    _, _, x, encode = deep
    exact = _reference_frobenius_sq(encode, x)
    n = 2000
    keys = jax.random.split(jax.random.key(7), n)
    est = jax.jit(jax.vmap(lambda k: jacobian_frobenius_sq(encode, x, method="hutchinson", rng=k, probe=probe)))(
        keys
    )  # [n, B], one probe each
    est = np.asarray(est, np.float64)
    mean, sem = est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(sem > 0)
    assert np.all(np.abs(mean - exact) <= 4 * sem), (mean, exact, sem)


def test_hutchinson_probes_and_errors(deep):
    _, _, x, encode = deep
    many = jacobian_frobenius_sq(encode, x, method="hutchinson", rng=jax.random.key(0), num_probes=4)
    assert many.shape == (3,) and bool(jnp.all(many > 0))
    with pytest.raises(ValueError, match="rng"):
        jacobian_frobenius_sq(encode, x, method="hutchinson")
    with pytest.raises(ValueError, match="jacfwd, jacrev, hutchinson, closed_form"):
        jacobian_frobenius_sq(encode, x, method="finite_difference")


def test_closed_form_refuses_deep_encoder(deep):
    model, params, x, _ = deep
    with pytest.raises(ValueError, match="one-layer"):
        regularizers.get("contractive")(
            params=params,
            apply_fn=model.apply,
            batch=Batch(x, jnp.zeros((3,), jnp.int32)),
            outputs=model.apply({"params": params}, x),
            rng=None,
            method="closed_form",
        )


def test_higher_order_zero_at_sigma_zero(deep):
    model, params, x, encode = deep
    value = regularizers.get("contractive_higher_order")(
        params=params,
        apply_fn=model.apply,
        batch=Batch(x, jnp.zeros((3,), jnp.int32)),
        outputs=model.apply({"params": params}, x),
        rng=jax.random.key(0),
        sigma=0.0,
        num_corrupted=2,
    )
    # At sigma = 0 both Jacobians are of the same x but come from differently fused programs (the copies are
    # vmapped), so in float32 they agree only to a relative rounding error delta (measured: 8.5e-15 instead of
    # 0 on one machine, delta ~ 1 ulp). ||J - J'||_F^2 <= delta^2 ||J||_F^2, and delta <= sqrt(eps) (~3,000
    # ulps) gives the bound eps ||J||_F^2: generous for rounding, yet sigma = 1e-3 already exceeds it ~7x here.
    jac_sq = float(jnp.mean(jacobian_frobenius_sq(encode, x, method="auto")))
    assert 0.0 <= float(value) <= np.finfo(np.float32).eps * jac_sq


def test_higher_order_matches_jacobian_difference(deep):
    _, _, x, encode = deep
    eps = 0.3 * jax.random.normal(jax.random.key(3), (2, *x.shape))  # [C=2, B, D]
    got = jacobian_difference_sq(encode, x, eps, "auto")

    def jac(xi):
        return jax.jacobian(lambda v: encode(v[None])[0])(xi)  # [H, D]

    want = [
        np.mean([float(jnp.sum((jac(x[b]) - jac(x[b] + eps[c, b])) ** 2)) for c in range(2)])
        for b in range(x.shape[0])
    ]
    assert min(want) > 0
    np.testing.assert_allclose(got, want, rtol=1e-4)


def _kl_value(h, rho):
    return kl_sparsity(
        params={},
        apply_fn=None,
        batch=None,
        outputs=AutoencoderOutput(decoder_output=None, code=h, input=None),
        rng=None,
        rho=rho,
    )


def test_kl_sparsity_zero_at_target():
    rho = 0.05
    h = jnp.array([[0.02, 0.05, 0.10], [0.08, 0.05, 0.00], [0.05, 0.05, 0.05]])
    np.testing.assert_allclose(np.mean(np.asarray(h), axis=0), rho, rtol=1e-6)
    assert abs(float(_kl_value(h, rho))) < 1e-6


def test_kl_sparsity_closed_form():
    rho = 0.05
    h = jnp.array([[0.2, 0.5], [0.4, 0.1]])
    rho_hat = np.array([0.3, 0.3])
    want = 2 * (rho * np.log(rho / 0.3) + (1 - rho) * np.log((1 - rho) / 0.7))
    np.testing.assert_allclose(np.mean(np.asarray(h), axis=0), rho_hat, rtol=1e-6)
    np.testing.assert_allclose(_kl_value(h, rho), want, rtol=1e-5)
    with pytest.raises(ValueError, match="rho"):
        _kl_value(h, 1.5)
