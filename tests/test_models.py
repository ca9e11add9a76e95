"""Model shapes, parameter naming, tied weights and name errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models import MODELS, AbstractAutoencoder, get_model


def _init(model, x):
    return model.init(jax.random.key(0), x)["params"]


@pytest.mark.parametrize("tied", [False, True])
def test_mlp_shapes_and_layer_widths(tied):
    model = get_model("mlp", input_shape=(28, 28, 1), hidden=(1000, 500, 250), code_dim=30, tied=tied)
    x = jnp.ones((3, 28, 28, 1))
    params = _init(model, x)
    out = model.apply({"params": params}, x)
    assert out.decoder_output.shape == (3, 28, 28, 1)
    assert out.code.shape == (3, 30) and out.input is x
    widths = [params[f"encoder_{i}"]["kernel"].shape for i in range(4)]
    assert widths == [(784, 1000), (1000, 500), (500, 250), (250, 30)]
    n_params = sum(p.size for p in jax.tree.leaves(params))
    enc = 784 * 1000 + 1000 + 1000 * 500 + 500 + 500 * 250 + 250 + 250 * 30 + 30
    dec_bias = 250 + 500 + 1000 + 784
    assert n_params == (enc + dec_bias if tied else 2 * enc - 1000 - 500 - 250 - 30 + dec_bias)


def test_tied_decoder_uses_encoder_kernels_transposed():
    model = get_model("mlp", input_shape=(6,), hidden=(5,), code_dim=3, activation="tanh", tied=True)
    x = jax.random.normal(jax.random.key(1), (4, 6))
    params = _init(model, x)
    z = model.apply({"params": params}, x, method="encode")
    w0, w1 = params["encoder_0"]["kernel"], params["encoder_1"]["kernel"]
    b0, b1 = params["decoder_bias_0"], params["decoder_bias_1"]
    expected = jnp.tanh(z @ w1.T + b0[None]) @ w0.T + b1[None]
    np.testing.assert_allclose(model.apply({"params": params}, z, method="decode"), expected, rtol=1e-5)


def test_linear_code_layer_and_encode_decode_compose():
    model = get_model("mlp", input_shape=(8,), hidden=(6,), code_dim=2, code_activation="linear")
    x = jax.random.normal(jax.random.key(2), (5, 8))
    params = _init(model, x)
    h = jax.nn.relu(x @ params["encoder_0"]["kernel"] + params["encoder_0"]["bias"][None])
    z = h @ params["encoder_1"]["kernel"] + params["encoder_1"]["bias"][None]
    np.testing.assert_allclose(model.apply({"params": params}, x, method="encode"), z, rtol=1e-5)
    # The decoder mirrors the encoder: relu(z W_d0 + b) W_d1 + b, linear output.
    d0, d1 = params["decoder_0"], params["decoder_1"]
    expected = jax.nn.relu(z @ d0["kernel"] + d0["bias"][None]) @ d1["kernel"] + d1["bias"][None]
    out = model.apply({"params": params}, x)
    np.testing.assert_allclose(out.decoder_output, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.code, z, rtol=1e-5)
    assert isinstance(model, AbstractAutoencoder)


def test_unknown_model_lists_known():
    with pytest.raises(KeyError, match="Known models: .*mlp"):
        get_model("mlpp", input_shape=(4,))
    assert "mlp" in MODELS.known()


def test_unknown_activation_and_shape_mismatch_are_clear():
    with pytest.raises(KeyError, match="Known activations"):
        _init(
            get_model("mlp", input_shape=(4,), hidden=(3,), code_dim=2, activation="relux"),
            jnp.ones((1, 4)),
        )
    model = get_model("mlp", input_shape=(28, 28, 1), hidden=(3,), code_dim=2)
    with pytest.raises(ValueError, match=r"does not match the model's input_shape \(28, 28, 1\)"):
        _init(model, jnp.ones((1, 8, 8, 1)))
