"""ConvAutoencoder: shapes, parameter count, a numpy reference forward pass, BatchNorm statistics, row
independence in eval mode, the encoder Jacobian against finite differences, and its error messages."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.models import MODELS, AbstractAutoencoder
from aejax.models.conv import ConvAutoencoder

MOMENTUM = 0.99  # flax nn.BatchNorm default


def _count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _x(shape, seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


def _conv_same(x, kernel, bias, stride):
    """Independent numpy reference: cross-correlation with TF/XLA "SAME" padding, [B, H, W, Ci] -> [B, Ho, Wo, Co].

    SAME: out = ceil(in / s), total padding max((out - 1) s + k - in, 0), the smaller half before.
    """
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    k = kernel.shape[0]
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]  # [B, k, k, Ci]
            out[:, i, j, :] = np.einsum("bpqc,pqco->bo", patch, kernel)
    return out + np.asarray(bias, np.float64)


def test_registered_and_abstract():
    assert MODELS.get("conv") is ConvAutoencoder
    assert issubclass(ConvAutoencoder, AbstractAutoencoder)


@pytest.mark.parametrize("downsample", ["stride", "pool"])
@pytest.mark.parametrize(
    "input_shape, features, strides",
    [((28, 28, 1), (32, 64), 2), ((8, 8, 1), (4, 8), 2), ((12, 16, 3), (4, 8), 2), ((9, 18, 2), (4,), 3)],
)
def test_output_shapes(input_shape, features, strides, downsample):
    model = ConvAutoencoder(input_shape, features=features, strides=strides, downsample=downsample, code_dim=7)
    x = _x((3, *input_shape))
    variables = model.init(jax.random.key(0), x)
    out = model.apply(variables, x)
    assert out.decoder_output.shape == (3, *input_shape)
    assert out.code.shape == (3, 7)
    assert out.input is x
    factor = strides ** len(features)
    bottom = (input_shape[0] // factor) * (input_shape[1] // factor) * features[-1]
    assert variables["params"]["encoder_code"]["kernel"].shape == (bottom, 7)
    assert variables["params"]["decoder_dense"]["kernel"].shape == (7, bottom)


@pytest.mark.parametrize("downsample", ["stride", "pool"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("k", [3, 5])
def test_parameter_count_matches_formula(downsample, batch_norm, k):
    # (8, 8, 1), features (4, 6), stride 2, K = 5: maps 8x8x1 -> 4x4x4 -> 2x2x6 -> 5 -> 2x2x6 -> 4x4x4 -> 8x8x1.
    model = ConvAutoencoder(
        (8, 8, 1), features=(4, 6), kernel_size=k, downsample=downsample, code_dim=5, batch_norm=batch_norm
    )
    variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)))
    expected = (
        (k * k * 1 * 4 + 4)  # encoder_conv_0
        + (k * k * 4 * 6 + 6)  # encoder_conv_1
        + (2 * 2 * 6 * 5 + 5)  # encoder_code
        + (5 * 2 * 2 * 6 + 2 * 2 * 6)  # decoder_dense
        + (k * k * 6 * 4 + 4)  # decoder_conv_0
        + (k * k * 4 * 1 + 1)  # decoder_out
    )
    bn = 2 * (4 + 6 + 4)  # scale + bias (params) or mean + var (batch_stats) of encoder_bn_0/1, decoder_bn_0
    assert _count(variables["params"]) == expected + (bn if batch_norm else 0)
    assert set(variables) == ({"params", "batch_stats"} if batch_norm else {"params"})
    if batch_norm:
        assert _count(variables["batch_stats"]) == bn


@pytest.mark.parametrize("downsample", ["stride", "pool"])
def test_forward_matches_numpy_reference(downsample):
    model = ConvAutoencoder((8, 8, 1), features=(3, 4), downsample=downsample, code_dim=5, activation="tanh")
    x = _x((2, 8, 8, 1), seed=1)
    params = model.init(jax.random.key(2), x)["params"]
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    pooled = downsample == "pool"

    def pool(h):  # 2x2 max pooling of stride 2
        b, hh, ww, c = h.shape
        return h.reshape(b, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))

    h = np.asarray(x, np.float64)
    for i in range(2):
        conv = p[f"encoder_conv_{i}"]
        h = np.tanh(_conv_same(h, conv["kernel"], conv["bias"], 1 if pooled else 2))
        h = pool(h) if pooled else h
    z = h.reshape(2, -1) @ p["encoder_code"]["kernel"] + p["encoder_code"]["bias"]
    np.testing.assert_allclose(model.apply({"params": params}, x, method="encode"), z, rtol=1e-4, atol=1e-5)
    if pooled:  # decoder: Dense -> 2x2x4, then (nearest x2 -> stride-1 conv) twice
        zj = jnp.asarray(z, jnp.float32)
        h = np.tanh(z @ p["decoder_dense"]["kernel"] + p["decoder_dense"]["bias"]).reshape(2, 2, 2, 4)
        for name, act in (("decoder_conv_0", np.tanh), ("decoder_out", lambda a: a)):
            h = act(_conv_same(h.repeat(2, axis=1).repeat(2, axis=2), p[name]["kernel"], p[name]["bias"], 1))
        np.testing.assert_allclose(model.apply({"params": params}, zj, method="decode"), h, rtol=1e-4, atol=1e-5)


def test_batch_norm_tracks_batch_moments():
    model = ConvAutoencoder((8, 8, 1), features=(4, 6), code_dim=3, batch_norm=True)
    x = _x((6, 8, 8, 1), seed=3)
    variables = model.init(jax.random.key(0), x)
    stats0 = variables["batch_stats"]
    assert set(stats0) == {"encoder_bn_0", "encoder_bn_1", "decoder_bn_0"}
    _, updates = model.apply(
        variables, x, train=True, mutable=["batch_stats", "intermediates"], capture_intermediates=True
    )
    stats, inter = updates["batch_stats"], updates["intermediates"]
    # Pre-BN activations: the first conv independently in numpy, the later ones as captured (their inputs
    # depend on the batch-normalised earlier layers).
    conv0 = variables["params"]["encoder_conv_0"]
    pre = {
        "encoder_bn_0": _conv_same(x, conv0["kernel"], conv0["bias"], 2),
        "encoder_bn_1": np.asarray(inter["encoder_conv_1"]["__call__"][0], np.float64),
        "decoder_bn_0": np.asarray(inter["decoder_conv_0"]["__call__"][0], np.float64),
    }
    for name, a in pre.items():
        mean, var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))
        np.testing.assert_allclose(stats0[name]["mean"], 0.0)
        np.testing.assert_allclose(stats0[name]["var"], 1.0)
        np.testing.assert_allclose(
            stats[name]["mean"], MOMENTUM * 0.0 + (1 - MOMENTUM) * mean, rtol=1e-4, atol=1e-7
        )
        np.testing.assert_allclose(stats[name]["var"], MOMENTUM * 1.0 + (1 - MOMENTUM) * var, rtol=1e-4, atol=1e-7)
        assert np.abs(np.asarray(stats[name]["mean"])).max() > 1e-4  # moved away from the init value

    # Eval mode: no mutable collection needed, deterministic, and it reads the running statistics.
    trained = {"params": variables["params"], "batch_stats": stats}
    out1, out2 = model.apply(trained, x).decoder_output, model.apply(trained, x).decoder_output
    np.testing.assert_array_equal(out1, out2)
    assert not np.allclose(out1, model.apply(variables, x).decoder_output, atol=1e-4)
    # Train mode normalises with the batch's own moments, so a row's code depends on the other rows.
    z_full, _ = model.apply(trained, x, train=True, mutable=["batch_stats"], method="encode")
    z_half, _ = model.apply(trained, x[:3], train=True, mutable=["batch_stats"], method="encode")
    assert not np.allclose(z_full[:3], z_half, atol=1e-4)


@pytest.mark.parametrize("downsample", ["stride", "pool"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_eval_encoder_rows_do_not_interact(downsample, batch_norm):
    model = ConvAutoencoder((8, 8, 2), features=(4, 6), downsample=downsample, code_dim=3, batch_norm=batch_norm)
    x = _x((5, 8, 8, 2), seed=4)
    variables = model.init(jax.random.key(0), x)
    if batch_norm:  # non-trivial running statistics
        _, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
        variables = {"params": variables["params"], **upd}
    z = model.apply(variables, x, method="encode")
    alone = np.concatenate([model.apply(variables, x[i : i + 1], method="encode") for i in range(5)])
    np.testing.assert_allclose(z, alone, rtol=1e-5, atol=1e-6)


def test_encoder_jacobian_matches_central_differences():
    # tanh everywhere and stride mode: smooth, so central differences converge (max pooling and relu have kinks
    # a step could cross). float32: truncation ~ eps^2 |f'''| / 6 ~ 2e-5, rounding ~ 1e-6 / (2 eps) ~ 5e-5.
    model = ConvAutoencoder((8, 8, 1), features=(4,), code_dim=3, activation="tanh", code_activation="tanh")
    x = _x((8, 8, 1), seed=5)
    variables = model.init(jax.random.key(6), x[None])

    def f(x1):  # [8, 8, 1] -> [3]
        return model.apply(variables, x1[None], method="encode")[0]

    jac = jax.jacrev(f)(x).reshape(3, 64)
    eps = 1e-2
    steps = eps * jnp.eye(64).reshape(64, 8, 8, 1)
    enc = jax.vmap(f)
    fd = ((enc(x[None] + steps) - enc(x[None] - steps)) / (2 * eps)).T  # [3, 64]
    assert np.abs(jac).max() > 1e-2  # not a vacuous comparison
    np.testing.assert_allclose(jac, fd, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize(
    "input_shape, strides, features, side, factor",
    [((30, 28, 1), 2, (4, 8), 30, 4), ((28, 30, 1), 2, (4, 8), 30, 4), ((8, 8, 1), 3, (4,), 8, 3)],
)
def test_indivisible_side_is_a_clear_error(input_shape, strides, features, side, factor):
    model = ConvAutoencoder(input_shape, features=features, strides=strides)
    pattern = rf"input side {side} is not divisible by strides\*\*num_layers = {factor}"
    with pytest.raises(ValueError, match=pattern):
        model.init(jax.random.key(0), jnp.zeros((1, *input_shape)))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"downsample": "avg"}, KeyError, "Unknown downsample mode 'avg'. Known modes: pool, stride"),
        ({"features": (4, 0)}, ValueError, "Layer widths must be positive"),
        ({"features": ()}, ValueError, "Layer widths must be positive"),
        ({"code_dim": 0}, ValueError, "Layer widths must be positive"),
        ({"strides": 0}, ValueError, "kernel_size and strides must be positive"),
        ({"activation": "swish"}, KeyError, "Known activations"),
        ({"input_shape": (8, 8)}, ValueError, r"input_shape must be \[H, W, C\]"),
    ],
)
def test_bad_attributes_are_clear_errors(kwargs, error, pattern):
    model = ConvAutoencoder(**{"input_shape": (8, 8, 1), "features": (4,), **kwargs})
    with pytest.raises(error, match=pattern):
        model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_batch_shape_mismatch_names_both_shapes():
    model = ConvAutoencoder((8, 8, 1), features=(4,), code_dim=3)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"Input shape \(2, 8, 8, 2\) does not match .* \(8, 8, 1\)"):
        model.apply(variables, jnp.zeros((2, 8, 8, 2)))
    with pytest.raises(ValueError, match=r"Code shape \(2, 4\) is not \[B, code_dim=3\]"):
        model.apply(variables, jnp.zeros((2, 4)), method="decode")


@pytest.mark.parametrize("s", [2, 3])
def test_pool_and_upsample_equal_flax_max_pool_and_nearest_resize(s):
    """The reshape forms of the "pool" mode equal the library ops they replace (flax's max_pool, jax.image's
    nearest resize), and so do their gradients on data without ties."""
    model = ConvAutoencoder(input_shape=(6 * s, 6 * s, 1), features=(3,), strides=s, downsample="pool", code_dim=2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 6 * s, 6 * s, 1)))
    h = jax.random.normal(jax.random.key(1), (2, 6 * s, 6 * s, 3))  # continuous: no ties almost surely
    pool = lambda h: model.apply(variables, h, method=ConvAutoencoder._max_pool)
    ref_pool = lambda h: nn.max_pool(h, (s, s), strides=(s, s))
    np.testing.assert_array_equal(pool(h), ref_pool(h))
    w = jax.random.normal(jax.random.key(2), (2, 6, 6, 3))
    np.testing.assert_allclose(
        jax.grad(lambda h: jnp.sum(pool(h) * w))(h), jax.grad(lambda h: jnp.sum(ref_pool(h) * w))(h), rtol=1e-6
    )
    g = jax.random.normal(jax.random.key(3), (2, 5, 4, 3))
    up = model.apply(variables, g, method=ConvAutoencoder._upsample)
    np.testing.assert_array_equal(up, jax.image.resize(g, (2, 5 * s, 4 * s, 3), method="nearest"))
