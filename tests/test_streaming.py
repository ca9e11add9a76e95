"""Streamed activation stores (aejax/data/streaming.py): the streaming loader's order is the in-memory loader's,
a killed streamed run resumes on the same batches, reads release their pages, damaged shards are named, and a
streamed evaluation equals the in-memory one."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from aejax import build, loop, objectives, optim, sharding
from aejax.data import activation_store, pipeline, streaming
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import SQ_ERR, autoencoder
from configs import sae as sae_configs

D = 6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store of 200 train rows in shards of 32 (the last one 8 rows) and 50 test rows; and its arrays."""
    path = str(tmp_path_factory.mktemp("store"))
    rng = np.random.default_rng(0)
    x = {
        "train": rng.normal(size=(200, D)).astype(np.float32),
        "test": rng.normal(size=(50, D)).astype(np.float32),
    }
    w = activation_store.ActivationWriter(path, d=D, shard_rows=32)
    for split, a in x.items():
        w.append(split, a[:77])  # two appends: shards straddle the batches written
        w.append(split, a[77:])
        w.finish(split)
    return path, x


def test_view_reads_any_rows_as_the_arrays_hold_them(store):
    path, x = store
    view = streaming.StoreView(activation_store.ActivationStore(path), "train")
    assert view.shape == (200, D) and len(view) == 200
    index = np.random.default_rng(1).integers(0, 200, 300)  # any order, repeats, across every shard
    np.testing.assert_array_equal(view[index], x["train"][index])
    np.testing.assert_array_equal(view[30:170:3], x["train"][30:170:3])
    np.testing.assert_array_equal(view[-1], x["train"][-1])
    np.testing.assert_array_equal(np.asarray(view), x["train"])
    with pytest.raises(IndexError, match=r"\[0, 200\)"):
        view[np.array([0, 200])]


def test_streaming_order_is_the_in_memory_order_on_every_host(store):
    """Over several epochs (200 rows, 24 per step: 8 steps an epoch, the rest dropped), hosts 0 and 1 of 2 read
    exactly the rows an InMemoryLoader of the same seed gives them, from `batch` and from prefetching `iterate`."""
    path, x = store
    view = streaming.StoreView(activation_store.ActivationStore(path), "train")
    labels = np.arange(200, dtype=np.int32)  # a row's label is its index: the rows themselves are compared
    for p in range(2):
        common = dict(global_batch_size=24, seed=7, process_index=p, process_count=2)
        mem = pipeline.InMemoryLoader(x["train"], labels, **common)
        stream = streaming.StreamingLoader(view, labels, **common, num_threads=2, prefetch=3)
        assert not stream.device_resident and mem.device_resident
        assert not stream.can_scan  # 2 processes: K steps per call would need every host's rows
        batches = stream.iterate(5)
        for step in range(5, 30):  # epochs 0 to 3
            want = mem.batch(step)
            got = next(batches)
            np.testing.assert_array_equal(got.label, want.label)
            np.testing.assert_array_equal(got.x, want.x)
            np.testing.assert_array_equal(stream.batch(step).x, want.x)
        batches.close()
    # Independent of both loaders: step 9 is batch 1 of epoch 1, host 1 keeps the second 12 of its 24 rows.
    perm = np.random.default_rng([7, 1]).permutation(200)
    np.testing.assert_array_equal(stream.batch(9).label, perm[24 + 12 : 48])


def _sgd(steps):
    cfg = dict(name="sgd", learning_rate=0.05, schedule="constant", weight_decay=0.0, grad_clip_norm=0.0)
    return optim.make_optimizer(ml_collections.ConfigDict(cfg), steps)


def test_killed_streamed_run_resumes_on_the_same_batches(store, tmp_path):
    """A streamed run stopped after 6 of 12 steps (its checkpoint at 6) and relaunched ends with the parameters
    of an uninterrupted in-memory run with the same seed, one step per call: the same batches in the same order.
    The first half takes one step per call, the second 3 per call (a scan over host batches sent at once)."""
    path, x = store
    model = get_model("mlp", input_shape=(D,), hidden=(8,), code_dim=3)
    lik = get_likelihood("gaussian")
    objective = objectives.Objective(autoencoder.make_loss_fn(model, lik), autoencoder.make_eval_fn(model, lik))
    mesh, tx = sharding.make_mesh(), _sgd(12)
    labels = np.full((200,), -1, np.int32)
    view = streaming.StoreView(activation_store.ActivationStore(path), "train")

    def launch(loader, steps, workdir, k=1):
        settings = loop.LoopSettings(
            num_steps=steps, batch_size=40, log_every=3, eval_every=100, checkpoint_every=6, steps_per_call=k
        )
        init_fn = build.make_init_fn(model, tx, (D,), mesh, jax.random.key(0))
        return loop.run(
            settings=settings, mesh=mesh, objective=objective, tx=tx, init_fn=init_fn, loader=loader,
            workdir=workdir,
        )  # fmt: skip

    streamed = lambda: streaming.StreamingLoader(view, labels, global_batch_size=40, seed=3)  # noqa: E731
    first = launch(streamed(), 6, str(tmp_path / "s"))  # "killed" after the checkpoint at step 6
    resumed = launch(streamed(), 12, str(tmp_path / "s"), k=3)
    assert (first.steps_per_call, resumed.steps_per_call, resumed.start_step) == (1, 3, 6)
    reference = launch(pipeline.InMemoryLoader(x["train"], labels, global_batch_size=40, seed=3), 12, None)
    # The same float32 operations on the same batches: equal up to XLA's freedom to fuse differently.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jax.device_get(resumed.state.params),
        jax.device_get(reference.state.params),
    )
    # And the last 6 steps moved the parameters: the comparison above is not between two copies of one state.
    moved = [
        not np.allclose(a, b)
        for a, b in zip(*map(jax.tree.leaves, (first.state.params, resumed.state.params)), strict=True)
    ]
    assert any(moved)


def test_streamed_evaluation_equals_the_in_memory_one_and_caps_the_codes(store):
    path, x = store
    model = get_model("mlp", input_shape=(D,), hidden=(8,), code_dim=3)
    lik = get_likelihood("gaussian")
    mesh = sharding.make_mesh()
    from aejax import train_step as ts

    eval_step = ts.make_eval_step(autoencoder.make_eval_fn(model, lik), mesh)
    params = model.init(jax.random.key(1), x["test"][:1])["params"]
    state = ts.init_state(params, _sgd(1), jax.random.key(2), {})
    view = streaming.StoreView(activation_store.ActivationStore(path), "test", max_code_rows=17)
    labels = np.full((50,), -1, np.int32)
    mem = loop.evaluate(state, eval_step, x["test"], labels, mesh, 12)
    got = loop.evaluate(state, eval_step, view, labels, mesh, 12)  # 5 batches of 12, the last one padded
    np.testing.assert_allclose(got.metrics[SQ_ERR], mem.metrics[SQ_ERR], rtol=1e-6)
    assert got.code.shape == (17, 3) and mem.code.shape == (50, 3)
    np.testing.assert_allclose(got.code, mem.code[:17], rtol=1e-6)
    # Independent of the eval step: the squared error of the model's reconstruction, in float64.
    recon = np.asarray(model.apply({"params": params}, x["test"]).decoder_output, np.float64)
    np.testing.assert_allclose(got.metrics[SQ_ERR], ((recon - x["test"]) ** 2).sum(axis=1), rtol=1e-5)


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_view_reads_do_not_stay_in_the_resident_set(tmp_path):
    """Reading every row of a 16 MiB store through the view leaves the process's file-backed RSS about where it
    was, while reading it through a plain memmap adds the file's pages (the reason the view uses pread)."""
    rows, d = 32768, 128
    path = str(tmp_path / "big")
    w = activation_store.ActivationWriter(path, d=d, shard_rows=8192)
    w.append("train", np.ones((rows, d), np.float32))
    w.finish("train")
    store = activation_store.ActivationStore(path)
    view = streaming.StoreView(store, "train")
    mib = rows * d * 4 / 2**10
    before = _rss_file_kib()
    total = sum(float(view[i : i + 4096].sum()) for i in range(0, rows, 4096))
    grew = _rss_file_kib() - before
    assert total == rows * d  # exact: sums of ones in float32 below 2**24
    assert grew < 0.25 * mib, f"file-backed RSS grew {grew} KiB reading {mib:.0f} KiB through the view"
    before = _rss_file_kib()
    plain = sum(float(np.asarray(a).sum()) for a in store.vector_shards("train"))
    assert plain == rows * d
    assert _rss_file_kib() - before > 0.5 * mib  # the page cache was not under pressure: the contrast holds


def _config(path, **overrides):
    c = sae_configs.get_config("store,runlocal")
    c.dataset = f"{activation_store.PREFIX}{path}"
    for k, v in overrides.items():
        c[k] = v
    return c


def test_load_data_streams_when_asked_or_over_the_budget(store):
    path, x = store
    train, test = build.load_data(_config(path, data_loading="stream"))
    assert isinstance(train.x, streaming.StoreView) and isinstance(test.x, streaming.StoreView)
    assert isinstance(build.make_loader(_config(path), train, seed=0), streaming.StreamingLoader)
    tiny = 4 * D * 100 / 2**30  # 100 rows' worth: the train split (200 rows) streams, the test split (50) not
    train, test = build.load_data(_config(path, max_memory_gb=tiny))
    assert isinstance(train.x, streaming.StoreView) and isinstance(test.x, np.ndarray)
    np.testing.assert_array_equal(test.x, x["test"])
    train, _ = build.load_data(_config(path))  # the default budget holds it
    assert isinstance(train.x, np.ndarray)


def test_streaming_refuses_what_it_cannot_do(store):
    path, _ = store
    with pytest.raises(ValueError, match="activation stores.*'mnist5k'"):
        build.load_data(_config(path, data_loading="stream", dataset="mnist5k"))
    with pytest.raises(ValueError, match="Known: auto, memory, stream"):
        build.load_data(_config(path, data_loading="disk"))
    c = _config(path, data_loading="stream")
    c.transforms.standardize = "per_feature"
    with pytest.raises(ValueError, match="standardize='per_feature'"):
        build.load_data(c)


def test_missing_or_truncated_shards_are_named(store, tmp_path):
    import shutil

    path, _ = store
    for damage in ("missing", "truncated"):
        copy = str(tmp_path / damage)
        shutil.copytree(path, copy)
        shard = os.path.join(copy, "train-00002.vectors.npy")
        if damage == "missing":
            os.remove(shard)
        else:
            with open(shard, "r+b") as f:
                f.truncate(os.path.getsize(shard) - 4 * D)  # one row short
        with pytest.raises((FileNotFoundError, ValueError), match="train-00002.vectors.npy"):
            build.load_data(_config(copy, data_loading="stream"))
    # Truncated while a run reads it: the read that reaches the missing bytes names the shard.
    copy = str(tmp_path / "later")
    shutil.copytree(path, copy)
    view = build.load_data(_config(copy, data_loading="stream"))[0].x
    shard = os.path.join(copy, "train-00002.vectors.npy")
    os.truncate(shard, os.path.getsize(shard) - 4 * D)
    np.testing.assert_array_equal(view[64:95], store[1]["train"][64:95])  # rows before the cut still read
    with pytest.raises(ValueError, match="train-00002.vectors.npy: truncated"):
        view[np.array([3, 95])]
