"""One-class sequence detection: code-space scores against numpy/sklearn, the teacher-forced reconstruction,
the validation split, early stopping (the kept parameters are those of the lowest validation loss), weight decay
and denoising in the sequence objective, and the conv AE on lengths that are not a power-of-two multiple."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from aejax import build
from aejax.analysis import sequence_anomaly
from aejax.data import Batch
from aejax.data.batch import Split
from aejax.jobs import sequence as job
from aejax.likelihoods import get_likelihood
from aejax.metric_writer import read_metrics
from aejax.models import get_model
from aejax.objectives import sequence as seq_objective
from configs import seq2seq


def test_code_scores_match_numpy_references():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(30, 5)) * [1, 2, 3, 0.5, 1], rng.normal(size=(12, 5)) * 2
    s = sequence_anomaly.code_scores(train, test, k=3)
    np.testing.assert_allclose(s["code_mean"], np.sqrt(((test - train.mean(0)) ** 2).sum(1)), rtol=1e-10)
    cov, _ = ledoit_wolf(train)  # sklearn's shrunk covariance; the distance by numpy
    d = test - train.mean(0)
    np.testing.assert_allclose(
        s["code_mahalanobis"], np.einsum("nk,nk->n", d, np.linalg.solve(cov, d.T).T), rtol=1e-8
    )
    brute = np.sort(np.sqrt(((test[:, None] - train[None]) ** 2).sum(-1)), axis=1)[:, :3].mean(1)
    np.testing.assert_allclose(s["code_knn"], brute, rtol=1e-10)
    with pytest.raises(ValueError, match="k <= M"):
        sequence_anomaly.code_scores(train, test, k=31)
    with pytest.raises(ValueError, match="must be"):
        sequence_anomaly.code_scores(train, test[:, :4])


def test_teacher_forced_reconstruction_reads_the_true_previous_values():
    # The decoder emits x_{L-1} first from zeros in both modes; later steps differ, and with teacher forcing the
    # output at t (< L-1) depends on the true x_{t+1}, but never on x_t itself.
    t, c = 7, 2
    model = get_model("seq2seq", input_shape=(t, c), hidden=8, code_dim=3)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, t, c)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    free = sequence_anomaly.reconstruct_fn(model, variables)((x, None))[0]
    teacher = sequence_anomaly.reconstruct_fn(model, variables, teacher_forcing=True)
    forced = teacher((x, None))[0]
    np.testing.assert_allclose(forced[:, -1], free[:, -1], rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(forced[:, :-1] - free[:, :-1])).max() > 1e-4
    # The code sees x_3, so perturb it only through the teacher input: compare x with a copy whose x_4 differs.
    x2 = x.at[:, 4].add(1.0)
    changed = np.abs(np.asarray(teacher((x2, None))[0] - forced)).max(axis=(0, 2))  # [T]
    assert changed[3] > 1e-4  # reads x_4 as its previous value (and the code changes too)


def test_validation_split_is_disjoint_seeded_and_refuses_tiny_parts():
    split = Split(np.arange(12, dtype=np.float32).reshape(12, 1, 1), np.zeros(12, np.int32), None, "series")
    fit, val = job.validation_split(split, 0.25)
    assert (len(fit.x), len(val.x)) == (9, 3)
    assert sorted(np.r_[fit.x.ravel(), val.x.ravel()]) == list(range(12))
    np.testing.assert_array_equal(job.validation_split(split, 0.25)[1].x, val.x)  # the same split every time
    with pytest.raises(ValueError, match="at least 2"):
        job.validation_split(split, 0.05)
    config = seq2seq.get_config("italypowerdemand")
    with config.unlocked():
        config.sequence.early_stopping = True
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        job.load_sequence_data(config)
    with config.unlocked():
        config.sequence.validation_fraction = 0.25
    with pytest.raises(ValueError, match="only with one_class"):
        job.load_sequence_data(config)


def _series(n, t=12, seed=0):
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.sin(np.linspace(0, 4 * np.pi, t)[None] + phase) + 0.3 * rng.normal(size=(n, t))
    return Split(x[..., None].astype(np.float32), np.zeros(n, np.int32), None, "series")


def test_early_stopping_keeps_the_parameters_of_the_best_validation_step(tmp_path):
    config = seq2seq.get_config("runlocal,conv1d")
    with config.unlocked():
        config.sequence.early_stopping = True
        config.num_train_steps = 24
        config.eval_every = config.log_every = 4
        config.checkpoint_every = 24
        config.optimizer.learning_rate = 0.05  # large enough that the validation loss is not monotone
        config.optimizer.warmup_steps = 0
        config.optimizer.schedule = "constant"
    data = job.SequenceData(_series(24), _series(16, seed=1), _series(8, seed=2))
    model, variables, likelihood, *_ = job.train(config, data, str(tmp_path))
    evals = [(r["step"], r["eval/nll"]) for r in read_metrics(str(tmp_path)) if "eval/nll" in r]
    assert [s for s, _ in evals] == list(range(4, 25, 4))  # the held-out series, evaluated every 4 steps
    best_step, best_nll = min(evals, key=lambda e: e[1])
    assert job.early_stopping_step(str(tmp_path)) == best_step
    out = model.apply(variables, jnp.asarray(data.heldout.x))
    nll = seq_objective.masked_terms(likelihood, out.decoder_output, jnp.asarray(data.heldout.x), None)["nll"]
    np.testing.assert_allclose(float(nll.mean()), best_nll, rtol=1e-4)


def test_weight_decay_of_the_config_shrinks_kernels_only():
    config = seq2seq.get_config("runlocal,conv1d")
    with config.unlocked():
        config.optimizer.weight_decay = 0.1
        config.optimizer.schedule = "constant"
        config.optimizer.name = "sgd"
        config.optimizer.learning_rate = 1.0
        config.optimizer.grad_clip_norm = 0.0
    b = build.build(config, _series(8, t=32), batch_size=4)
    params = b.model.init(jax.random.key(0), jnp.zeros((2, 32, 1)))["params"]
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = b.tx.update(zero, b.tx.init(params), params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        p = params
        for key in path:
            p = p[key.key]
        expected = -0.1 * p if path[-1].key == "kernel" else jnp.zeros_like(p)  # sgd: -lr * wd * w
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-8)


def test_denoising_sequence_objective_corrupts_training_only():
    config = seq2seq.get_config("runlocal,conv1d")
    model = get_model("conv1d", input_shape=(12, 1), features=(4,), code_dim=3)
    x = jnp.asarray(_series(6).x)
    variables = model.init(jax.random.key(0), x)
    batch = Batch(x=x, label=jnp.zeros(6, jnp.int32), mask=None)
    lik = get_likelihood("gaussian")
    losses = {}
    for sigma in (0.0, 1.0):
        with config.unlocked():
            config.corruption.name, config.corruption.sigma = "gaussian", sigma
        obj = seq_objective.from_config(config, model, lik)
        losses[sigma] = float(obj.loss_fn(variables["params"], {}, batch, jax.random.key(1), 0)[0])
        ev = obj.eval_fn(variables["params"], {}, batch, jax.random.key(1)).metrics["nll"].mean()
        losses[f"eval{sigma}"] = float(ev)
    clean = seq_objective.make_loss_fn(model, lik)(variables["params"], {}, batch, jax.random.key(1), 0)[0]
    np.testing.assert_allclose(losses[0.0], float(clean), rtol=1e-6)  # sigma 0 is the plain criterion
    assert abs(losses[1.0] - losses[0.0]) > 1e-3  # noise changes the training loss ...
    np.testing.assert_allclose(losses["eval1.0"], losses["eval0.0"], rtol=1e-6)  # ... never the evaluation
    with config.unlocked():
        config.corruption.emphasis_alpha = 2.0
    with pytest.raises(ValueError, match="emphasized"):
        seq_objective.from_config(config, model, lik)


@pytest.mark.parametrize("t", [24, 150, 251])
def test_conv_ae_reconstructs_any_length(t):
    model = get_model("conv1d", input_shape=(t, 1), features=(4, 8), code_dim=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, t, 1)), jnp.float32)
    out = model.apply(model.init(jax.random.key(0), x), x)
    assert out.decoder_output.shape == (2, t, 1) and out.code.shape == (2, 3)
