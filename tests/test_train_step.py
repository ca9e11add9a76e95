"""The data-parallel train step: same result on 1 and N devices, compiles once, matches a hand-written step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax import optim, sharding
from aejax import train_step as ts
from aejax.data.batch import Batch
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import autoencoder as objective

B, D = 16, 12


def _setup():
    model = get_model("mlp", input_shape=(D,), hidden=(10,), code_dim=3, activation="tanh")
    lik = get_likelihood("bernoulli")
    tx = optax.adam(1e-2)
    params = model.init(jax.random.key(0), jnp.zeros((1, D)))["params"]
    loss_fn = objective.make_loss_fn(model, lik)
    return model, lik, tx, params, loss_fn


def _batches(n):
    rng = np.random.default_rng(0)
    return [
        Batch(rng.uniform(size=(B, D)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32))
        for _ in range(n)
    ]


def _run(devices, n_steps=3):
    _, _, tx, params, loss_fn = _setup()
    mesh = sharding.make_mesh(devices)
    state = sharding.replicate(ts.init_state(params, tx, jax.random.key(1)), mesh)
    step = ts.make_train_step(loss_fn, tx, mesh)
    losses = []
    for batch in _batches(n_steps):
        state, metrics = step(state, sharding.to_global(batch, mesh))
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses, step


def test_one_and_n_devices_give_the_same_updates():
    assert len(jax.devices()) >= 4
    s1, l1, _ = _run(jax.devices()[:1])
    s4, l4, _ = _run(jax.devices()[:4])
    np.testing.assert_allclose(l1, l4, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(s4.step) == 3


def test_step_matches_hand_written_update_and_compiles_once():
    model, lik, tx, params, _ = _setup()
    traces = []

    def loss_fn(p, model_state, batch, rng, step):
        traces.append(1)  # runs only while tracing
        return objective.make_loss_fn(model, lik)(p, model_state, batch, rng, step)

    mesh = sharding.make_mesh()
    state = sharding.replicate(ts.init_state(params, tx, jax.random.key(1)), mesh)
    step = ts.make_train_step(loss_fn, tx, mesh)
    batches = _batches(3)
    # Independent reference: plain autodiff of the Bernoulli cross-entropy and optax adam, no mesh.
    ref_params = jax.tree.map(jnp.copy, params)  # the train step donates (deletes) its input state
    ref_opt = tx.init(ref_params)

    def ref_loss(p, x):
        logits = model.apply({"params": p}, x).decoder_output
        return optax.sigmoid_binary_cross_entropy(logits, x).sum(axis=1).mean()

    for batch in batches:
        state, _ = step(state, sharding.to_global(batch, mesh))
        grads = jax.grad(ref_loss)(ref_params, jnp.asarray(batch.x))
        updates, ref_opt = tx.update(grads, ref_opt, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
    assert len(traces) == 1
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_weight_decay_masks_biases_and_schedules():
    cfg = ml_collections.ConfigDict(
        dict(
            name="sgd",
            learning_rate=1.0,
            schedule="constant",
            warmup_steps=0,
            weight_decay=0.5,
            grad_clip_norm=0.0,
        )
    )
    tx = optim.make_optimizer(cfg, 10)
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["dense"]["bias"], np.zeros(2))
    cfg.schedule = "warmup_cosine"
    cfg.warmup_steps = 4
    sched = optim.learning_rate_schedule(cfg, 10)
    assert float(sched(0)) == 0.0 and abs(float(sched(4)) - 1.0) < 1e-6
