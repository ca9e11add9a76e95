"""Dead-latent resampling (Bricken et al. 2023; aejax/sae_resample.py) against numpy: exactly the dead latents
change, their new rows are the chosen input's direction, their Adam moments and dead counts are reset, and inside
the scanned, data-parallel train step it revives latents that training alone leaves dead."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import sae_resample, sharding
from aejax import train_step as ts
from aejax.data.batch import Batch
from aejax.models import get_model
from aejax.models.sae_base import STATE
from aejax.objectives import sae as sae_objective

D, N, B = 6, 12, 16
DEAD = np.array([1, 4, 7])


def small(name, **kw):
    return get_model(name, input_shape=(D,), n_latents=N, dead_after=16, resample_every=1, **kw)


def trained_state(model, x, tx, steps=3):
    """A state after a few Adam steps (non-zero moments), then latents DEAD marked dead and the rest alive; the
    per-latent vectors (b_enc, r_mag, b_mag, log_threshold) moved off their init values by 0.5, so a reset to
    them is a change."""
    variables = model.init(jax.random.key(0), jnp.asarray(x[:1]))
    params = variables["params"]
    state = ts.init_state(params, tx, jax.random.key(1), {k: v for k, v in variables.items() if k != "params"})
    obj = sae_objective.from_config(None, model, None)
    step = jax.jit(ts.update_fn(obj.loss_fn, tx, project=obj.project))
    for _ in range(steps):
        state, _ = step(state, Batch(jnp.asarray(x), None))
    since = np.zeros(N, np.int32)
    since[DEAD] = 10**6
    sae = {**state.model_state[STATE], "examples_since_fired": jnp.asarray(since)}
    params = {k: v + 0.5 if k not in ("W_dec", "W_enc", "b_dec") else v for k, v in state.params.items()}
    return state.replace(params=params, model_state={**state.model_state, STATE: sae})


def adam_moments(opt_state):
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]  # fmt: skip
    assert len(found) == 1
    return found[0]


def latent_slice(name, p, rows):
    """The entries of latents `rows` of parameter p (numpy), along its latent axis."""
    return np.take(np.asarray(p), rows, axis=sae_resample.LATENT_AXIS[name])


CASES = {
    "topk": dict(k=2),
    "gated": dict(l1_coeff=1.0),
    "jumprelu": dict(threshold_init=0.5),
    "tied_linear_topk": dict(k=2, relu=False, tied=True, unit_norm_decoder=False, eval_k_multiplier=3.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resample_changes_exactly_the_dead_latents_as_the_numpy_procedure(case):
    arch = "topk" if case.startswith("tied") else case
    model = small(arch, **CASES[case])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, D)).astype(np.float32)
    x[5] *= 50.0  # its squared error dominates: p_5 proportional to L_5^2 is ~1 - 1e-6, so every draw picks it
    tx = optax.adam(1e-2)
    before = trained_state(model, x, tx)
    after = jax.jit(lambda s, x, key: sae_resample.resample_dead(model, s, Batch(x, None), tx, key))(
        before, jnp.asarray(x), jax.random.key(3)
    )
    alive = np.setdiff1d(np.arange(N), DEAD)
    p0, p1 = jax.device_get(before.params), jax.device_get(after.params)
    m0, m1 = adam_moments(before.opt_state), adam_moments(after.opt_state)

    # Alive latents, b_dec and the Adam count: bit-identical.
    np.testing.assert_array_equal(p1["b_dec"], p0["b_dec"])
    np.testing.assert_array_equal(np.asarray(m1.count), np.asarray(m0.count))
    for name in p0:
        if name == "b_dec":
            continue
        np.testing.assert_array_equal(latent_slice(name, p1[name], alive), latent_slice(name, p0[name], alive))
        for moment0, moment1 in ((m0.mu, m1.mu), (m0.nu, m1.nu)):
            np.testing.assert_array_equal(
                latent_slice(name, moment1[name], alive), latent_slice(name, moment0[name], alive)
            )
            # Dead latents: moments reset (the alive ones are non-zero after three steps, so this is a change).
            assert not np.any(latent_slice(name, moment1[name], DEAD))
        assert not np.array_equal(latent_slice(name, p1[name], DEAD), latent_slice(name, p0[name], DEAD))
    np.testing.assert_array_equal(np.asarray(m1.mu["b_dec"]), np.asarray(m0.mu["b_dec"]))

    # The numpy procedure: u = (s x_5 - b_dec - c) / ||.||; decoder row u; encoder 0.2 * mean alive norm * u.
    sae = jax.device_get(before.model_state[STATE])
    h = sae["input_scale"] * x[5].astype(np.float64) - (p0["b_dec"] + sae["data_centre"])
    u = h / np.linalg.norm(h)
    w_enc0 = p0["W_dec"].T if model.tied else p0["W_enc"]
    enc_row = 0.2 * np.linalg.norm(w_enc0[:, alive], axis=0).mean() * u
    for i in DEAD:
        if model.tied:
            np.testing.assert_allclose(p1["W_dec"][i], enc_row, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(p1["W_dec"][i], u, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(p1["W_dec"][i]), 1.0, rtol=1e-6)
            np.testing.assert_allclose(p1["W_enc"][:, i], enc_row, rtol=1e-5, atol=1e-6)
    assert not np.any(p1["b_enc"][DEAD])
    if case == "gated":
        assert not np.any(p1["r_mag"][DEAD]) and not np.any(p1["b_mag"][DEAD])
    if case == "jumprelu":
        np.testing.assert_allclose(p1["log_threshold"][DEAD], np.log(0.5), rtol=1e-6)
    since = np.asarray(after.model_state[STATE]["examples_since_fired"])
    assert not np.any(since[DEAD]) and np.all(
        since[alive] == np.asarray(before.model_state[STATE]["examples_since_fired"])[alive]
    )


def never_firing(model, params, model_state, x) -> int:
    code = np.asarray(model.apply({"params": params, **model_state}, jnp.asarray(x), method="encode"))
    return int(np.sum(~np.any(code != 0, axis=0)))


def test_resampling_in_the_scanned_data_parallel_step_revives_latents_that_training_leaves_dead():
    # ReLU + L1 on Gaussian data with half the latents switched off (b_enc = -50): a ReLU that never fires gets
    # no gradient, so training alone leaves them dead; resampling every 20 steps (up to 120) should revive them.
    n, d, steps, batch = 32, 8, 160, 32
    x = np.random.default_rng(1).normal(size=(512, d)).astype(np.float32)
    labels = np.zeros(len(x), np.int32)
    mesh = sharding.make_mesh()
    rows = np.random.default_rng(2).integers(0, len(x), size=(steps, batch)).astype(np.int32)
    dead_at_end = {}
    for every in (0, 20):
        model = get_model(
            "relu_l1", input_shape=(d,), n_latents=n, l1_coeff=0.1, dead_after=64,
            resample_every=every, resample_until=120 if every else 0,
        )  # fmt: skip
        variables = model.init(jax.random.key(0), jnp.asarray(x[:1]))
        params = {**variables["params"], "b_enc": jnp.where(jnp.arange(n) < n // 2, -50.0, 0.0)}
        tx = optax.adam(3e-3)
        obj = sae_objective.from_config(None, model, None)
        assert (obj.after_update is None) == (every == 0)
        state = ts.init_state(params, tx, jax.random.key(1), {STATE: variables[STATE]})
        state = sharding.replicate(state, mesh)
        multi = ts.make_multi_step(obj.loss_fn, tx, mesh, project=obj.project, after_update=obj.after_update)
        state, metrics = multi(state, *sharding.replicate((x, labels, None), mesh), jnp.asarray(rows))
        st = jax.device_get(state)
        dead_at_end[every] = never_firing(model, st.params, st.model_state, x)
        assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    assert dead_at_end[0] >= n // 2  # the switched-off half stays dead without resampling
    assert dead_at_end[20] < dead_at_end[0] // 2, dead_at_end


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(resample_every=-1), "resample_every must be an integer"),
        (dict(resample_every=2.5), "resample_every must be an integer"),
        (dict(resample_every=10, resample_until=-5), "resample_until must be an integer"),
        (dict(resample_until=100), "resample_every=0"),
        (dict(resample_every=10, resample_encoder_scale=0.0), "resample_encoder_scale must be > 0"),
    ],
)
def test_bad_resampling_settings_are_refused_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        get_model("topk", input_shape=(D,), n_latents=N, k=2, **kw)
