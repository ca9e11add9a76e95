"""The one loop and the core around it: evaluation randomness, model state (BatchNorm), train/eval modes, the
NaN stop of every trainer, loop settings and the declared input transforms."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import build, loop, objectives, optim, runs, sharding, train
from aejax import train_step as ts
from aejax.analysis import score
from aejax.data import datasets, pipeline, transforms
from aejax.models import get_model
from configs import conv_ae


def test_evaluate_gives_each_batch_its_own_reproducible_key():
    """A stochastic eval (an IWAE bound, a sampled score) sees fold_in(key(seed), i) in batch i."""

    def eval_fn(params, model_state, batch, rng):
        del params, model_state
        return objectives.EvalOutput(metrics={"u": jax.random.uniform(rng, (batch.x.shape[0],))}, code=batch.x)

    mesh = sharding.make_mesh()
    x, labels = np.zeros((10, 2), np.float32), np.zeros((10,), np.int32)
    state = ts.TrainState(step=jnp.zeros((), jnp.int32), params={}, model_state={}, opt_state=(), rng=None)
    step = ts.make_eval_step(eval_fn, mesh)
    first = loop.evaluate(state, step, x, labels, mesh, batch_size=4, seed=7)
    again = loop.evaluate(state, step, x, labels, mesh, batch_size=4, seed=7)
    np.testing.assert_array_equal(first.metrics["u"], again.metrics["u"])
    # Independent: the same draws computed directly, batch by batch (4 rows each; the last batch has 2 valid).
    key = jax.random.key(7)
    want = np.concatenate([np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (4,))) for i in range(3)])
    np.testing.assert_allclose(first.metrics["u"], want[:10], rtol=1e-6)
    other = loop.evaluate(state, step, x, labels, mesh, batch_size=4, seed=8)
    assert not np.allclose(other.metrics["u"], first.metrics["u"])


def test_loop_settings_refuse_bad_steps_naming_the_field():
    config = ml_collections.ConfigDict(
        dict(num_train_steps=-5, num_epochs=0, batch_size=8, log_every=1, eval_every=1, checkpoint_every=1)
    )
    config.keep_checkpoints, config.eval_batch_size = 1, 8
    with pytest.raises(ValueError, match="num_train_steps=-5"):
        loop.LoopSettings.from_config(config, steps_per_epoch=10)
    config.num_train_steps = 0
    with pytest.raises(ValueError, match="No training steps"):
        loop.LoopSettings.from_config(config, steps_per_epoch=10)
    config.num_epochs, config.log_every = 1, 0
    with pytest.raises(ValueError, match="config.log_every=0"):
        loop.LoopSettings.from_config(config, steps_per_epoch=10)


def test_optimizer_refuses_gradient_ascent():
    cfg = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=-1.0,
            schedule="constant",
            warmup_steps=0,
            weight_decay=0.0,
            grad_clip_norm=0,
        )
    )
    with pytest.raises(ValueError, match=r"config.optimizer.learning_rate=-1.0 must be >= 0"):
        optim.make_optimizer(cfg, 10)


def test_dropout_is_active_in_training_mode_only():
    model = get_model("mlp", input_shape=(6,), hidden=(32,), code_dim=3, dropout_rate=0.5)
    plain = get_model("mlp", input_shape=(6,), hidden=(32,), code_dim=3)
    x = jax.random.normal(jax.random.key(0), (4, 6))
    params = model.init(jax.random.key(1), x)["params"]
    a = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(2)}).decoder_output
    b = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(3)}).decoder_output
    assert not np.allclose(a, b)
    # Evaluation mode is the network without dropout (same parameter tree).
    np.testing.assert_allclose(
        model.apply({"params": params}, x).decoder_output, plain.apply({"params": params}, x).decoder_output
    )


def test_batchnorm_statistics_train_checkpoint_and_restore(tmp_path):
    """BatchNorm statistics are model state: updated by training, saved, restored, and used at evaluation."""
    config = conv_ae.get_config("batchnorm,runlocal")
    config.data_dir = str(tmp_path / "tfds")
    config.analysis.pca_baseline = False
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    run = runs.load_run(str(tmp_path / "run"))
    stats = run.variables["batch_stats"]
    means = [np.asarray(layer["mean"]) for layer in jax.tree.leaves(stats, is_leaf=lambda d: "mean" in d)]
    assert means and all(np.abs(m).max() > 1e-4 for m in means)  # init is 0: training moved every one
    # The restored state evaluates to the run's own test error (eval mode: running statistics).
    again = runs.reanalyse(str(tmp_path / "run"))
    np.testing.assert_allclose(again["test_sq_err"], results["test_sq_err"], rtol=1e-6)


def test_every_trainer_stops_on_a_non_finite_loss():
    """train_dae (the score analysis) runs through the loop, so it has the NaN stop too."""
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    with pytest.raises(loop.NonFiniteLossError, match="train step"):
        huge = {**score.DEFAULT_OPTIMIZER, "learning_rate": 1e30}
        score.train_dae(x, sigma=0.5, steps=50, batch_size=16, optimizer=huge)
    # The DAE's optimizer is the config's (configs/score_dae.py: config.optimizer), not a hard-coded Adam.
    with pytest.raises(KeyError, match="Unknown optimizer 'adamm'"):
        score.train_dae(
            x, sigma=0.5, steps=2, batch_size=16, optimizer={**score.DEFAULT_OPTIMIZER, "name": "adamm"}
        )


def test_the_trainers_share_the_loop(monkeypatch):
    calls = []
    real = loop.run

    def counting(**kwargs):
        calls.append(kwargs["desc"])
        return real(**kwargs)

    monkeypatch.setattr(loop, "run", counting)
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    score.train_dae(x, sigma=0.5, steps=2, batch_size=16, hidden=(4,), code_dim=4)
    assert calls == ["DAE sigma=0.5"]


def _split(x, kind="image"):
    return datasets.Split(x=x, labels=np.zeros(len(x), np.int32), kind=kind)


def test_scale_and_static_binarisation():
    raw = np.array([[0, 51, 128, 255]], np.uint8)
    scaled = transforms.apply(_split(raw), transforms.Transforms(), train=True).x
    np.testing.assert_allclose(scaled, raw / 255.0, rtol=1e-6)
    assert scaled.dtype == np.float32
    binary = transforms.apply(_split(raw), transforms.Transforms(binarize="static", threshold=0.5), train=False).x
    np.testing.assert_array_equal(binary, [[0, 0, 1, 1]])
    already = np.array([[0, 1, 1]], np.uint8)  # a 0/1 set such as binarized_mnist is not divided by 255
    np.testing.assert_array_equal(
        transforms.apply(_split(already), transforms.Transforms(), train=True).x, already
    )
    with pytest.raises(ValueError, match="Known: none, static, dynamic"):
        transforms.Transforms.from_config(dict(binarize="sometimes"))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        transforms.apply(
            _split(np.array([[2.0]], np.float32)), transforms.Transforms(binarize="static"), train=True
        )


def test_dynamic_binarisation_resamples_every_step_and_is_a_function_of_the_step():
    grey = np.full((256, 20), 0.3, np.float32)
    t = transforms.Transforms(binarize="dynamic")
    train_split = transforms.apply(_split(grey, "vector"), t, train=True)
    np.testing.assert_array_equal(train_split.x, grey)  # the loader samples, not the split

    def loader():
        return pipeline.InMemoryLoader(
            train_split.x,
            train_split.labels,
            global_batch_size=256,
            seed=3,
            transform=transforms.dynamic_binarizer(t, seed=3),
        )

    a, b = loader(), loader()
    x0, x1 = a.batch(0).x, a.batch(1).x  # one epoch = one batch: the same rows at steps 0 and 1
    assert set(np.unique(x0)) <= {0.0, 1.0}
    np.testing.assert_array_equal(b.batch(1).x, x1)  # a resumed run draws the same sample at step 1
    assert np.mean(x0 != x1) > 0.2  # a fresh sample each step (expected 2 * 0.3 * 0.7 = 0.42 differ)
    # The sample mean is the grey level: 5,120 Bernoulli(0.3) draws, 5 standard errors.
    assert abs(x0.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / x0.size)
    # Evaluation splits are binarised once, with a fixed seed: the same 0/1 digits every time.
    test_a = transforms.apply(_split(grey, "vector"), t, train=False).x
    test_b = transforms.apply(_split(grey, "vector"), t, train=False).x
    np.testing.assert_array_equal(test_a, test_b)
    assert set(np.unique(test_a)) == {0.0, 1.0}


def test_objectives_registry_lists_known_names():
    with pytest.raises(KeyError, match="Known objectives: autoencoder, elbo, lm, psd"):
        objectives.OBJECTIVES.get("elbo_typo")


def test_run_returns_the_final_evaluation_also_when_a_relaunch_takes_no_step(tmp_path):
    """loop.run's last_eval is the final state's evaluation: after training, and when a relaunch of the finished
    run restores it and takes no step (it evaluates once), so no caller has to evaluate again."""
    from aejax.likelihoods import get_likelihood
    from aejax.objectives import SQ_ERR, autoencoder

    rng = np.random.default_rng(0)
    x, labels = rng.random((32, 6), dtype=np.float32), np.zeros((32,), np.int32)
    model = get_model("mlp", input_shape=(6,), hidden=(4,), code_dim=2)
    lik = get_likelihood("gaussian")
    objective = objectives.Objective(autoencoder.make_loss_fn(model, lik), autoencoder.make_eval_fn(model, lik))
    tx = optim.make_optimizer(
        ml_collections.ConfigDict(
            dict(name="sgd", learning_rate=0.1, schedule="constant", weight_decay=0.0, grad_clip_norm=0.0)
        ),
        6,
    )
    mesh = sharding.make_mesh()
    settings = loop.LoopSettings(num_steps=6, batch_size=8, log_every=3, eval_every=100, checkpoint_every=3)

    def launch():
        init_fn = build.make_init_fn(model, tx, (6,), mesh, jax.random.key(0))
        loader = pipeline.InMemoryLoader(x, labels, global_batch_size=8, seed=0)
        return loop.run(
            settings=settings, mesh=mesh, objective=objective, tx=tx, init_fn=init_fn, loader=loader,
            workdir=str(tmp_path), eval_data=(x, labels),
        )  # fmt: skip

    first = launch()
    assert first.start_step == 0 and int(first.state.step) == 6
    # Independent: the squared error of the final parameters' reconstruction, computed eagerly in float64.
    params = jax.device_get(first.state.params)
    recon = np.asarray(model.apply({"params": params}, x).decoder_output, np.float64)  # Gaussian: the mean
    np.testing.assert_allclose(first.last_eval.metrics[SQ_ERR], ((recon - x) ** 2).sum(axis=1), rtol=1e-5)
    again = launch()
    assert again.start_step == 6 and again.last_metrics == {}  # restored, no step taken
    np.testing.assert_allclose(again.last_eval.metrics[SQ_ERR], first.last_eval.metrics[SQ_ERR], rtol=1e-6)
