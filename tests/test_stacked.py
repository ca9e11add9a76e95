"""Stacked autoencoder: exact weight copying, per-layer corruption of the layer's own input only, clean codes
passed upward, the init_params hook of the trainer, and the runlocal job end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aejax import jobs, runs, sharding, train
from aejax.data import datasets
from aejax.data.batch import Batch
from aejax.jobs import stacked
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import autoencoder
from configs import stacked as stacked_config
from configs import tied as tied_config


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _small_config(**model):
    config = stacked_config.get_config("runlocal")
    config.model.hidden, config.model.code_dim = (8, 6), 4
    for k, v in model.items():
        config.model[k] = v
    return config


def _layer_params(config, input_dim, seed=0):
    dims = [input_dim, *stacked.widths(config)]
    return [
        stacked.layer_model(config, i, (dims[i],)).init(jax.random.key(seed + i), jnp.zeros((1, dims[i])))[
            "params"
        ]
        for i in range(len(dims) - 1)
    ]


@pytest.mark.parametrize("tied", [False, True])
def test_stacked_params_compose_the_layer_encoders_and_decoders(tied):
    config = _small_config(tied=tied)
    layers = [jax.tree.map(np.asarray, p) for p in _layer_params(config, 12)]
    deep = get_model("mlp", input_shape=(12,), **config.model)
    x = np.random.default_rng(0).uniform(size=(5, 12)).astype(np.float32)
    params = stacked.stack_params(layers)
    want = jax.eval_shape(deep.init, jax.random.key(0), jnp.zeros((1, 12)))["params"]
    assert jax.tree.structure(params) == jax.tree.structure(want)

    # numpy reference: sigmoid hidden codes, linear top code, linear last decoder layer
    h = x
    for i, p in enumerate(layers):
        h = h @ p["encoder_0"]["kernel"] + p["encoder_0"]["bias"]
        h = h if i == len(layers) - 1 else _sigmoid(h)
    z = np.asarray(deep.apply({"params": params}, jnp.asarray(x), method="encode"))
    np.testing.assert_allclose(z, h, rtol=1e-5, atol=1e-6)

    r = h
    for i, p in reversed(list(enumerate(layers))):
        kernel = p["encoder_0"]["kernel"].T if tied else p["decoder_0"]["kernel"]
        r = r @ kernel + (p["decoder_bias_0"] if tied else p["decoder_0"]["bias"])
        r = r if i == 0 else _sigmoid(r)
    out = np.asarray(deep.apply({"params": params}, jnp.asarray(h), method="decode"))
    np.testing.assert_allclose(out, r, rtol=1e-5, atol=1e-5)


def test_layer_dae_corrupts_its_own_input_and_reconstructs_the_clean_one():
    config = _small_config()
    config.stacked.corruption.name, config.stacked.corruption.nu = "masking", 1.0  # every input component -> 0
    params = _layer_params(config, 12)[1]  # layer 1: 8 -> 6 -> 8, Bernoulli on sigmoid codes
    model = stacked.layer_model(config, 1, (8,))
    likelihood = get_likelihood(stacked.layer_likelihood(config, 1))
    assert likelihood.name == "bernoulli"
    h = np.random.default_rng(1).uniform(size=(4, 8)).astype(np.float32)
    loss, _ = stacked.layer_objective(config, model, likelihood).loss_fn(
        params, {}, Batch(jnp.asarray(h), jnp.zeros((4,), jnp.int32)), jax.random.key(0), jnp.int32(0)
    )
    p = jax.tree.map(np.asarray, params)
    code = _sigmoid(np.zeros((4, 8)) @ p["encoder_0"]["kernel"] + p["encoder_0"]["bias"])
    logits = code @ p["decoder_0"]["kernel"] + p["decoder_0"]["bias"]
    bce = -(h * np.log(_sigmoid(logits)) + (1 - h) * np.log(1 - _sigmoid(logits))).sum(axis=1).mean()
    np.testing.assert_allclose(float(loss), bce, rtol=1e-5)


def test_pretraining_feeds_clean_codes_upward_and_corrupts_each_layer_input_only(tmp_path, monkeypatch):
    config = _small_config()
    config.batch_size, config.eval_batch_size, config.stacked.num_train_steps = 16, 32, 3
    config.stacked.corruption.name, config.stacked.corruption.nu = "masking", 0.5
    seen = []
    real = autoencoder.corruption_from_config

    def spying(cfg):
        corrupt = real(cfg)
        return lambda rng, x: (seen.append(tuple(x.shape)), corrupt(rng, x))[1]

    monkeypatch.setattr(autoencoder, "corruption_from_config", spying)
    rng = np.random.default_rng(0)
    split = datasets.Split(rng.uniform(size=(64, 12)).astype(np.float32), np.zeros((64,), np.int32))
    mesh = sharding.make_mesh()
    codes, results = (split, split), []
    for layer in range(3):
        res = stacked.pretrain_layer(config, layer, *codes, mesh, str(tmp_path / f"layer_{layer}"))
        results.append(res)
        codes = datasets.Split(res.train_codes, split.labels), datasets.Split(res.test_codes, split.labels)
    # each layer's corruption traced on the layer's own [B, d_l] input (the loop also traces the step once
    # to look for primitives that are slow inside a scan, `train_step.slow_in_scan`)
    assert list(dict.fromkeys(seen)) == [(16, 12), (16, 8), (16, 6)]
    h = split.x
    for i, res in enumerate(results):
        p = res.params["encoder_0"]
        h = h @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
        h = h if i == 2 else _sigmoid(h)
        np.testing.assert_allclose(res.train_codes, h, rtol=1e-5, atol=1e-6)  # clean codes, no noise
        assert res.summary["num_steps"] == 3


def test_init_params_of_the_wrong_shape_are_refused(tmp_path, data_dir):
    config = stacked_config.get_config("runlocal")
    config.data_dir = data_dir
    with pytest.raises(ValueError, match="do not match"):
        train.train_and_evaluate(config, str(tmp_path), init_params={"encoder_0": {"kernel": np.zeros((3, 3))}})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _restore_params(path):
    return ocp.StandardCheckpointer().restore(os.path.join(path, "state"))["params"]


def test_runlocal_job_end_to_end_starts_fine_tuning_from_the_stacked_weights(tmp_path, data_dir, assert_figure):
    config = stacked_config.get_config("runlocal")
    assert config.trainer == "stacked" and tied_config.get_config("runlocal").model.tied
    config.data_dir = data_dir
    config.optimizer.learning_rate, config.optimizer.schedule = 0.0, "constant"  # fine-tuning leaves the init
    config.analysis.pca_baseline = False  # a full SVD of 4000 x 784, tested elsewhere
    job = jobs.get_job(config.trainer)  # as launch.py resolves it
    results = job.train_and_evaluate(config, str(tmp_path))

    assert [p["num_steps"] for p in results["pretrain"]] == [10, 10]
    assert results["widths"] == [784, 32, 8] and results["num_steps"] == 20
    for key in ("test_sq_err", "random_init_test_sq_err", "stacked_before_finetune_test_sq_err"):
        assert np.isfinite(results[key]), key
    # With a zero fine-tuning rate the test error is that of the stacked network (eval jitted vs not).
    np.testing.assert_allclose(results["test_sq_err"], results["stacked_before_finetune_test_sq_err"], rtol=1e-4)
    assert_figure(tmp_path / "stacked_curves.png", min_width=600)
    for sub in ("finetune", "random_init"):
        sub_results = json.loads((tmp_path / sub / "results.json").read_text())
        assert sub_results["num_steps"] == 20, sub
    # The random-init baseline's test error, recomputed in float64 numpy from its checkpoint (not read back).
    base = runs.load_run(str(tmp_path / "random_init"))
    x = np.asarray(base.test_split.x, np.float64)
    recon = base.likelihood.mean(base.model.apply(base.variables, base.test_split.x).decoder_output)
    sq_err = np.square(np.asarray(recon, np.float64) - x).reshape(len(x), -1).sum(axis=1).mean()
    np.testing.assert_allclose(results["random_init_test_sq_err"], sq_err, rtol=1e-4)

    layers = [_restore_params(tmp_path / "pretrain" / f"layer_{i}" / "checkpoints" / "10") for i in range(2)]
    finetuned = runs.load_run(str(tmp_path / "finetune"))  # a sub-run loads like any run of aejax.train
    assert finetuned.step == 20
    final = finetuned.variables["params"]
    want = stacked.stack_params(layers)
    assert jax.tree.structure(final) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)

    # A run saved before the job registry names its job "jobs.stacked": it still re-analyses, through the
    # registered job, which re-evaluates both sub-runs without training.
    stored = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**stored, "trainer": "jobs.stacked"}))
    again = runs.reanalyse(str(tmp_path))
    for key in ("test_sq_err", "random_init_test_sq_err"):
        np.testing.assert_allclose(again[key], results[key], rtol=1e-5, err_msg=key)
    assert runs.load_run(str(tmp_path / "finetune")).step == 20  # nothing was trained
