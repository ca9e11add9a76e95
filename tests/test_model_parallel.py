"""Latents sharded over the mesh's "model" axis (issue 21, part 2): the sharded top-k against a numpy reference,
the same training on 1x1, 4x1, 1x4 and 2x2 (data x model) meshes, checkpoints moved between meshes, and the
errors before compute."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from aejax import build, checkpoint, sharding
from aejax import train_step as ts
from aejax.data.batch import Batch
from aejax.models import get_model, sae_select
from aejax.models.sae_base import STATE
from aejax.objectives import sae as sae_objective

D, N, B = 6, 16, 16  # input width, latents, batch
MESHES = ((1, 1), (4, 1), (1, 4), (2, 2))  # (data, model)


def mesh_of(data, model):
    return sharding.make_mesh(jax.devices()[: data * model], data=data, model=model)


def numpy_row_topk(x, k):
    """Per row the k largest, ties to the lower index (a stable sort of -x)."""
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    out = np.zeros_like(x)
    np.put_along_axis(out, idx, np.take_along_axis(x, idx, axis=1), axis=1)
    return out


def numpy_batch_topk(x, k_total):
    flat = x.reshape(-1)
    idx = np.argsort(-flat, kind="stable")[:k_total]
    out = np.zeros_like(flat)
    out[idx] = flat[idx]
    return out.reshape(x.shape)


def select_on(mesh, xs, k, k_total):
    """[(row top-k, batch top-k) of x for x in xs], one compilation."""

    def f(xs):
        return [(sae_select.row_topk(x, k), sae_select.batch_topk(x, k_total)) for x in xs]

    xs = jax.device_put(xs, NamedSharding(mesh, P("data", "model")))
    return jax.device_get(jax.jit(ts.under_mesh(f, mesh))(xs))


def test_sharded_top_k_equals_a_numpy_top_k_with_winners_in_one_shard_and_ties():
    rng = np.random.default_rng(0)
    random = rng.normal(size=(8, 32)).astype(np.float32)
    one_shard = random.copy()
    one_shard[:, 8:16] += 10.0  # every winner of every row in the second of four shards
    ties = np.maximum(np.round(random), 0.0)  # many equal values and zeros across shards (as after a ReLU)
    for mesh in (mesh_of(1, 4), mesh_of(2, 2), mesh_of(4, 1)):
        for k, k_total in ((3, 24), (12, 60)):  # 12 > 32 / 4: more winners than one shard's block holds
            xs = [random, one_shard, ties]
            for x, (row, batch) in zip(xs, select_on(mesh, xs, k, k_total), strict=True):
                np.testing.assert_array_equal(row, numpy_row_topk(x, k))
                np.testing.assert_array_equal(batch, numpy_batch_topk(x, k_total))
    with pytest.raises(ValueError, match="n_latents=30 does not divide over the mesh's model axis of size 4"):
        mesh = mesh_of(1, 4)
        jax.jit(ts.under_mesh(lambda x: sae_select.row_topk(x, 3), mesh))(random[:, :30])


def test_sharded_top_k_gradient_is_the_mask_of_the_winners():
    mesh = mesh_of(2, 2)
    x = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(4, 16)).astype(np.float32)

    def loss(x):
        return jnp.sum(w * sae_select.row_topk(x, 3)) + jnp.sum(w * sae_select.batch_topk(x, 10))

    xs = jax.device_put(x, NamedSharding(mesh, P("data", "model")))
    grad = jax.jit(jax.grad(ts.under_mesh(loss, mesh)))(xs)
    want = w * (numpy_row_topk(x, 3) != 0) + w * (numpy_batch_topk(x, 10) != 0)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-6)


def train_on(mesh, name, xs, n=N, **kw):
    """len(xs) steps of a small SAE on `mesh` through the run's own pieces (init_fn, train step, eval step)."""
    model = get_model(name, input_shape=(D,), n_latents=n, **kw)
    objective = sae_objective.from_config(None, model, None)
    # eps=1e-3, not 1e-8: Adam's step lr * g / (|g| + eps) turns a latent's gradient that is ~0 on one mesh and
    # reassociation noise (~1e-7) on another into a full lr-sized step (seen on the data-only 4x1 mesh too);
    # with eps = 1e-3 that noise moves a parameter by at most lr * 1e-7 / eps = 1e-6 per step.
    tx = optax.adam(1e-2, eps=1e-3)
    state = build.make_init_fn(model, tx, (D,), mesh, jax.random.key(0))()
    shard = sharding.TreeShardings.of(state)
    step = ts.make_train_step(objective.loss_fn, tx, mesh, project=objective.project, state_sharding=shard)
    for x in xs:
        state, _ = step(state, sharding.to_global(Batch(x, np.zeros(len(x), np.int32)), mesh))
    ev = ts.make_eval_step(objective.eval_fn, mesh, shard)
    out = ev(
        state.params, state.model_state, sharding.to_global(Batch(xs[0], np.zeros(B, np.int32)), mesh), state.rng
    )
    return state, np.asarray(jax.device_get(out.code))


@pytest.mark.parametrize(
    "name, kw, meshes",
    [
        ("topk", dict(k=2, aux_k=4, dead_after=B, resample_every=2), MESHES),  # AuxK, resampling: dead in 16
        ("batchtopk", dict(k=2), ((1, 1), (2, 2))),  # 2x2: candidates from every data x model block
    ],
)
def test_every_mesh_trains_to_the_same_parameters_and_latents(name, kw, meshes):
    xs = [np.random.default_rng(10 + i).normal(size=(B, D)).astype(np.float32) for i in range(3)]
    results = {shape: train_on(mesh_of(*shape), name, xs, n=2 * N, **kw) for shape in meshes}
    ref_state, ref_code = results[(1, 1)]
    fired = ref_state.model_state[STATE]["examples_since_fired"]
    if name == "topk":  # the AuxK branch ran (a latent was dead) and the top-k did choose
        assert (fired >= B).any() and (fired == 0).any()
    for shape, (state, code) in results.items():
        sharded = shape[1] > 1
        assert state.params["W_enc"].sharding.spec == (P(None, "model") if sharded else P())
        assert state.opt_state[0].mu["W_dec"].sharding.spec == (P("model", None) if sharded else P())
        assert state.model_state[STATE]["examples_since_fired"].sharding.spec == (P("model") if sharded else P())
        # Float reassociation of the sums over the batch (data) and the latents (model): ~1e-7 relative per
        # gradient, at most ~1e-6 per Adam step (train_on), three steps.
        for p, q in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params), strict=True):
            np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5, err_msg=f"{name} on {shape}")
        np.testing.assert_array_equal(code != 0, ref_code != 0, err_msg=f"{name} on {shape}")
        np.testing.assert_array_equal(state.model_state[STATE]["examples_since_fired"], fired)


def test_every_per_latent_leaf_of_every_sae_is_split_over_model():
    """Shapes only (no compile): each architecture's per-latent parameters, state and Adam moments."""
    mesh, tx = mesh_of(1, 4), optax.adam(1e-2)
    for name in ("topk", "batchtopk", "jumprelu", "gated", "relu_l1"):
        model = get_model(name, input_shape=(D,), n_latents=N, **({"k": 2} if "topk" in name else {}))
        state = jax.eval_shape(build.make_init_fn(model, tx, (D,), mesh, jax.random.key(0)))
        shardings = sharding.state_shardings(state, mesh, model.LATENT_AXES)
        for (path, leaf), s in zip(
            jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(shardings), strict=True
        ):
            split = [i for i, name in enumerate(s.spec) if name == "model"]
            want = [i for i, s in enumerate(leaf.shape) if s == N]
            assert split == want, f"{name}: {jax.tree_util.keystr(path)} {leaf.shape} split on {split}"


def test_a_checkpoint_written_on_one_mesh_restores_on_others(tmp_path):
    model = get_model("topk", input_shape=(D,), n_latents=N, k=3)
    tx = optax.adam(1e-2)
    # A state split over "model" whose values differ from the inits restored into below (another seed).
    state = build.make_init_fn(model, tx, (D,), mesh_of(1, 4), jax.random.key(1))()
    assert state.params["W_dec"].sharding.spec == P("model", None)
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(1, state, {"step": 1})
    ckpt.wait()
    for shape in ((2, 2), (1, 1)):
        mesh = mesh_of(*shape)
        init_fn = build.make_init_fn(model, tx, (D,), mesh, jax.random.key(5))
        restored, meta = ckpt.restore_or_init(init_fn)
        assert meta == {"step": 1}
        want = init_fn()
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
            np.testing.assert_array_equal(jax.device_get(a), jax.device_get(b))
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(want), strict=True):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), shape
    ckpt.close()


def test_meshes_that_do_not_fit_and_widths_that_do_not_divide_are_refused_before_compute(tmp_path):
    with pytest.raises(ValueError, match="needs 8 devices; there are 4"):
        sharding.make_mesh(data=2, model=4)
    with pytest.raises(ValueError, match="3 does not divide 4"):
        sharding.make_mesh(data=-1, model=3)
    with pytest.raises(ValueError, match="positive integer or -1"):
        sharding.make_mesh(data=0, model=4)
    assert dict(sharding.make_mesh(model=2).shape) == {"data": 2, "model": 2}
    mesh = mesh_of(1, 4)
    tx = optax.adam(1e-2)
    odd = get_model("topk", input_shape=(D,), n_latents=10, k=3)
    with pytest.raises(ValueError, match="n_latents=10 does not divide over the mesh's model axis of 4"):
        build.make_init_fn(odd, tx, (D,), mesh, jax.random.key(0))
    dense = get_model("mlp", input_shape=(D,), hidden=(8,), code_dim=4)
    with pytest.raises(ValueError, match="declares no latent axis"):
        build.make_init_fn(dense, tx, (D,), mesh, jax.random.key(0))
    config = ml_collections.ConfigDict(dict(mesh=dict(data=4, model=4), batch_size=16))
    with pytest.raises(ValueError, match="needs 16 devices"):
        build.setup_run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    # The batch must divide over the data axis (2), not over all 4 devices.
    sharding.check_batch_size(6, mesh_of(2, 2))
    with pytest.raises(ValueError, match=r"batch_size=7 does not divide over 2 devices \(the mesh's data axis\)"):
        sharding.check_batch_size(7, mesh_of(2, 2))
