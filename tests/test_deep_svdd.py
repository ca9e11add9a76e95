"""Deep SVDD (aejax/objectives/deep_svdd.py, aejax/jobs/deep_svdd.py) and the DAE's energy score: the centre,
the losses and the radius against numpy; the collapse guard; a planted outlier on a toy set; the line integral
of a tied autoencoder's field against its closed-form potential energy (Kamyshanska & Memisevic 2015)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import loop, optim, sharding
from aejax import train_step as ts
from aejax.analysis import anomaly
from aejax.data import pipeline
from aejax.data.batch import Batch
from aejax.models import get_model
from aejax.objectives import deep_svdd as svdd


def _numpy_center(codes, eps):
    c = codes.mean(axis=0)
    for j in range(len(c)):  # Ruff et al.'s rule, written out coordinate by coordinate
        if abs(c[j]) < eps:
            c[j] = -eps if c[j] < 0 else eps
    return c


def test_center_is_the_mean_code_with_small_coordinates_moved_to_plus_minus_eps():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(50, 6))
    codes[:, 0] += 3.0 - codes[:, 0].mean()  # mean exactly 3: kept
    codes[:, 1] -= codes[:, 1].mean() + 0.03  # mean -0.03: -> -eps
    codes[:, 2] -= codes[:, 2].mean() - 0.05  # mean 0.05: -> +eps
    codes[:, 3] -= codes[:, 3].mean()  # mean ~0 (either sign up to rounding): -> +-eps, never 0
    c = svdd.initial_center(codes, eps=0.1)
    np.testing.assert_allclose(c, _numpy_center(codes, 0.1), rtol=1e-6)
    assert c[0] == pytest.approx(3.0) and c[1] == pytest.approx(-0.1) and c[2] == pytest.approx(0.1)
    assert np.all(np.abs(c) >= 0.1 - 1e-7)  # the centre is off zero in every coordinate
    assert svdd.initial_center(np.zeros((4, 3)), eps=0.1).tolist() == pytest.approx([0.1, 0.1, 0.1])
    for bad, match in ((np.zeros(3), r"\[N, K\]"), (np.full((2, 2), np.nan), "not finite")):
        with pytest.raises(ValueError, match=match):
            svdd.initial_center(bad)
    with pytest.raises(ValueError, match="eps"):
        svdd.initial_center(codes, eps=0.0)


def test_one_class_and_soft_boundary_losses_and_the_radius_match_numpy():
    rng = np.random.default_rng(1)
    d = rng.exponential(size=41).astype(np.float32)  # (n - 1)(1 - nu) = 32: the quantile is a data point
    r_sq, nu = 0.8, 0.2
    assert float(svdd.loss_value(jnp.asarray(d), r_sq, "one_class", nu)) == pytest.approx(d.mean(), rel=1e-6)
    soft = r_sq + np.sum(np.maximum(d - r_sq, 0.0)) / (nu * len(d))  # eq. 3: R^2 + 1/(nu n) sum max(0, .)
    assert float(svdd.loss_value(jnp.asarray(d), r_sq, "soft_boundary", nu)) == pytest.approx(soft, rel=1e-6)
    want = np.quantile(np.sqrt(d), 1 - nu) ** 2  # Ruff's get_radius, squared
    assert float(svdd.radius_sq(jnp.asarray(d), nu)) == pytest.approx(want, rel=1e-5)
    # At R^2 from the quantile, at most a fraction nu of the points lie outside the sphere (Prop. 4).
    assert np.mean(d > want) <= nu
    with pytest.raises(KeyError, match="one_class, soft_boundary"):
        svdd.loss_value(jnp.asarray(d), r_sq, "hard", nu)


def _mlp_net(use_bias=False, activation="leaky_relu", dim=8, code_dim=3):
    kw = dict(hidden=(16,), code_dim=code_dim, activation=activation, use_bias=use_bias)
    model = get_model("mlp", input_shape=(dim,), **kw)
    return svdd.DeepSVDDNet(model), kw


def _variables(net, x, center, seed=0):
    v = net.init(jax.random.key(seed), jnp.asarray(x[:1]))
    v = dict(v)
    v[svdd.COLLECTION] = {svdd.CENTER: jnp.asarray(center), svdd.RADIUS_SQ: jnp.zeros((), jnp.float32)}
    return v


def test_the_soft_boundary_radius_is_updated_from_all_training_distances_after_the_warm_up():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(45, 8)).astype(np.float32)
    net, _ = _mlp_net()
    v = _variables(net, x, center=np.full(3, 0.5, np.float32))
    obj = svdd.make_objective(net, kind="soft_boundary", nu=0.1, train_x=x, radius_every=4, warmup_steps=8,
                              radius_batch=16)  # fmt: skip
    ms = {k: w for k, w in v.items() if k != "params"}
    sgd = dict(name="sgd", learning_rate=0.0, schedule="constant", weight_decay=0.0, grad_clip_norm=0.0)
    tx = optim.make_optimizer(ml_collections.ConfigDict(sgd), 1)
    batch = Batch(x=jnp.asarray(x[:8]), label=jnp.zeros(8, jnp.int32))
    # An independent forward pass: the MLP by hand from its kernels (no biases), leaky ReLU slope 0.01.
    p = v["params"][svdd.ENCODER]
    h = x @ np.asarray(p["encoder_0"]["kernel"])
    code = np.where(h > 0, h, 0.01 * h) @ np.asarray(p["encoder_1"]["kernel"])
    dist = np.sum((code - 0.5) ** 2, axis=1)
    want = np.quantile(np.sqrt(dist), 0.9) ** 2
    update = jax.jit(lambda state: obj.after_update(state, batch, tx))  # one compilation for the three steps
    for step, updated in ((4, False), (9, False), (12, True)):
        state = ts.init_state(v["params"], tx, jax.random.key(0), ms).replace(step=jnp.int32(step))
        r_sq = float(update(state).model_state[svdd.COLLECTION][svdd.RADIUS_SQ])
        assert r_sq == (pytest.approx(want, rel=1e-4) if updated else 0.0), step
    # The loss reads R^2 from the state: eq. 3 on the batch.
    state = ts.init_state(v["params"], tx, jax.random.key(0), ms)
    state = update(state.replace(step=jnp.int32(12)))
    loss, (metrics, _) = obj.loss_fn(state.params, state.model_state, batch, None, 0)
    assert float(loss) == pytest.approx(want + np.maximum(dist[:8] - want, 0).sum() / (0.1 * 8), rel=1e-4)
    assert float(metrics["radius_sq"]) == pytest.approx(want, rel=1e-4)
    ev = obj.eval_fn(state.params, state.model_state, batch, None)
    np.testing.assert_allclose(ev.metrics[svdd.SCORE], dist[:8] - want, rtol=1e-4, atol=1e-5)


def test_the_collapse_guard_refuses_biases_and_bounded_activations_by_name():
    x = np.zeros((2, 8), np.float32)
    net, kw = _mlp_net(use_bias=True)
    params = net.init(jax.random.key(0), jnp.asarray(x))["params"]
    with pytest.raises(ValueError, match=r"autoencoder/encoder_0/bias, autoencoder/encoder_1/bias"):
        svdd.check_no_collapse(params, kw)
    net, kw = _mlp_net(activation="tanh")
    params = net.init(jax.random.key(0), jnp.asarray(x))["params"]
    with pytest.raises(ValueError, match="activation='tanh'"):
        svdd.check_no_collapse(params, kw)
    net, kw = _mlp_net()
    svdd.check_no_collapse(net.init(jax.random.key(0), jnp.asarray(x))["params"], kw)  # bias-free: accepted
    conv = get_model("conv", input_shape=(8, 8, 1), features=(4,), code_dim=3, batch_norm=True)
    params = svdd.DeepSVDDNet(conv).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    with pytest.raises(ValueError, match="encoder_bn_0/bias"):  # BatchNorm's learned shift is a bias too
        svdd.check_no_collapse(params, {})
    conv = get_model("conv", input_shape=(8, 8, 1), features=(4,), code_dim=3, batch_norm=True, use_bias=False)
    svdd.check_no_collapse(svdd.DeepSVDDNet(conv).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"], {})


def test_the_job_refuses_an_encoder_with_biases_before_any_training(tmp_path):
    from aejax.jobs import deep_svdd as job
    from configs import deep_svdd as config_lib

    c = config_lib.get_config("runlocal,mlp,digits")
    c.unlock()
    c.data_dir = str(tmp_path / "tfds")
    c.pretrain.model.use_bias = True
    with pytest.raises(ValueError, match="encoder_0/bias"):
        job.train_and_evaluate(c.lock(), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "pretrain").exists()


@pytest.mark.parametrize("kind", svdd.KINDS)
def test_a_planted_outlier_scores_above_the_normal_data_after_training(kind):
    rng = np.random.default_rng(3)
    dim = 8
    mean = np.linspace(1.0, 2.0, dim)
    x = (mean + 0.2 * rng.normal(size=(256, dim))).astype(np.float32)
    direction = rng.normal(size=dim)
    outlier = np.linalg.norm(mean) * direction / np.linalg.norm(direction)  # as far from 0 as the data, elsewhere
    test = np.concatenate([mean + 0.2 * rng.normal(size=(64, dim)), outlier[None]]).astype(np.float32)
    net, _ = _mlp_net(dim=dim)
    v = _variables(net, x, center=np.zeros(3, np.float32), seed=1)
    v[svdd.COLLECTION][svdd.CENTER] = jnp.asarray(svdd.initial_center(np.asarray(net.apply(v, x))))
    obj = svdd.make_objective(net, kind=kind, nu=0.05, train_x=x, radius_every=10, warmup_steps=50)
    cfg = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=3e-3, schedule="constant", weight_decay=1e-6, grad_clip_norm=0.0)
    )
    tx = optim.make_optimizer(cfg, 200)
    mesh = sharding.make_mesh()
    ms = {k: w for k, w in v.items() if k != "params"}
    place = jax.jit(
        lambda p, m: ts.init_state(p, tx, jax.random.key(0), m), out_shardings=sharding.replicated(mesh)
    )
    before = np.asarray(
        obj.eval_fn(v["params"], ms, Batch(x=jnp.asarray(x), label=None), None).metrics[svdd.DIST_SQ]
    )
    result = loop.run(
        settings=loop.LoopSettings(num_steps=200, batch_size=64, log_every=50, eval_every=200, steps_per_call=0),
        mesh=mesh, objective=obj, tx=tx, init_fn=lambda: place(v["params"], ms),
        loader=pipeline.InMemoryLoader(x, np.zeros(len(x), np.int32), global_batch_size=64, seed=0),
        workdir=None, eval_data=(test, np.zeros(len(test), np.int32)),
    )  # fmt: skip
    score = result.last_eval.metrics[svdd.SCORE]
    assert score[-1] > score[:-1].max()
    after = result.last_eval.metrics[svdd.DIST_SQ][:-1]
    assert np.mean(after) < 0.5 * np.mean(before)  # the normal data were pulled towards c ...
    assert np.mean(after) > 1e-4  # ... but not onto it: no collapse
    if kind == "soft_boundary":
        assert float(jax.device_get(result.state.model_state[svdd.COLLECTION][svdd.RADIUS_SQ])) > 0


def test_dae_energy_of_a_tied_sigmoid_autoencoder_matches_its_closed_form_potential():
    """r(x) = W sigmoid(W^T x + b) + c with a linear decoder is -grad E, E(x) = ||x - c||^2 / 2 - sum_k
    softplus(W_k . x + b_k) (Kamyshanska & Memisevic 2015, eq. 9), so the line integral from x0 to x is
    (E(x0) - E(x)) / sigma^2 exactly."""
    dim, k, sigma = 10, 4, 0.3
    model = get_model("mlp", input_shape=(dim,), hidden=(), code_dim=k, code_activation="sigmoid", tied=True)
    rng = np.random.default_rng(4)
    variables = model.init(jax.random.key(0), jnp.zeros((1, dim)))
    w = rng.normal(size=(dim, k)).astype(np.float32)
    b, c = rng.normal(size=k).astype(np.float32), rng.normal(size=dim).astype(np.float32)
    variables = {"params": {"encoder_0": {"kernel": w, "bias": b}, "decoder_bias_0": c}}

    def reconstruct(x):
        return model.apply(variables, x).decoder_output  # Gaussian decoder: the mean is the output

    def energy(x):
        return 0.5 * np.sum((x - c) ** 2, axis=-1) - np.sum(np.logaddexp(0.0, x @ w + b), axis=-1)

    x = rng.normal(size=(7, dim)).astype(np.float32)
    x0 = rng.normal(size=dim).astype(np.float32)
    got = anomaly.dae_log_density(reconstruct, x, x0, sigma=sigma, num_nodes=16, batch_size=3)
    np.testing.assert_allclose(got, (energy(x0) - energy(x)) / sigma**2, rtol=1e-4, atol=1e-3)
