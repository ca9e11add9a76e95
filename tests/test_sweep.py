"""Many SAEs from one pass (aejax/sweep.py, the "sae" job with config.sweep): a vmapped sweep equals its sequential
single runs (parameters, optimizer state, training metrics, test metrics), its members load back as ordinary runs,
and bad sweeps fail before compute."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from aejax import build, objectives, runs, sharding, sweep, train
from aejax import train_step as ts
from aejax.jobs import get_job
from aejax.metric_writer import read_metrics
from configs import sae as sae_config

# Reassociation: vmap turns each member's [B, d] x [d, n] products into one batched product whose sums XLA may
# order differently; float32 rounding (~1e-7 relative) grows through a few Adam steps, whose first updates are
# +-lr whatever the gradient's size, so parameters are compared to a few 1e-5 of their scale.
RTOL, ATOL = 2e-4, 2e-5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, variant, **model):
    c = sae_config.get_config(f"{variant}mnist,runlocal,sweep")
    c.data_dir = data_dir
    c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 8, 4, 8, 8
    c.batch_size = 32
    # Latents die within the run, so AuxK is active (and a select under vmap); the mean centre compiles faster
    # than the geometric median's loop.
    c.model.update(dict(dead_after=64, b_dec_init="mean", **model))
    c.analysis.reports = "sae"
    c.analysis.embedding = "pca"
    return c


def _assert_trees_close(a, b, what):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True):
        name = f"{what}{jax.tree_util.keystr(path)}"
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype.kind in "biu":
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL * max(1.0, float(np.abs(y).max())), err_msg=name)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, data_dir):
    """(config, workdir, table) of a TopK sweep k = 2, 8 trained by the "sae" job."""
    config = _config(data_dir, "", aux_k=8)
    config.sweep = "k=2,8"
    workdir = str(tmp_path_factory.mktemp("sweep"))
    return config.lock(), workdir, get_job("sae").train_and_evaluate(config, workdir)


def test_the_sweep_job_equals_a_launch_of_a_member_alone_which_loads_back(tmp_path, finished_sweep):
    config, workdir, table = finished_sweep
    assert sorted(table["members"]) == ["k=2", "k=8"] and table["num_members"] == 2
    assert os.path.exists(os.path.join(workdir, "sae_frontier.png"))
    m = sweep.members(config)[0]  # k = 2 < the top-k size 8: the masked member
    alone = str(tmp_path / m.name)
    results = train.train_and_evaluate(m.config, alone)  # the member's own config, launched by itself
    member, ref = runs.load_run(os.path.join(workdir, "members", m.name)), runs.load_run(alone)
    assert member.step == ref.step == 8 and member.model.k == 2
    _assert_trees_close(member.state.params, ref.state.params, "params")
    _assert_trees_close(member.state.opt_state, ref.state.opt_state, "opt_state")
    _assert_trees_close(member.state.model_state, ref.state.model_state, "model_state")
    # Training metrics (the member's columns of the sweep's metrics.jsonl), test metrics and the report.
    got, want = read_metrics(member.workdir), read_metrics(alone)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want, strict=True):
        for key in ("loss/mse", "loss/auxk", "sae/l0", "eval/sq_err", "eval/l0"):
            if key in w:
                np.testing.assert_allclose(g[key], w[key], rtol=1e-4, err_msg=key)
    assert any("loss/auxk" in w and w["loss/auxk"] > 0 for w in want)  # AuxK was active in the run compared
    for key in ("test_sq_err", "test_l0", "sae/fvu", "sae/dead_fraction"):
        np.testing.assert_allclose(table["members"][m.name][key], results[key], rtol=1e-4, atol=1e-6)
    assert [table["members"][n]["test_l0"] for n in ("k=2", "k=8")] == [2.0, 8.0]


def _steps(objective, tx, state, batches, mesh):
    step = ts.make_train_step(objective.loss_fn, tx, mesh, project=objective.project)
    metrics = []
    for x in batches:
        state, m = step(state, sharding.to_global(x, mesh))
        metrics.append(jax.device_get(m))
    return jax.device_get(state), metrics


@pytest.mark.parametrize(
    "variant, spec, terms",
    [("", "k=2,4,8", ("loss/mse", "loss/auxk")), ("relu_l1,", "l1_coeff=0.3,3", ("loss/mse", "loss/l1"))],
)
def test_a_vmapped_sweep_equals_its_sequential_runs_step_by_step(data_dir, variant, spec, terms):
    config = _config(data_dir, variant, **({"aux_k": 8} if variant == "" else {}))
    config.sweep = spec
    config.lock()
    ms = sweep.members(config)
    train_split, _ = build.load_data(ms[0].config)
    mesh = sharding.make_mesh()
    b = build.build(sweep.template_config(ms), train_split)
    batches = [b.loader.batch(s) for s in range(5)]
    init = sweep.make_init_fn(b.model, b.tx, ms, train_split.x.shape[1:], mesh)
    gs = sweep.groups(ms, train_split.x.shape[1:], lambda c, model: objectives.from_config(c, model, None))
    assert [g.indices for g in gs] == ([(0,), (1,), (2,)] if variant == "" else [(0, 1)])
    stacked = sweep.stacked_objective(gs, [m.name for m in ms])
    state, metrics = _steps(stacked, sweep.stacked_optimizer(b.tx), init(), batches, mesh)
    for i, m in enumerate(ms):  # each member launched alone: its own model (its k), init, optimizer and steps
        bm = build.build(m.config, train_split)
        init_m = build.make_init_fn(bm.model, bm.tx, train_split.x.shape[1:], mesh, jax.random.key(m.config.seed))
        ref, ref_metrics = _steps(bm.objective, bm.tx, init_m(), batches, mesh)
        own = sweep.member_state(state, i)
        _assert_trees_close(own.params, ref.params, f"{m.name} params")
        _assert_trees_close(own.opt_state, ref.opt_state, f"{m.name} opt_state")
        _assert_trees_close(own.model_state, ref.model_state, f"{m.name} model_state")
        np.testing.assert_array_equal(own.rng, ref.rng)
        for got, want in zip(metrics, ref_metrics, strict=True):
            for key in (*terms, "sae/l0", "sae/num_dead", "loss"):
                np.testing.assert_allclose(got[f"{m.name}/{key}"], want[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(metrics[-1]["loss"], sum(metrics[-1][f"{m.name}/loss"] for m in ms), rtol=1e-6)
    if variant == "":  # latents died within the 5 steps: AuxK's per-member cond (a select under vmap) ran
        assert metrics[-1][f"{ms[0].name}/loss/auxk"] > 0


@pytest.mark.parametrize(
    "variant, sweep_spec, error, match",
    [
        ("", "lr=1,2", KeyError, "Sweepable: k, l1_coeff, l0_coeff, seed"),
        ("", "k=2,x", ValueError, "'x' is not a number"),
        ("", "k=2.5", ValueError, "integer"),
        ("", "k=2,2", ValueError, "repeats"),
        ("", "k", ValueError, "name=v1,v2"),
        ("", "k=2,4;k=8", ValueError, "twice"),
        ("", "l1_coeff=1,2", ValueError, "model 'topk' does not have; sweepable for it: k, seed"),
        ("relu_l1,", "k=2,4", ValueError, "sweepable for it: l1_coeff, seed"),
        ("", "k=4,65", ValueError, r"member k=65: k must be an integer in \[1, n_latents=64\]"),
        ("relu_l1,", "l1_coeff=1,-1", ValueError, "member l1_coeff=-1.0: l1_coeff must be >= 0"),
    ],
)
def test_bad_sweeps_fail_before_compute_with_clear_errors(tmp_path, data_dir, variant, sweep_spec, error, match):
    config = _config(data_dir, variant)
    config.sweep = sweep_spec
    with pytest.raises(error, match=match):
        get_job("sae").train_and_evaluate(config.lock(), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_resampling_and_other_jobs_refuse_a_sweep(tmp_path, data_dir):
    config = _config(data_dir, "", resample_every=4)
    with pytest.raises(ValueError, match="does not resample dead latents"):
        get_job("sae").train_and_evaluate(config.lock(), str(tmp_path / "a"))
    config = _config(data_dir, "")
    config.trainer = "train"
    with pytest.raises(ValueError, match="trained by the 'sae' job"):
        train.train_and_evaluate(config.lock(), str(tmp_path / "b"))


def test_eval_only_reanalyses_the_members_and_another_sweep_cannot_resume_it(finished_sweep):
    config, workdir, table = finished_sweep
    again = runs.reanalyse(workdir)  # = launch.py --workdir=... --eval_only
    np.testing.assert_allclose(again["members"]["k=8"]["sae/fvu"], table["members"]["k=8"]["sae/fvu"], rtol=1e-6)
    assert again["member_examples_per_s"] == table["member_examples_per_s"]
    with open(os.path.join(workdir, "members", "k=8", "config.json")) as f:
        stored = json.load(f)
    assert stored["model"]["k"] == 8 and stored["sweep"] == ""
    other = ml_collections.ConfigDict(config.to_dict())
    other.sweep = "k=2,4"
    with pytest.raises(ValueError, match="holds a sweep over 'k=2,8'"):
        get_job("sae").train_and_evaluate(other, workdir)
