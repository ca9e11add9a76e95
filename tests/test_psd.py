"""PSD: unit-norm dictionary after every update, energy at h* <= energy at f(x), the augmented Lasso against
sklearn and the KKT conditions of the full energy, and an end-to-end run of the shared trainer."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import Lasso

from aejax import sharding
from aejax import train_step as ts
from aejax.data.batch import Batch
from aejax.models import get_model
from aejax.objectives import from_config
from aejax.objectives import psd as psd_objective
from configs import psd as psd_config

LAM, GAMMA = 0.4, 0.7


def _model_and_params(shape=(4, 4, 1), code_dim=6, seed=0):
    model = get_model("psd", input_shape=shape, code_dim=code_dim)
    params = model.init(jax.random.key(seed), jnp.zeros((1, *shape)))["params"]
    return model, params


def _problem(seed=1, batch=8):
    model, params = _model_and_params(seed=seed)
    x = jax.random.normal(jax.random.key(seed + 100), (batch, 4, 4, 1))
    f = model.apply({"params": params}, x, method="encode")
    return model, params, x.reshape(batch, -1), f


def test_model_shapes_and_unit_norm_init():
    model, params = _model_and_params()
    assert params["dictionary"].shape == (16, 6) and params["gain"].shape == (6,)
    np.testing.assert_allclose(jnp.linalg.norm(params["dictionary"], axis=0), 1.0, atol=1e-6)
    x = jnp.ones((3, 4, 4, 1))
    outputs = model.apply({"params": params}, x)
    out, z = outputs.decoder_output, outputs.code
    assert out.shape == (3, 4, 4, 1) and z.shape == (3, 6)
    # f(x) = g * tanh(W x + b) and the decoder is D z: check against numpy.
    W, b = np.asarray(params["encoder"]["kernel"]), np.asarray(params["encoder"]["bias"])
    f = np.asarray(params["gain"]) * np.tanh(np.ones((3, 16)) @ W + b)
    np.testing.assert_allclose(z, f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.reshape(3, 16), f @ np.asarray(params["dictionary"]).T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        model.apply({"params": params}, jnp.ones((3, 16)))


def test_energy_at_inferred_codes_is_no_greater_than_at_prediction():
    _, params, x, f = _problem()
    D = params["dictionary"]
    h = psd_objective.infer_codes(x, D, f, lam=LAM, gamma=GAMMA, num_steps=50)
    e_h = psd_objective.energy(x, D, h, f, lam=LAM, gamma=GAMMA)["total"]
    e_f = psd_objective.energy(x, D, f, f, lam=LAM, gamma=GAMMA)["total"]
    assert np.all(np.asarray(e_h) <= np.asarray(e_f) + 1e-5)
    assert np.mean(np.asarray(e_h) < np.asarray(e_f) - 1e-3) > 0.5  # and inference actually lowers it


def test_augmented_lasso_matches_sklearn_and_kkt_of_full_energy():
    _, params, x, f = _problem(seed=2, batch=3)
    D = params["dictionary"]
    h = np.asarray(psd_objective.infer_codes(x, D, f, lam=LAM, gamma=GAMMA, num_steps=3000), np.float64)
    D, x, f = (np.asarray(a, np.float64) for a in (D, x, f))
    n, k = D.shape
    d_aug = np.concatenate([D, np.sqrt(GAMMA) * np.eye(k)])
    for b in range(len(x)):
        y = np.concatenate([x[b], np.sqrt(GAMMA) * f[b]])
        # sklearn: (1 / (2 m)) ||y - X w||^2 + alpha ||w||_1, m = n + K rows; E / (2 m) gives alpha = lam / (2 m).
        ref = Lasso(alpha=LAM / (2 * (n + k)), fit_intercept=False, tol=1e-12, max_iter=100_000).fit(d_aug, y)
        np.testing.assert_allclose(h[b], ref.coef_, atol=2e-4)
    # KKT of E = ||x - D h||^2 + lam |h|_1 + gamma ||h - f||^2: g = 2 D^T (D h - x) + 2 gamma (h - f),
    # g_j = -lam sign(h_j) where h_j != 0 and |g_j| <= lam where h_j = 0.
    g = 2 * (h @ D.T - x) @ D + 2 * GAMMA * (h - f)
    active = np.abs(h) > 1e-6
    np.testing.assert_allclose(g[active], -LAM * np.sign(h[active]), atol=2e-3)
    assert np.all(np.abs(g[~active]) <= LAM + 2e-3)


def test_infer_codes_rejects_bad_shapes():
    _, params, x, f = _problem()
    with pytest.raises(ValueError, match="Expected"):
        psd_objective.infer_codes(x, params["dictionary"], f[:, :3], lam=LAM, gamma=GAMMA, num_steps=2)


def test_dictionary_columns_have_unit_norm_after_every_update():
    config = psd_config.get_config("runlocal,8x8")
    model, params = _model_and_params()
    objective = from_config(config, model, likelihood=None)
    mesh = sharding.make_mesh()
    tx = optax.sgd(0.5)  # a large step, so the raw update leaves the unit sphere
    step = ts.make_train_step(objective.loss_fn, tx, mesh, project=objective.project)
    state = jax.device_put(ts.init_state(params, tx, jax.random.key(0)), sharding.replicated(mesh))
    rng = np.random.default_rng(0)
    previous = np.asarray(params["dictionary"])
    for _ in range(3):
        x = rng.standard_normal((8, 4, 4, 1)).astype(np.float32)
        batch = sharding.to_global(Batch(x=x, label=np.zeros(8, np.int32)), mesh)
        state, metrics = step(state, batch)
        D = np.asarray(state.params["dictionary"])
        np.testing.assert_allclose(np.linalg.norm(D, axis=0), 1.0, atol=1e-5)
        assert not np.allclose(D, previous, atol=1e-3)  # the dictionary did move
        previous = D
        assert np.isfinite(float(metrics["loss"])) and 0 <= float(metrics["psd/active"]) <= 1


def test_bad_hyperparameters_raise():
    config = psd_config.get_config("runlocal")
    config.psd.lam = -1.0
    with pytest.raises(ValueError, match="lam"):
        from_config(config, _model_and_params()[0], likelihood=None)


def test_psd_trains_end_to_end(tmp_path, assert_figure):
    from aejax import train

    config = psd_config.get_config("runlocal,8x8")
    config.data_dir = str(tmp_path / "tfds")
    workdir = tmp_path / "run"
    results = train.train_and_evaluate(config, str(workdir))
    assert results["dataset"] == "natural_patches/8x8" and results["code_dim"] == 32
    assert np.isfinite(results["test_sq_err"]) and np.isfinite(results["test_energy"])
    for key in ("dictionary_selectivity", "encoder_selectivity", "random_selectivity", "rel_pred_err"):
        assert np.isfinite(results[f"filters/{key}"]), key
    assert 0 <= results["filters/active_fraction"] <= 1
    assert_figure(workdir / "filters.png")
    assert results["num_steps"] == 20
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert all("psd/rel_pred_err" in r for r in rows if "loss" in r)
