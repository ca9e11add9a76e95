"""Contract test over every registered regularizer, plus the registry and `combine`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import regularizers
from aejax.data.batch import Batch
from aejax.models import AutoencoderOutput, get_model
from aejax.objectives.autoencoder import bind_model_state
from aejax.regularizers import registry

# Small hyperparameters per regularizer; a new regularizer without an entry runs with {}.
HPARAMS = {
    "l1_activity": {},
    "kl_sparsity": {"rho": 0.05},
    "contractive": {"method": "auto"},
    "contractive_higher_order": {"sigma": 0.1, "num_corrupted": 2},
}

# The contract holds for every model family: a one-layer MLP, and a small conv AE with and without BatchNorm
# (whose statistics the penalty sees through the objective's `bind_model_state`, in evaluation mode).
MODELS = {
    "mlp": dict(name="mlp", input_shape=(6,), hidden=(5,), code_dim=4, code_activation="sigmoid"),
    "conv": dict(name="conv", input_shape=(4, 4, 1), features=(3,), code_dim=4, code_activation="sigmoid"),
    "conv_bn": dict(
        name="conv", input_shape=(4, 4, 1), features=(3,), code_dim=4, code_activation="sigmoid", batch_norm=True
    ),
}


def _batch(input_shape, seed: int, size: int = 8) -> Batch:
    x = jax.random.uniform(jax.random.key(seed), (size, *input_shape))
    return Batch(x=x, label=jnp.zeros((size,), jnp.int32))


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("model_key", sorted(MODELS))
@pytest.mark.parametrize("name", registry.known())
def test_contract(name, model_key):
    spec = dict(MODELS[model_key])
    model = get_model(spec.pop("name"), **spec)
    shape = spec["input_shape"]
    variables = model.init(jax.random.key(0), _batch(shape, 0).x)
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    apply_fn = bind_model_state(model, model_state)
    fn = regularizers.get(name)
    hparams = HPARAMS.get(name, {})
    traces = []

    def value(params, batch, rng):
        outputs = apply_fn({"params": params}, batch.x)
        return fn(params=params, apply_fn=apply_fn, batch=batch, outputs=outputs, rng=rng, **hparams)

    def train_step(params, batch, rng):
        traces.append(1)  # Python side effect: runs once per trace, not per call

        def loss(p):
            recon = apply_fn({"params": p}, batch.x).decoder_output
            return jnp.mean(jnp.sum(jnp.square(recon - batch.x).reshape(len(recon), -1), axis=1)) + 0.1 * value(
                p, batch, rng
            )

        val, grads = jax.value_and_grad(lambda p: value(p, batch, rng))(params)
        _, loss_grads = jax.value_and_grad(loss)(params)
        new_params = jax.tree.map(lambda w, g: w - 0.01 * g, params, loss_grads)
        return val, grads, new_params

    rng = jax.random.key(1)
    eager = value(params, _batch(shape, 1), rng)
    assert eager.shape == () and bool(jnp.isfinite(eager))

    step = jax.jit(train_step)
    val, grads, new_params = step(params, _batch(shape, 1), rng)
    assert val.shape == ()
    np.testing.assert_allclose(val, eager, rtol=1e-5, atol=1e-6)
    assert _finite(grads) and _finite(new_params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)

    val2, _, _ = step(new_params, _batch(shape, 2), jax.random.key(2))
    assert bool(jnp.isfinite(val2))
    assert len(traces) == 1, "the train step retraced for a second batch of the same shape"


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        regularizers.register("l1_activity")(lambda **kw: jnp.zeros(()))


def test_unknown_name_lists_known():
    with pytest.raises(KeyError) as err:
        regularizers.get("no_such_penalty")
    for name in registry.known():
        assert name in str(err.value)


def _outputs(code) -> AutoencoderOutput:
    """Outputs that carry only a code (the decoder output and input are unused by code penalties)."""
    return AutoencoderOutput(decoder_output=None, code=jnp.asarray(code), input=None)


def test_l1_activity_closed_form():
    z = np.array([[0.5, -1.0, 0.0], [2.0, 0.25, -0.25]], np.float32)
    value = regularizers.get("l1_activity")(params={}, apply_fn=None, batch=None, outputs=_outputs(z), rng=None)
    np.testing.assert_allclose(value, (1.5 + 2.5) / 2, rtol=1e-6)


def _linear_code_outputs():
    """A fixed code z [2, 3] and its closed-form L1 activity, 1.75."""
    z = jnp.array([[0.5, -1.0, 0.0], [2.0, 0.0, 0.0]])
    return _outputs(z), 1.75


@pytest.mark.parametrize(
    "weight, step, expected_weight",
    [
        (0.3, 0, 0.3),
        (optax.linear_schedule(0.0, 1.0, transition_steps=10), 4, 0.4),
    ],
)
def test_combine_weight(weight, step, expected_weight):
    outputs, value = _linear_code_outputs()
    penalty = regularizers.combine(regularizers.Term("l1_activity", weight, {}))
    total, logs = penalty(
        step=jnp.asarray(step),
        params={},
        apply_fn=None,
        batch=None,
        outputs=outputs,
        rng=jax.random.key(0),
    )
    assert set(logs) == {"reg/l1_activity"}
    np.testing.assert_allclose(logs["reg/l1_activity"], value, rtol=1e-6)
    np.testing.assert_allclose(total, expected_weight * value, rtol=1e-6)


def test_combine_two_terms():
    z = _linear_code_outputs()[0].code
    rho = 0.3
    penalty = regularizers.combine(
        regularizers.Term("l1_activity", 2.0, {}),
        regularizers.Term("kl_sparsity", 3.0, {"rho": rho}),
    )
    outputs = _outputs(jax.nn.sigmoid(z))
    total, logs = penalty(step=0, params={}, apply_fn=None, batch=None, outputs=outputs, rng=jax.random.key(0))
    h = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    rho_hat = h.mean(axis=0)
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    l1 = np.abs(h).sum(axis=1).mean()
    np.testing.assert_allclose(logs["reg/kl_sparsity"], kl, rtol=1e-5)
    np.testing.assert_allclose(total, 2.0 * l1 + 3.0 * kl, rtol=1e-5)


def test_combine_no_terms_is_zero():
    total, logs = regularizers.combine()(
        step=0, params={}, apply_fn=None, batch=None, outputs=_outputs(jnp.zeros((1, 1))), rng=jax.random.key(0)
    )
    assert total.shape == () and abs(float(total)) < 1e-30 and logs == {}


def test_combine_rejects_bad_terms():
    with pytest.raises(KeyError, match="Known regularizers"):
        regularizers.combine(regularizers.Term("nope", 1.0, {}))
    with pytest.raises(TypeError, match="unknown hparams"):
        regularizers.combine(regularizers.Term("kl_sparsity", 1.0, {"rh0": 0.1}))
    with pytest.raises(ValueError, match="Duplicate"):
        regularizers.combine(regularizers.Term("l1_activity"), regularizers.Term("l1_activity"))


def test_contractive_penalty_is_taken_at_the_model_input():
    """The contractive penalty differentiates at outputs.input (the DAE's x~), not at the clean batch.x."""
    model = get_model("mlp", input_shape=(2,), hidden=(), code_dim=2, code_activation="sigmoid")
    x = jnp.array([[0.0, 0.0]])
    x_tilde = jnp.array([[3.0, -3.0]])
    params = model.init(jax.random.key(0), x)["params"]
    fn = regularizers.get("contractive")
    kwargs = dict(params=params, apply_fn=model.apply, batch=Batch(x, jnp.zeros((1,), jnp.int32)), rng=None)
    at_clean = fn(**kwargs, outputs=model.apply({"params": params}, x))
    at_input = fn(**kwargs, outputs=model.apply({"params": params}, x_tilde))
    closed = fn(**kwargs, outputs=model.apply({"params": params}, x_tilde), method="closed_form")  # h from x~
    np.testing.assert_allclose(at_input, closed, rtol=1e-5)
    assert abs(float(at_clean) - float(at_input)) > 1e-4


def test_warmup_steps_set_in_the_config_ramp_the_weight_of_the_loss_term():
    # config.regularizers.<name>.warmup_steps = W: the weight at step t is weight * min(t / W, 1)
    # (optax.linear_schedule from 0), so loss - nll = that weight times the closed-form L1 norm of the code.
    from aejax.likelihoods import get_likelihood
    from aejax.objectives import from_config
    from configs import mnist_ae

    config = mnist_ae.get_config("runlocal")
    weight, warmup = 0.5, 10
    with config.unlocked():
        config.regularizers.l1_activity = dict(weight=weight, warmup_steps=warmup)
    model = get_model("mlp", input_shape=(4, 4, 1), hidden=(6,), code_dim=3, code_activation="relu")
    likelihood = get_likelihood("bernoulli")
    loss_fn = jax.jit(from_config(config, model, likelihood).loss_fn)
    x = jax.random.uniform(jax.random.key(0), (8, 4, 4, 1))
    params = model.init(jax.random.key(1), x)["params"]
    batch = Batch(x, jnp.zeros((8,), jnp.int32))
    code = np.asarray(model.apply({"params": params}, x, method="encode"), np.float64)
    l1 = np.abs(code).sum(axis=1).mean()
    assert l1 > 0.1  # a code the penalty sees
    for step in (0, 3, 7, 10, 25):
        loss, (metrics, _) = loss_fn(params, {}, batch, jax.random.key(2), jnp.asarray(step))
        np.testing.assert_allclose(metrics["reg/l1_activity"], l1, rtol=1e-5)
        want = weight * min(step / warmup, 1.0) * l1
        np.testing.assert_allclose(float(loss - metrics["loss/nll"]), want, rtol=1e-4, atol=1e-6)
