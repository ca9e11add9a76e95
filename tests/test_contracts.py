"""One contract test per registry, as optax tests every transformation: every registered model, objective, job
and report runs once on a tiny input, so a new registration is tested the day it lands (regularizers have theirs
in tests/test_regularizers.py).

- models: shapes of code, decoder output and `decode(code)`; jit == eager; finite.
- objectives: a scalar, finite loss with finite gradients for every parameter; per-example eval metrics [B] and
  codes [B, K]; jit == eager; a configured regularizer is applied or refused naming both (STYLE item 19).
- jobs: a tiny run through `aejax.jobs.get_job` writes results.json equal to what it returns, and `reanalyse`
  re-evaluates it without training.
- reports: each runs on a tiny finished run (or, for VAE reports, a tiny VAE) and returns finite numbers.

A registration with needs the defaults below do not meet gets its tiny setting in the tables here.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import build, jobs, loop, objectives, runs
from aejax import train_step as ts
from aejax.analysis import reports
from aejax.byte_lm import ByteLM
from aejax.data.batch import Batch
from aejax.likelihoods import get_likelihood
from aejax.models import MODELS, get_model
from aejax.objectives import OBJECTIVES
from configs import deep_svdd, lm, mnist_ae, psd, sae, score_dae, seq2seq, stacked, vae
from configs import finetune as finetune_config

B = 8  # batch rows: a multiple of the conftest's 4 devices
RTOL = ATOL = 1e-4  # jit vs eager: XLA may fuse float32 arithmetic differently; these nets are O(1) deep

# Model name -> (input_shape, tiny kwargs); a model not listed is built with input_shape (8, 8, 1) and defaults.
SEQUENCE_SHAPE = (6, 2)  # [T, C]: 2 channels; the valid steps travel as Batch.mask
MODELS_TINY = {
    "mlp": ((8, 8, 1), dict(hidden=(8,), code_dim=3)),
    "conv": ((8, 8, 1), dict(features=(4,), code_dim=3)),
    "conv_vae": ((8, 8, 1), dict(features=(4,), code_dim=3)),
    "vae": ((8, 8, 1), dict(hidden=(8,), code_dim=3)),
    "hashing": ((8, 8, 1), dict(hidden=(8,), code_dim=4)),
    "psd": ((4, 4, 1), dict(code_dim=6)),
    "seq2seq": (SEQUENCE_SHAPE, dict(hidden=4, code_dim=3)),
    "conv1d": (SEQUENCE_SHAPE, dict(features=(4,), kernel_size=3, code_dim=3)),
    "topk": ((8, 8, 1), dict(n_latents=16, k=4, aux_k=4)),
    "batchtopk": ((8, 8, 1), dict(n_latents=16, k=4, aux_k=4)),
    "jumprelu": ((8, 8, 1), dict(n_latents=16)),
    "gated": ((8, 8, 1), dict(n_latents=16)),
    "relu_l1": ((8, 8, 1), dict(n_latents=16)),
}


def tiny_input(input_shape, seed=0) -> np.ndarray:
    """[B, *input_shape] in [0, 1]."""
    return np.random.default_rng(seed).random((B, *input_shape), dtype=np.float32)


def tiny_mask(input_shape) -> np.ndarray | None:
    """[B, T] valid steps of series of lengths T and T - 2 for a sequence shape, else None."""
    if tuple(input_shape) != SEQUENCE_SHAPE:
        return None
    t = SEQUENCE_SHAPE[0]
    lengths = np.where(np.arange(B) % 2 == 0, t, t - 2)
    return (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)


def tiny_model(name):
    input_shape, kwargs = MODELS_TINY.get(name, ((8, 8, 1), {}))
    return get_model(name, input_shape=input_shape, **kwargs), tiny_input(input_shape)


def assert_close_trees(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL)


def assert_finite_tree(tree, what):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        assert np.all(np.isfinite(np.asarray(leaf))), f"{what}: non-finite {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize("name", MODELS.known())
def test_every_model(name):
    model, x = tiny_model(name)
    variables = jax.jit(model.init)(jax.random.key(0), x[:1])

    def forward(v, xb):
        out = model.apply(v, xb)
        encoded = model.apply(v, xb, method="encode")
        return out.code, out.decoder_output, encoded, model.apply(v, out.code, method="decode")

    code, out, encoded, decoded = jax.jit(forward)(variables, x)
    assert code.ndim == 2 and code.shape[0] == B, code.shape
    assert out.shape == x.shape, out.shape
    assert decoded.shape == out.shape and encoded.shape == code.shape
    eager = model.apply(variables, x)
    assert_close_trees((eager.code, eager.decoder_output), (code, out))
    assert_finite_tree((code, out, decoded, variables), name)


# Objective name -> (config, model name, likelihood); an objective not listed gets the main job's runlocal config.
def _objective_setting(name):
    table = {
        "autoencoder": (mnist_ae.get_config("runlocal"), "mlp"),
        "elbo": (vae.get_config("runlocal"), "vae"),
        "psd": (psd.get_config("runlocal"), "psd"),
        "sequence": (seq2seq.get_config("runlocal,conv1d"), "conv1d"),  # the recurrent one: test_every_model
        "sae": (sae.get_config("mnist,runlocal"), "topk"),
        "lm": (lm.get_config("runlocal"), LM),
    }
    config, model_name = table.get(name, (mnist_ae.get_config("runlocal"), "mlp"))
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    config.objective = name
    if name == "elbo":
        config.vae.eval_samples, config.vae.eval_chunk = 2, 2
    if name == "psd":
        config.psd.fista_steps, config.psd.eval_fista_steps = 3, 3
    return config, model_name


LM = "byte_lm"  # the language model lives beside MODELS (aejax/byte_lm.py): not an autoencoder


def _objective(name, config, model_name):
    if model_name == LM:  # byte windows [B, 9] in, the model reads their first 8 bytes
        model = ByteLM(context=8, d_model=8, n_layers=1, n_heads=2, d_mlp=16)
        x = np.random.default_rng(0).integers(0, 256, (B, 9)).astype(np.uint8)
    else:
        model, x = tiny_model(model_name)
    likelihood = None if model_name == LM else get_likelihood(config.likelihood)  # the LM's softmax is its own
    objective = OBJECTIVES.get(name)(config, model, likelihood)
    variables = jax.jit(model.init)(jax.random.key(0), x[:1, :-1].astype(np.int32) if model_name == LM else x[:1])
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    mask = tiny_mask(x.shape[1:])
    batch = Batch(
        x=jnp.asarray(x), label=jnp.zeros((B,), jnp.int32), mask=None if mask is None else jnp.asarray(mask)
    )
    return objective, params, model_state, batch


@pytest.mark.parametrize("name", OBJECTIVES.known())
def test_every_objective(name):
    config, model_name = _objective_setting(name)
    objective, params, model_state, batch = _objective(name, config, model_name)
    rng, step = jax.random.key(1), jnp.int32(3)

    def loss(p):
        return objective.loss_fn(p, model_state, batch, rng, step)

    (value, (metrics, new_state)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert np.shape(value) == () and np.isfinite(float(value))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert_finite_tree((grads, metrics), f"{name} gradients / metrics")
    assert jax.tree.structure(new_state) == jax.tree.structure(model_state)

    eval_rng = jax.random.key(2)
    out = jax.jit(objective.eval_fn)(params, model_state, batch, eval_rng)
    assert isinstance(out, objectives.EvalOutput)
    assert out.code.ndim == 2 and out.code.shape[0] == B
    assert out.metrics and all(np.shape(v) == (B,) for v in out.metrics.values()), {
        k: np.shape(v) for k, v in out.metrics.items()
    }
    assert_finite_tree(out.metrics, f"{name} eval metrics")
    assert_close_trees(out, objective.eval_fn(params, model_state, batch, eval_rng))
    if objective.project is not None:
        assert jax.tree.structure(objective.project(params)) == jax.tree.structure(params)


@pytest.mark.parametrize("name", OBJECTIVES.known())
def test_every_objective_applies_or_refuses_a_configured_regularizer(name):
    """STYLE item 19: a penalty in config.regularizers is either in the loss or refused before compute, with a
    message naming the regularizer and the objective; never silently dropped."""
    config, model_name = _objective_setting(name)
    config.regularizers = ml_collections.ConfigDict({"l1_activity": dict(weight=0.5)})
    try:
        objective, params, model_state, batch = _objective(name, config, model_name)
    except ValueError as e:
        assert "l1_activity" in str(e) and repr(name) in str(e), str(e)
        return
    _, (metrics, _) = jax.jit(objective.loss_fn)(params, model_state, batch, jax.random.key(1), jnp.int32(0))
    assert "reg/l1_activity" in metrics, f"{name} ignored config.regularizers: {sorted(metrics)}"
    assert float(metrics["reg/l1_activity"]) > 0.0  # the mean |code| of random codes, positive


def test_regularizer_refusal_happens_before_any_compute(tmp_path):
    config = vae.get_config("runlocal")
    config.unlock()
    config.regularizers.l1_activity = dict(weight=0.5)
    config.data_dir = str(tmp_path / "tfds")  # empty: building the data first would fail differently
    config.dataset = "digits"
    with pytest.raises(ValueError, match="l1_activity.*'elbo'"):
        jobs.get_job(config.trainer).train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_unknown_job_lists_the_known_ones_and_old_spellings_resolve():
    with pytest.raises(KeyError, match="Known jobs: .*stacked.*train"):
        jobs.get_job("stacekd")
    assert jobs.get_job("jobs.stacked") is jobs.get_job("stacked")  # config.json of runs before the registry
    assert jobs.get_job(None) is jobs.get_job("train")


def _digits(config, data_dir):
    config.unlock()
    config.dataset = "digits"
    config.data_dir = data_dir
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """{job name: workdir} of finished tiny runs, filled by `test_every_job`."""
    return {"root": str(tmp_path_factory.mktemp("runs"))}


def _job_config(name, data_dir, tiny_runs):
    """The tiny config of every registered job; a new job must add its own here (KeyError otherwise)."""
    if name == "train":
        c = _digits(mnist_ae.get_config("runlocal"), data_dir)
        c.num_train_steps = 10
        c.batch_size = 32
        return c
    if name == "stacked":
        c = _digits(stacked.get_config("runlocal"), data_dir)
        c.stacked.num_train_steps, c.num_train_steps, c.batch_size = 5, 10, 32
        c.stacked.compare_random_init = False
        c.analysis.pca_baseline = False
        return c
    if name == "finetune":
        c = finetune_config.get_config("runlocal")
        c.unlock()
        c.num_train_steps, c.log_every, c.eval_every = 4, 2, 4
        c.batch_size, c.finetune.labels_per_class = 32, "4"
        c.finetune.pretrained_workdir = tiny_runs["train"]
        return c
    if name == "score_dae":
        c = score_dae.get_config("mixture1d,runlocal")
        c.unlock()
        c.score.rcae = False
        c.score.hidden, c.score.code_dim, c.score.batch_size = (8,), 4, 64
        c.score.num_train, c.score.num_eval, c.score.num_samples = 256, 64, 64
        return c
    if name == "sequence":
        c = seq2seq.get_config("runlocal,conv1d")  # the recurrent model compiles for long; tested above
        c.unlock()
        c.data_dir = data_dir
        c.num_train_steps = 4
        return c
    if name == "lm":
        c = lm.get_config("runlocal")
        c.unlock()
        c.data_dir = data_dir
        c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 4, 2, 4, 4
        c.lm.sample_length = 4
        return c
    if name == "sae":  # on the "lm" job's tiny run (read back when that test ran first, else trained here)
        c = sae.get_config("runlocal")
        c.unlock()
        c.data_dir = data_dir
        c.activations.lm = _job_config("lm", data_dir, tiny_runs).lock()
        c.activations.lm_workdir = os.path.join(tiny_runs["root"], "lm")
        c.activations.update(max_rows_train=1024, max_rows_test=512)
        c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 4, 2, 4, 4
        return c
    if name == "deep_svdd":  # pre-trains its own bias-free MLP, then the soft boundary (which updates R)
        c = deep_svdd.get_config("runlocal,digits,mlp,soft")
        c.unlock()
        c.data_dir = data_dir
        c.pretrain.num_train_steps, c.pretrain.batch_size, c.pretrain.eval_every = 4, 32, 4
        c.num_train_steps, c.batch_size, c.log_every, c.eval_every, c.checkpoint_every = 4, 32, 2, 4, 4
        c.deep_svdd.radius_every, c.deep_svdd.warmup_steps = 2, 2
        return c
    raise KeyError(f"Job {name!r} has no tiny config in tests/test_contracts.py: add one to _job_config.")


def _run_job(name, data_dir, tiny_runs) -> dict:
    config = _job_config(name, data_dir, tiny_runs).lock()
    workdir = os.path.join(tiny_runs["root"], name)
    job = jobs.get_job(config.trainer)
    assert job is jobs.JOBS.get(name) and callable(job.reanalyse)
    results = job.train_and_evaluate(config, workdir)
    tiny_runs[name] = workdir
    return results


def _train_run(data_dir, tiny_runs) -> str:
    """The workdir of the "train" job's finished tiny run (run once per module)."""
    if "train" not in tiny_runs:
        _run_job("train", data_dir, tiny_runs)
    return tiny_runs["train"]


@pytest.mark.parametrize("name", jobs.JOBS.known())
def test_every_job(name, data_dir, tiny_runs):
    if name == "finetune":
        _train_run(data_dir, tiny_runs)  # the pretrained run it fine-tunes
    results = _run_job(name, data_dir, tiny_runs)
    workdir = tiny_runs[name]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f) == json.loads(json.dumps(results))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["trainer"] == name  # what runs.reanalyse looks the job up by (tested per job)


# Report name -> the tiny run it reads: "vae" for reports of a VAE's posterior; anything else the "train" run.
REPORT_RUNS = {"active_units": "vae", "vae_figures": "vae", "sae": "sae"}
REPORT_ANALYSIS = dict(
    probe_labels_per_class="2",
    probe_seeds=1,
    finetune_labels_per_class="4",
    finetune_steps=4,
    jacobian_points=8,
    spectrum_points=2,
    inpainting_images=8,
)


ROWS = 64  # train and test rows of a report's context


def _small(split):
    return split._replace(x=split.x[:ROWS], labels=split.labels[:ROWS])


def _context(config, workdir) -> reports.RunContext:
    """An untrained network of `config` on ROWS digits of each split, evaluated by its objective."""
    train_split, test_split = (_small(s) for s in build.load_data(config))
    config = ml_collections.ConfigDict(config.to_dict())
    config.batch_size = 32  # <= ROWS
    config = config.lock()
    b = build.build(config, train_split)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
    state = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(0))()
    eval_step = ts.make_eval_step(b.objective.eval_fn, mesh)
    ev = loop.evaluate(state, eval_step, test_split.x, test_split.labels, mesh, ROWS)
    variables = jax.device_get({"params": state.params, **state.model_state})
    return reports.RunContext(config, workdir, b.model, b.likelihood, variables, train_split, test_split, ev)


@pytest.fixture(scope="module")
def contexts(data_dir, tiny_runs, tmp_path_factory):
    """kind -> RunContext, built once: "ae" (the train job's tiny config; its workdir is that finished run, which
    the finetune report fine-tunes) and "vae" (a tiny VAE)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            if kind == "sae":
                config = _digits(sae.get_config("mnist,runlocal"), data_dir)
                cache[kind] = _context(config.lock(), str(tmp_path_factory.mktemp("sae")))
            elif kind == "vae":
                config = _digits(vae.get_config("runlocal"), data_dir)
                config.model = ml_collections.ConfigDict(dict(hidden=(16,), code_dim=2))
                config.vae.eval_samples, config.vae.eval_chunk = 4, 4
                cache[kind] = _context(config.lock(), str(tmp_path_factory.mktemp("vae")))
            else:
                workdir = _train_run(data_dir, tiny_runs)
                cache[kind] = _context(runs.load_config(workdir), workdir)
        return cache[kind]

    return get


@pytest.mark.parametrize("name", reports.REPORTS.known())
def test_every_report(name, contexts):
    ctx = contexts(REPORT_RUNS.get(name, "ae"))
    config = ml_collections.ConfigDict(ctx.config.to_dict())
    config.analysis.update(REPORT_ANALYSIS)
    if name == "anomaly":
        config.train_classes = "0,1"  # the report's anomalies are the classes a run did not train on
    config.retrieval = dict(ks=(5,), knn_k=5, itq_iterations=2, timing_repeats=1)  # rankings of ROWS items
    ctx = dataclasses.replace(ctx, config=config.lock())
    out = reports.run(name, ctx)
    assert out and all(k.startswith(f"{name}/") for k in out), sorted(out)
    json.dumps(out)  # results.json must hold it
    for key, value in out.items():
        if isinstance(value, float):
            assert np.isfinite(value), f"{key} = {value}"
