"""Sparse autoencoders (issue 20): the architectures against numpy and the papers' closed forms, the shared
options (unit-norm decoder, AuxK, dead latents), the metrics against brute force, errors before compute, and the
dead counts across a checkpoint resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors.numpy
import scipy.optimize

from aejax import runs, sae_export, sharding, train
from aejax import train_step as ts
from aejax.analysis import sae_metrics
from aejax.data.batch import Batch
from aejax.models import get_model
from aejax.models import jumprelu as jr
from aejax.models.batchtopk import batch_topk_code
from aejax.models.sae_base import STATE, auxk_loss, geometric_median
from aejax.models.topk import topk_code
from aejax.objectives import sae as sae_objective
from configs import sae as sae_config

D, N = 6, 12  # input width and latents of the small models


def small(name, **kw):
    return get_model(name, input_shape=(D,), n_latents=N, **kw)


def data(seed, b=16, d=D):
    return np.asarray(jax.random.normal(jax.random.key(seed), (b, d)), np.float32)


def init(model, x):
    variables = model.init(jax.random.key(0), jnp.asarray(x[:1]))
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def test_topk_keeps_exactly_k_and_matches_numpy_argsort():
    pre = data(1, b=9, d=N)
    for k, relu in ((1, False), (4, False), (4, True), (N, False)):
        code = np.asarray(topk_code(jnp.asarray(pre), k, relu=relu))
        want = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1)[:, :k]
        np.put_along_axis(want, idx, np.take_along_axis(pre, idx, axis=1), axis=1)
        want = np.maximum(want, 0) if relu else want
        np.testing.assert_allclose(code, want, rtol=0, atol=0)
        if not relu:
            assert (np.count_nonzero(code, axis=1) == k).all()


def test_topk_model_uses_k_in_training_and_alpha_k_at_test():
    model = small("topk", k=3, relu=False, tied=True, eval_k_multiplier=2.0, b_dec_init="mean")
    x = data(2)
    params, state = init(model, x)
    out, _ = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
    assert (np.count_nonzero(np.asarray(out.code), axis=1) == 3).all()
    out = model.apply({"params": params, **state}, x)
    assert (np.count_nonzero(np.asarray(out.code), axis=1) == 6).all()
    assert "W_enc" not in params  # tied: the encoder is W_dec.T


def test_batchtopk_keeps_k_times_batch_over_the_batch_and_sets_the_threshold():
    pre = data(3, b=8, d=N) + 3.0  # all positive: every kept entry is non-zero
    k = 2
    code = np.asarray(batch_topk_code(jnp.asarray(pre), k))
    assert np.count_nonzero(code) == k * 8
    cut = np.sort(pre.ravel())[-k * 8]
    np.testing.assert_array_equal(code, np.where(pre >= cut, pre, 0))
    assert np.count_nonzero(code, axis=1).std() > 0  # per example the counts vary; only the batch total is k*B

    model = small("batchtopk", k=2, threshold_decay=0.5)
    x = data(4)
    params, state = init(model, x)
    out, new = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
    kept = np.asarray(out.code)
    assert np.count_nonzero(kept) <= 2 * len(x)
    bound = model.bind({"params": params, **new})
    # One update of a bias-corrected EMA is the batch's smallest kept activation itself.
    np.testing.assert_allclose(float(bound.threshold()), kept[kept > 0].min(), rtol=1e-6)
    # Inference: ReLU(pre) above the threshold, one example at a time independent of the batch.
    code_eval = np.asarray(model.apply({"params": params, **new}, x).code)
    pre_eval = np.asarray(model.apply({"params": params, **new}, x).pre_acts)
    np.testing.assert_allclose(code_eval, np.where(pre_eval > kept[kept > 0].min(), pre_eval, 0), atol=1e-6)


def test_jumprelu_pseudo_gradients_match_the_papers_formulas():
    eps = 0.1
    theta = np.array([0.5, 1.0, 0.2], np.float32)
    z = np.array([[0.46, 1.2, 0.0], [0.56, 0.97, 0.24], [0.3, 1.04, -1.0]], np.float32)
    g = np.array([[1.0, -2.0, 0.5], [3.0, 0.5, 1.0], [-1.0, 2.0, 4.0]], np.float32)
    kernel = (np.abs((z - theta) / eps) < 0.5).astype(np.float32)  # K((z - theta) / eps), rectangle
    heav = (z > theta).astype(np.float32)

    def f(z, t):
        return jnp.sum(jnp.asarray(g) * jr.jumprelu(z, t, eps))

    dz, dt = jax.grad(f, argnums=(0, 1))(jnp.asarray(z), jnp.asarray(theta))
    np.testing.assert_allclose(dt, np.sum(g * -(theta / eps) * kernel, axis=0), rtol=1e-5)  # eq. 11
    np.testing.assert_allclose(dz, g * heav, rtol=1e-6)
    assert kernel.sum() >= 3 and np.abs(np.asarray(dt)).min() > 0  # the window is hit in every column

    def h(z, t):
        return jnp.sum(jnp.asarray(g) * jr.heaviside(z, t, eps))

    dz, dt = jax.grad(h, argnums=(0, 1))(jnp.asarray(z), jnp.asarray(theta))
    np.testing.assert_allclose(dt, np.sum(g * -(1 / eps) * kernel, axis=0), rtol=1e-5)  # eq. 12
    np.testing.assert_allclose(dz, np.zeros_like(z), atol=0)
    np.testing.assert_allclose(jr.jumprelu(jnp.asarray(z), jnp.asarray(theta), eps), z * heav)


def test_decoder_rows_stay_unit_norm_and_lose_the_parallel_gradient():
    x = data(5, b=32)
    model = small("relu_l1", l1_coeff=0.1)
    free = small("relu_l1", l1_coeff=0.1, unit_norm_decoder=False)
    params, state = init(model, x)
    objective = sae_objective.from_config(None, model, None)
    batch = Batch(jnp.asarray(x), jnp.zeros(len(x), jnp.int32))

    def grads(m):
        loss_fn = sae_objective.from_config(None, m, None).loss_fn
        return jax.grad(lambda p: loss_fn(p, state, batch, jax.random.key(0), 0)[0])(params)["W_dec"]

    g, g_raw = np.asarray(grads(model)), np.asarray(grads(free))
    w = np.asarray(params["W_dec"])
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(g, g_raw - np.sum(g_raw * u, axis=1, keepdims=True) * u, rtol=1e-4, atol=1e-5)
    assert np.abs(np.sum(g * u, axis=1)).max() < 1e-5 * np.abs(g_raw).max()
    assert np.abs(np.sum(g_raw * u, axis=1)).max() > 1e-2 * np.abs(g_raw).max()  # there was something to remove

    tx = optax.adam(0.05)
    step = jax.jit(ts.update_fn(objective.loss_fn, tx, project=objective.project))
    s = ts.init_state(params, tx, jax.random.key(1), state)
    for _ in range(3):
        s, _ = step(s, batch)
    norms = np.linalg.norm(np.asarray(s.params["W_dec"]), axis=1)
    np.testing.assert_allclose(norms, np.ones(N), atol=1e-5)
    assert np.abs(np.asarray(s.params["W_dec"]) - w).max() > 1e-2  # the decoder did move


def test_auxk_is_zero_without_dead_latents_and_matches_numpy_with_them():
    rng = np.random.default_rng(0)
    pre, res = rng.normal(size=(5, N)).astype(np.float32), rng.normal(size=(5, D)).astype(np.float32)
    w = rng.normal(size=(N, D)).astype(np.float32)
    none_dead = auxk_loss(jnp.asarray(pre), jnp.zeros(N, bool), jnp.asarray(res), jnp.asarray(w), 3)
    assert np.abs(np.asarray(none_dead)).max() < 1e-30
    dead = np.arange(N) % 3 == 0  # 4 dead latents, k_aux = 3
    got = auxk_loss(jnp.asarray(pre), jnp.asarray(dead), jnp.asarray(res), jnp.asarray(w), 3)
    want = []
    for p, r in zip(pre, res, strict=True):
        cand = np.where(dead, np.maximum(p, 0), 0)
        top = np.argsort(-cand)[:3]
        want.append(np.sum((r - cand[top] @ w[top]) ** 2))
    np.testing.assert_allclose(got, want, rtol=1e-5)

    model = small("topk", k=2, aux_k=3, dead_after=10**6)  # nothing can be dead after one batch
    x = data(6)
    params, state = init(model, x)
    out, _ = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
    assert np.abs(np.asarray(out.losses["auxk"])).max() < 1e-30


def test_dead_counts_match_a_brute_force_count():
    model = small("topk", k=1, relu=False, dead_after=20)
    xs = [data(10 + i, b=5) for i in range(6)]
    params, state = init(model, xs[0])
    since = np.zeros(N, np.int64)
    for x in xs:
        out, state = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
        fired = (np.asarray(out.code) != 0).any(axis=0)
        since = np.where(fired, 0, since + len(x))
        np.testing.assert_array_equal(np.asarray(state[STATE]["examples_since_fired"]), since)
        assert int(out.num_dead) == int((since >= 20).sum())
    assert 0 < (since >= 20).sum() < N  # the check saw dead and live latents


@pytest.mark.parametrize(
    "name, kw, match",
    [
        ("topk", dict(k=0), "k must be"),
        ("topk", dict(k=N + 1), "k must be"),
        ("batchtopk", dict(k=-1), "k must be"),
        ("jumprelu", dict(bandwidth=0.0), "bandwidth"),
        ("jumprelu", dict(bandwidth=-1e-3), "bandwidth"),
        ("topk", dict(k=2, aux_k=N + 1), "aux_k"),
    ],
)
def test_bad_hyperparameters_fail_when_the_model_is_built(name, kw, match):
    with pytest.raises(ValueError, match=match):
        small(name, **kw)  # construction only: no init, no compute


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="batchtopk.*gated.*jumprelu.*relu_l1.*topk"):
        get_model("topk_sae", input_shape=(D,))
    with pytest.raises(KeyError, match="geometric_median"):
        small("topk", k=2, b_dec_init="median")


def test_input_normalisation_and_centre_come_from_the_first_training_batch():
    x = 7.0 * data(7, b=64) + 2.0
    model = small("topk", k=2, b_dec_init="mean")
    params, state = init(model, x)
    _, state = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
    s = np.sqrt(D / np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))
    np.testing.assert_allclose(state[STATE]["input_scale"], s, rtol=1e-5)
    np.testing.assert_allclose(state[STATE]["data_centre"], s * x.mean(axis=0), rtol=1e-4, atol=1e-5)
    _, again = model.apply({"params": params, **state}, 3 * x, train=True, mutable=[STATE])
    np.testing.assert_allclose(again[STATE]["input_scale"], s, rtol=1e-6)  # frozen after the first batch


def test_metrics_match_brute_force_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5)) * np.arange(1, 6) + 3.0  # a non-zero mean: FVU must centre on it
    x_hat = x + 0.3 * rng.normal(size=x.shape)
    code = rng.normal(size=(40, 7)) * (rng.random((40, 7)) < np.linspace(0, 0.9, 7))  # latent 0 never fires
    mean = sum(x) / len(x)
    num = sum(float(np.dot(a - b, a - b)) for a, b in zip(x, x_hat, strict=True))
    den = sum(float(np.dot(a - mean, a - mean)) for a in x)
    got = sae_metrics.summary(x, x_hat, code)
    np.testing.assert_allclose(got["fvu"], num / den, rtol=1e-10)
    uncentred = num / sum(float(np.dot(a, a)) for a in x)  # the ratio a wrong FVU would give
    assert got["fvu"] > 1.5 * uncentred
    np.testing.assert_allclose(got["mse"], num / x.size, rtol=1e-10)
    np.testing.assert_allclose(got["l0"], np.mean([sum(v != 0 for v in row) for row in code]), rtol=1e-12)
    cos = [np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)) for a, b in zip(x, x_hat, strict=True)]
    np.testing.assert_allclose(got["cos_sim"], np.mean(cos), rtol=1e-10)
    shrink = [np.sqrt(np.dot(b, b) / np.dot(a, a)) for a, b in zip(x, x_hat, strict=True)]
    np.testing.assert_allclose(got["shrinkage"], np.mean(shrink), rtol=1e-10)
    freq = np.array([sum(code[i, j] != 0 for i in range(40)) / 40 for j in range(7)])
    np.testing.assert_allclose(sae_metrics.firing_frequency(code), freq, rtol=1e-12)
    assert got["never_fired_fraction"] == pytest.approx(1 / 7)
    dens = sae_metrics.log10_density(freq)
    assert dens[0] == sae_metrics.LOG10_FLOOR
    np.testing.assert_allclose(dens[1:], np.log10(freq[1:]), rtol=1e-12)
    top = sae_metrics.top_activating(code, 6, 3)
    assert list(code[top, 6]) == sorted(code[:, 6], reverse=True)[:3]
    # The objective's per-example metrics agree with the split-level numbers.
    per = sae_objective.eval_metrics(
        jnp.asarray(x, jnp.float32), jnp.asarray(x_hat, jnp.float32), jnp.asarray(code)
    )
    np.testing.assert_allclose(np.mean(per["cos_sim"]), got["cos_sim"], rtol=1e-5)
    np.testing.assert_allclose(np.sum(per["sq_err"]), num, rtol=1e-5)


def test_geometric_median_minimises_the_sum_of_distances():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=(30, 3)), 50 + rng.normal(size=(5, 3))])  # outliers pull the mean
    c = np.asarray(geometric_median(jnp.asarray(x, jnp.float32), num_iters=200), np.float64)
    ref = scipy.optimize.minimize(lambda c: np.linalg.norm(x - c, axis=1).sum(), x.mean(0), method="Nelder-Mead",
                                  options=dict(xatol=1e-8, fatol=1e-10, maxiter=20000)).x  # fmt: skip
    np.testing.assert_allclose(c, ref, atol=1e-3)
    assert np.linalg.norm(c - x[:30].mean(0)) < np.linalg.norm(x.mean(0) - x[:30].mean(0)) / 5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, steps, reports=""):
    config = sae_config.get_config("mnist,runlocal")
    config.data_dir = data_dir
    config.model.update(dict(k=2, dead_after=64, aux_k=4))  # some latents die within 20 steps of 64
    config.num_train_steps = steps
    config.log_every, config.eval_every, config.checkpoint_every = 5, 10, 10
    config.steps_per_call = 1
    config.analysis.reports = reports
    return config


def test_dead_counts_and_statistics_survive_a_checkpoint_resume_and_the_report_matches_numpy(tmp_path, data_dir):
    ref_dir, resumed_dir = str(tmp_path / "ref"), str(tmp_path / "resumed")
    results = train.train_and_evaluate(_config(data_dir, 20, reports="sae"), ref_dir)
    train.train_and_evaluate(_config(data_dir, 10), resumed_dir)  # stops at step 10 with a checkpoint
    train.train_and_evaluate(_config(data_dir, 20), resumed_dir)  # resumes from it
    ref, res = runs.load_run(ref_dir, step=20), runs.load_run(resumed_dir, step=20)
    a, b = jax.device_get(ref.state.model_state[STATE]), jax.device_get(res.state.model_state[STATE])
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    since = a["examples_since_fired"]
    assert since.max() > 0 and a["statistics_ready"]  # tracked, not just zeros
    assert results["sae/dead_fraction"] == pytest.approx(np.mean(since >= 64))
    # The report's FVU from the checkpoint, recomputed in numpy from the test split.
    variables = jax.device_get({"params": ref.state.params, **ref.state.model_state})
    x = ref.test_split.x.reshape(len(ref.test_split.x), -1).astype(np.float64)
    x_hat = np.asarray(ref.model.apply(variables, ref.test_split.x).decoder_output).reshape(x.shape)
    fvu = np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
    np.testing.assert_allclose(results["sae/fvu"], fvu, rtol=1e-4)
    assert os.path.exists(os.path.join(ref_dir, "sae_density.png"))


def _numpy_codes(t, cfg, x):
    """The exported SAE's codes, computed from the file alone in numpy (the SAELens conventions)."""
    h = x - t["b_dec"] if cfg["apply_b_dec_to_input"] else x
    arch = cfg["architecture"]
    if arch == "gated":
        pi = h @ t["W_enc"] + t["b_gate"]
        mag = np.maximum(h @ (t["W_enc"] * np.exp(t["r_mag"])) + t["b_mag"], 0)
        return (pi > 0) * mag
    pre = h @ t["W_enc"] + t["b_enc"]
    if arch == "standard":
        return np.maximum(pre, 0)
    if arch == "jumprelu":
        return pre * (pre > t["threshold"])
    assert arch == "topk"
    idx = np.argsort(-pre, axis=1)[:, : cfg["k"]]
    out = np.zeros_like(pre)
    vals = np.take_along_axis(pre, idx, axis=1)
    np.put_along_axis(out, idx, np.maximum(vals, 0) if cfg["relu_after_topk"] else vals, axis=1)
    return out


@pytest.mark.parametrize(
    "name, kw",
    [
        ("topk", dict(k=3)),
        ("topk", dict(k=3, relu=False, tied=True, pre_bias=False, eval_k_multiplier=2.0)),
        ("batchtopk", dict(k=3)),
        ("jumprelu", dict(threshold_init=0.3, pre_bias=False)),
        ("gated", {}),
        ("relu_l1", dict(b_dec_init="mean")),
    ],
)
def test_export_reads_back_and_gives_the_same_codes_in_numpy(tmp_path, name, kw):
    model = small(name, **kw)
    x = 3.0 * data(20, b=32) + 1.0
    params, state = init(model, x)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(p.size), p.shape), params)
    _, state = model.apply({"params": params, **state}, x, train=True, mutable=[STATE])
    variables = {"params": params, **state}
    cfg_path, weights = sae_export.export(model, variables, str(tmp_path / "export"))
    with open(cfg_path) as f:
        cfg = json.load(f)
    t = safetensors.numpy.load_file(weights)
    assert t["W_enc"].shape == (D, N) and t["W_dec"].shape == (N, D) and t["b_dec"].shape == (D,)
    assert (cfg["d_in"], cfg["d_sae"]) == (D, N)
    out = model.apply(variables, x)
    codes = _numpy_codes(t, cfg, x.astype(np.float64))
    np.testing.assert_allclose(codes, np.asarray(out.code), rtol=1e-4, atol=1e-4)
    assert np.count_nonzero(codes) > 0
    np.testing.assert_allclose(
        codes @ t["W_dec"] + t["b_dec"], np.asarray(out.decoder_output), rtol=1e-4, atol=1e-4
    )


def test_options_the_sae_objective_cannot_honour_are_refused():
    config = sae_config.get_config("mnist,runlocal")
    config.corruption.name = "gaussian"
    with pytest.raises(ValueError, match="corruption='gaussian'"):
        sae_objective.from_config(config, small("topk", k=2), None)
    with pytest.raises(TypeError, match="MLPAutoencoder"):
        sae_objective.from_config(None, get_model("mlp", input_shape=(D,), hidden=(), code_dim=2), None)


def test_encoder_starts_as_the_decoder_transpose_with_unit_rows():
    params, _ = init(small("relu_l1"), data(8))
    w_dec = np.asarray(params["W_dec"])
    np.testing.assert_allclose(np.linalg.norm(w_dec, axis=1), np.ones(N), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(params["W_enc"]), w_dec.T)
    params, _ = init(small("relu_l1", encoder_init_transpose=False), data(8))
    assert np.abs(np.asarray(params["W_enc"]) - np.asarray(params["W_dec"]).T).max() > 1e-2


def test_data_parallel_step_compiles_once_and_matches_one_device():
    """BatchTopK's top-k over the batch and the dead counts see the global batch when it is sharded."""
    model = small("batchtopk", k=2, aux_k=3, dead_after=32)
    xs = [data(30 + i, b=16) for i in range(3)]
    params, state = init(model, xs[0])
    objective = sae_objective.from_config(None, model, None)
    traces = []

    def loss_fn(*args):
        traces.append(1)  # runs only while tracing
        return objective.loss_fn(*args)

    tx = optax.adam(1e-2)
    mesh = sharding.make_mesh()
    assert mesh.devices.size > 1
    step = ts.make_train_step(loss_fn, tx, mesh, project=objective.project)
    one = jax.jit(ts.update_fn(objective.loss_fn, tx, project=objective.project))
    s = sharding.replicate(ts.init_state(params, tx, jax.random.key(1), state), mesh)
    ref = ts.init_state(jax.tree.map(jnp.copy, params), tx, jax.random.key(1), jax.tree.map(jnp.copy, state))
    for x in xs:
        batch = Batch(x, np.zeros(len(x), np.int32))
        s, _ = step(s, sharding.to_global(batch, mesh))
        ref, _ = one(ref, Batch(jnp.asarray(x), jnp.zeros(len(x), jnp.int32)))
    assert len(traces) == 1
    a, b = jax.device_get(s.model_state[STATE]), jax.device_get(ref.model_state[STATE])
    np.testing.assert_array_equal(a["examples_since_fired"], b["examples_since_fired"])
    np.testing.assert_allclose(a["threshold_ema"], b["threshold_ema"], rtol=1e-5)
    for p, q in zip(jax.tree.leaves(s.params), jax.tree.leaves(ref.params), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


def test_loss_recovered_is_one_for_exact_and_zero_for_zero_ablation():
    assert sae_metrics.loss_recovered(2.0, 2.0, 5.0) == {"delta_loss": 0.0, "loss_recovered": 1.0}
    assert sae_metrics.loss_recovered(2.0, 5.0, 5.0)["loss_recovered"] == 0.0
    np.testing.assert_allclose(sae_metrics.loss_recovered(2.0, 2.75, 5.0)["loss_recovered"], 0.75)
    with pytest.raises(ValueError, match="undefined"):
        sae_metrics.loss_recovered(2.0, 2.1, 2.0)


def test_topk_code_with_ties_and_its_gradient_match_numpy():
    # Rows with ties at the k-th value take the scatter branch, rows without the mask branch: both must keep
    # exactly the k largest (ties to the lower index, as lax.top_k) with the gradient of the kept entries.
    rng = np.random.default_rng(0)
    tied = rng.integers(-3, 4, size=(6, N)).astype(np.float32)
    cot = rng.normal(size=(6, N)).astype(np.float32)
    for pre in (tied, data(5, b=6, d=N)):
        for k, relu in ((3, False), (5, True)):
            code, vjp = jax.vjp(lambda p, k=k, relu=relu: topk_code(p, k, relu=relu), jnp.asarray(pre))
            idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
            keep = np.zeros(pre.shape, bool)
            np.put_along_axis(keep, idx, True, axis=1)
            want = np.where(keep, np.maximum(pre, 0) if relu else pre, 0)
            np.testing.assert_array_equal(np.asarray(code), want)
            grad = np.where(keep & ((pre > 0) if relu else True), cot, 0)
            np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(cot))[0]), grad)
