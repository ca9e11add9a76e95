"""batched_apply against a plain, un-chunked application: same values in order for any chunk size and N."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import sharding
from aejax.analysis.batched import batched_apply, padded_batch_size

N, D, K = 13, 5, 3  # 13 rows: not a multiple of any chunk size below nor of the 4 devices


def _model(xb, params):
    """A row-wise pytree -> pytree function with a nonlinearity: ({"h": [B, K]}, [B])."""
    h = jnp.tanh(xb["a"] @ params["w"] + params["b"][None, :])
    return {"h": h}, jnp.sum(h * xb["c"], axis=1)


def _data():
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(N, D)).astype(np.float32), "c": rng.normal(size=(N, K)).astype(np.float32)}
    params = {"w": rng.normal(size=(D, K)).astype(np.float32), "b": rng.normal(size=(K,)).astype(np.float32)}
    return x, params


def _reference(x, params):
    # Independent of the code under test: float64 numpy on all rows at once.
    h = np.tanh(x["a"].astype(np.float64) @ params["w"] + params["b"])
    return h, np.sum(h * x["c"], axis=1)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 5, 13, 100])
def test_equals_the_unchunked_application(batch_size):
    x, params = _data()
    (out, s) = batched_apply(_model, x, params, batch_size=batch_size)
    h, s_ref = _reference(x, params)
    assert isinstance(out["h"], np.ndarray) and out["h"].shape == (N, K) and s.shape == (N,)
    np.testing.assert_allclose(out["h"], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)


def test_one_device_and_four_devices_agree():
    assert len(jax.devices()) == 4  # conftest's simulated CPU devices
    x, params = _data()
    one = batched_apply(_model, x, params, batch_size=3, mesh=sharding.make_mesh(jax.devices()[:1]))
    four = batched_apply(_model, x, params, batch_size=3)
    np.testing.assert_allclose(one[1], four[1], rtol=1e-6, atol=1e-6)


def test_compiles_once_per_function_for_any_n():
    traces = []

    def fn(xb, w):
        traces.append(xb.shape)
        return xb @ w

    rng = np.random.default_rng(1)
    w = rng.normal(size=(D, K)).astype(np.float32)
    for n in (13, 7, 8, 1):
        x = rng.normal(size=(n, D)).astype(np.float32)
        np.testing.assert_allclose(batched_apply(fn, x, w, batch_size=8), x @ w, rtol=1e-5, atol=1e-5)
    assert traces == [(8, D)]


def test_chunk_i_draws_from_fold_in_of_the_rng():
    x = np.zeros((N, 2), np.float32)
    rng = jax.random.key(7)
    out = batched_apply(lambda xb, key: xb + jax.random.uniform(key, xb.shape), x, batch_size=4, rng=rng)
    # 4 devices: chunks of 4 rows, chunk i from fold_in(rng, i); a draw's first rows do not depend on its length.
    expected = np.concatenate(
        [np.asarray(jax.random.uniform(jax.random.fold_in(rng, i), (4, 2))) for i in range(4)]
    )[:N]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert len(np.unique(out)) == out.size  # no chunk repeats another's noise


def test_batch_size_is_rounded_up_to_the_devices():
    assert padded_batch_size(1, 4) == 4 and padded_batch_size(8, 4) == 8 and padded_batch_size(9, 4) == 12


@pytest.mark.parametrize(
    "x, batch_size, match",
    [
        (np.zeros((0, 2), np.float32), 4, "at least one row"),
        ({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, 4, "same number of rows"),
        (np.zeros((3, 2), np.float32), 0, "batch_size must be >= 1"),
    ],
)
def test_refuses_bad_input(x, batch_size, match):
    with pytest.raises(ValueError, match=match):
        batched_apply(lambda xb: xb, x, batch_size=batch_size)
