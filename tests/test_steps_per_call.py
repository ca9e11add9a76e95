"""K train steps per jitted call (`config.steps_per_call`): the same training as one step per call."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import build, loop, objectives, optim, runs, sharding, train
from aejax import train_step as ts
from aejax.data import pipeline, transforms
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import autoencoder
from configs import conv_ae, mnist_ae, sparse


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, base=mnist_ae, variant="runlocal", k=1):
    config = base.get_config(variant)
    config.data_dir = data_dir
    config.num_train_steps = 32
    config.log_every, config.eval_every, config.checkpoint_every = 8, 16, 16
    config.analysis.pca_baseline, config.analysis.embedding = False, "pca"
    config.steps_per_call = k
    return config


def _assert_close_params(a, b):
    # Same programs up to XLA's fusion inside the scan: float32 reassociation over 32 Adam steps.
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "base, variant",
    [(mnist_ae, "runlocal"), (sparse, "l1,runlocal"), (conv_ae, "runlocal")],
)
def test_k8_trains_like_k1(tmp_path, data_dir, base, variant):
    results = {}
    for k in (1, 8):
        results[k] = train.train_and_evaluate(_config(data_dir, base, variant, k), str(tmp_path / f"k{k}"))
        assert results[k]["steps_per_call"] == k
    _assert_close_params(
        runs.load_run(str(tmp_path / "k1")).variables["params"],
        runs.load_run(str(tmp_path / "k8")).variables["params"],
    )
    np.testing.assert_allclose(results[8]["test_sq_err"], results[1]["test_sq_err"], rtol=1e-4)


def test_kill_and_resume_with_k_gt_1_is_exact(tmp_path, data_dir, monkeypatch):
    train.train_and_evaluate(_config(data_dir, k=8), str(tmp_path / "ref"))
    real = ts.make_multi_step

    def dying(*args, **kwargs):
        multi, calls = real(*args, **kwargs), []

        def call(*a):
            calls.append(1)
            if len(calls) > 3:  # killed during the 4th call; the last checkpoint is at step 16
                raise KeyboardInterrupt
            return multi(*a)

        return call

    monkeypatch.setattr(ts, "make_multi_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(_config(data_dir, k=8), str(tmp_path / "resumed"))
    assert runs.load_run(str(tmp_path / "resumed")).step == 16
    monkeypatch.setattr(ts, "make_multi_step", real)
    train.train_and_evaluate(_config(data_dir, k=8), str(tmp_path / "resumed"))
    a = runs.load_run(str(tmp_path / "ref")).variables["params"]
    b = runs.load_run(str(tmp_path / "resumed")).variables["params"]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _small_problem(seed=0, n=96, d=6):
    x = np.random.default_rng(seed).uniform(size=(n, d)).astype(np.float32)
    labels = np.arange(n, dtype=np.int32)  # a row's label is its index: batches are traceable
    model = get_model("mlp", input_shape=(d,), hidden=(5,), code_dim=3)
    lik = get_likelihood("gaussian")
    cfg = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-2,
            schedule="constant",
            warmup_steps=0,
            weight_decay=0.0,
            grad_clip_norm=0,
        )
    )
    tx = optim.make_optimizer(cfg, 100)
    return x, labels, model, lik, tx


def test_the_scan_sees_the_host_loaders_batches():
    x, labels, model, lik, tx = _small_problem()
    base = autoencoder.make_loss_fn(model, lik)

    def loss_fn(params, model_state, batch, rng, step):
        loss, (metrics, state) = base(params, model_state, batch, rng, step)
        # The batch's labels are its row indices: log their sum and a weighted sum as the batch's fingerprint.
        fingerprint = {"label_sum": jnp.sum(batch.label), "label_moment": jnp.sum(batch.label**2)}
        return loss, ({**metrics, **fingerprint}, state)

    mesh = sharding.make_mesh()
    loader = pipeline.InMemoryLoader(x, labels, global_batch_size=16, seed=3)
    init = ts.init_state(model.init(jax.random.key(0), x[:1])["params"], tx, jax.random.key(1))
    state = sharding.replicate(init, mesh)
    multi = ts.make_multi_step(loss_fn, tx, mesh)
    steps = range(4, 12)  # crosses an epoch boundary (6 steps per epoch)
    rows = np.stack([loader.global_rows(s) for s in steps]).astype(np.int32)
    _, metrics = multi(state, *sharding.replicate((x, labels, None), mesh), rows)
    for i, s in enumerate(steps):
        host = loader.batch(s)
        np.testing.assert_array_equal(x[loader.global_rows(s)], host.x)
        assert int(metrics["label_sum"][i]) == int(host.label.sum())
        assert int(metrics["label_moment"][i]) == int((host.label.astype(np.int64) ** 2).sum())


def test_nan_stop_names_the_step_inside_a_call():
    x, labels, model, lik, tx = _small_problem()
    base = autoencoder.make_loss_fn(model, lik)

    def loss_fn(params, model_state, batch, rng, step):
        loss, aux = base(params, model_state, batch, rng, step)
        return loss + jnp.where(step == 13, jnp.nan, 0.0), aux  # only step 13 (0-based) is bad

    objective = objectives.Objective(loss_fn, autoencoder.make_eval_fn(model, lik))
    mesh = sharding.make_mesh()
    loader = pipeline.InMemoryLoader(x, labels, global_batch_size=16, seed=0)
    init = build.make_init_fn(model, tx, (6,), mesh, jax.random.key(0))
    settings = loop.LoopSettings(num_steps=32, batch_size=16, log_every=16, steps_per_call=8)
    with pytest.raises(loop.NonFiniteLossError, match=r"train step 13: loss=nan"):
        loop.run(
            settings=settings, mesh=mesh, objective=objective, tx=tx, init_fn=init, loader=loader, workdir=None
        )


def test_one_and_four_devices_agree():
    x, labels, model, lik, tx = _small_problem()
    objective = objectives.Objective(autoencoder.make_loss_fn(model, lik), autoencoder.make_eval_fn(model, lik))
    settings = loop.LoopSettings(num_steps=24, batch_size=16, log_every=8, steps_per_call=4)
    params = []
    for devices in (jax.devices()[:1], jax.devices()[:4]):
        mesh = sharding.make_mesh(devices)
        loader = pipeline.InMemoryLoader(x, labels, global_batch_size=16, seed=0)
        init = build.make_init_fn(model, tx, (6,), mesh, jax.random.key(0))
        result = loop.run(
            settings=settings, mesh=mesh, objective=objective, tx=tx, init_fn=init, loader=loader, workdir=None
        )
        params.append(jax.device_get(result.state.params))
    _assert_close_params(*params)


def test_calls_end_at_the_configured_log_steps_for_any_k(tmp_path, data_dir):
    config = _config(data_dir, k=8)
    config.log_every, config.eval_every, config.checkpoint_every = 5, 10, 10
    config.num_train_steps = 23  # intervals and length not multiples of K: calls of 5, 5, 5, 5 and 3 steps
    train.train_and_evaluate(config, str(tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows if "loss" in r} == {5, 10, 15, 20, 23}
    assert runs.load_run(str(tmp_path / "run")).step == 23


def test_auto_chooses_a_divisor_of_the_intervals_and_refuses_host_transforms():
    with pytest.raises(ValueError, match=r"config.steps_per_call=-1 must be an integer >= 0"):
        loop.LoopSettings(num_steps=40, batch_size=8, steps_per_call=-1)
    x = np.zeros((64, 2), np.float32)
    plain = pipeline.InMemoryLoader(x, np.zeros(64, np.int32), global_batch_size=8, seed=0)
    auto = loop.LoopSettings(num_steps=1000, batch_size=8, log_every=50, eval_every=500, checkpoint_every=500,
                             steps_per_call=0)  # fmt: skip
    assert loop.resolve_steps_per_call(auto, plain)[0] == 25  # the largest divisor of 50 up to 32
    k, why = loop.resolve_steps_per_call(auto, plain, {"conv_general_dilated"})
    assert k == 1 and "conv_general_dilated" in why  # a step the backend runs slowly inside a scan: one per call
    binarized = pipeline.InMemoryLoader(
        x, np.zeros(64, np.int32), global_batch_size=8, seed=0,
        transform=transforms.dynamic_binarizer(transforms.Transforms(binarize="dynamic"), seed=0),
    )  # fmt: skip
    assert loop.resolve_steps_per_call(auto, binarized)[0] == 1  # host-side sampling each step: one step per call
    explicit = loop.LoopSettings(num_steps=80, batch_size=8, log_every=8, eval_every=8, checkpoint_every=8,
                                 steps_per_call=8)  # fmt: skip
    with pytest.raises(ValueError, match="dynamic binarisation"):
        loop.resolve_steps_per_call(explicit, binarized)


@pytest.mark.parametrize(
    "model_name, kwargs, has_conv",
    [
        ("mlp", dict(hidden=(5,), code_dim=3), False),
        ("conv", dict(features=(2,), code_dim=3, downsample="pool"), True),
        ("conv", dict(features=(2,), code_dim=3, downsample="stride"), True),
    ],
)
def test_slow_in_scan_finds_the_convolutions_of_a_step(model_name, kwargs, has_conv):
    shape = (4, 4, 1)
    model = get_model(model_name, input_shape=shape, **kwargs)
    lik = get_likelihood("bernoulli")
    tx = _small_problem()[4]  # Adam
    state = ts.init_state(model.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"], tx, jax.random.key(1))
    batch = pipeline.InMemoryLoader(
        np.zeros((8, *shape), np.float32), np.zeros(8, np.int32), global_batch_size=4, seed=0
    ).batch(0)
    loss_fn = autoencoder.make_loss_fn(model, lik)
    assert ts.slow_in_scan(loss_fn, tx, state, batch, "cpu") == ({"conv_general_dilated"} if has_conv else set())
    assert ts.slow_in_scan(loss_fn, tx, state, batch, "gpu") == set()  # measured only on XLA:CPU


def test_auto_runs_a_conv_model_one_step_per_call_on_cpu(tmp_path, data_dir):
    config = _config(data_dir, conv_ae, "runlocal", k=0)
    config.num_train_steps = 16
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["steps_per_call"] == (1 if jax.default_backend() == "cpu" else 8)
