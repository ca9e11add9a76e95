"""Activations as data: the `.npy` + manifest store (round trip, a store written with numpy alone, errors naming
the path) and the extraction of a layer (a trained MLP AE's Dense layer against a numpy matmul of the checkpoint's
parameters, a sequence model's [B*T, d] rows with their example and position, kill and resume)."""

import json
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import activations, runs, train
from aejax.data import activation_store, load_split
from aejax.data.activation_store import ActivationStore, ActivationWriter
from aejax.data.batch import Split, mask_from_lengths
from configs import mnist_ae


def _write(path, chunks, *, shard_rows, dtype="float32", with_index=True):
    w = ActivationWriter(str(path), d=chunks[0].shape[1], dtype=dtype, shard_rows=shard_rows, source={"k": 1})
    start = 0
    for c in chunks:
        idx = np.arange(start, start + len(c))
        w.append("train", c, *((idx * 10, idx % 7) if with_index else ()))
        start += len(c)
    w.finish("train")
    return w


def test_round_trip_in_uneven_batches_with_examples_and_positions(tmp_path):
    x = np.random.default_rng(0).normal(size=(19, 5)).astype(np.float32)
    cuts = np.split(x, [3, 13, 14])  # batches of 3, 10, 1, 5 into shards of 7
    _write(tmp_path / "a", cuts, shard_rows=7)
    store = ActivationStore(f"activations:{tmp_path / 'a'}")
    assert [s["rows"] for s in store.manifest["splits"]["train"]["shards"]] == [7, 7, 5]
    np.testing.assert_array_equal(store.read("train"), x)
    np.testing.assert_array_equal(store.read("train", 5, 16), x[5:16])
    np.testing.assert_array_equal(store.examples("train"), np.arange(19) * 10)
    np.testing.assert_array_equal(store.positions("train"), np.arange(19) % 7)
    assert store.examples("train").dtype == np.int64 and store.positions("train").dtype == np.int32
    index = np.array([18, 0, 7, 6, 13])
    np.testing.assert_array_equal(store.take("train", index), x[index])
    got = load_split(f"activations:{tmp_path / 'a'}", "train")
    assert got.kind == "vector" and got.mask is None and got.x.dtype == np.float32
    np.testing.assert_array_equal(got.x, x)
    np.testing.assert_array_equal(got.labels, np.full(19, -1))
    # float16 on disk, float32 when read
    _write(tmp_path / "h", cuts, shard_rows=4, dtype="float16", with_index=False)
    half = ActivationStore(str(tmp_path / "h"))
    assert half.read("train").dtype == np.float32 and half.examples("train") is None
    np.testing.assert_array_equal(half.read("train"), x.astype(np.float16).astype(np.float32))


class _TorchLike:
    """Stands in for a torch tensor in the docstring's example (no torch in the test environment)."""

    def __init__(self, a):
        self.a = a

    def detach(self):
        return self

    def float(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_a_store_written_with_numpy_alone_as_documented_is_read(tmp_path):
    # The module docstring's example, run as written: the documented layout is the one the reader reads.
    doc = activation_store.__doc__
    example = doc[doc.index("    import json, os") : doc.index("`ActivationStore` opens")]
    x = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    out = str(tmp_path / "torch")
    exec(
        re.sub(r"^    ", "", example, flags=re.M), {"out": out, "batches": [_TorchLike(x[:4]), _TorchLike(x[4:])]}
    )
    split = load_split(f"activations:{out}", "train")
    np.testing.assert_array_equal(split.x, x)
    assert ActivationStore(out).source == {"framework": "pytorch"}


def _expect(error, fn, *texts):
    with pytest.raises(error) as info:
        fn()
    for text in texts:
        assert text in str(info.value), str(info.value)


def test_bad_stores_give_errors_naming_the_path(tmp_path):
    root = tmp_path / "s"
    x = np.ones((9, 3), np.float32)
    _expect(
        FileNotFoundError,
        lambda: ActivationStore(str(root)),
        str(root),
        "manifest.json",
        "python -m aejax.activations",
    )
    _write(root, [x], shard_rows=4)
    store = ActivationStore(str(root))
    _expect(KeyError, lambda: store.num_rows("valid"), "'valid'", str(root), "Splits: train")
    _expect(KeyError, lambda: load_split(f"activations:{root}", "test"), "Splits: train")
    activation_store.check_width(store, 3)
    _expect(ValueError, lambda: activation_store.check_width(store, 768), str(root), "d = 3", "768")

    shard = root / "train-00001.vectors.npy"
    np.save(shard, np.ones((3, 3), np.float32))  # one row short of the manifest's 4
    _expect(ValueError, lambda: ActivationStore(str(root)), str(shard), "(3, 3)", "(4, 3)")
    np.save(shard, np.ones((4, 2), np.float32))  # narrower
    _expect(ValueError, lambda: ActivationStore(str(root)), str(shard), "(4, 2)")
    np.save(shard, np.ones((4, 3), np.float32))
    shard.write_bytes(shard.read_bytes()[:-20])  # a copy cut short
    _expect(ValueError, lambda: ActivationStore(str(root)), str(shard))
    shard.unlink()
    _expect(FileNotFoundError, lambda: ActivationStore(str(root)), str(shard), "missing")

    part = ActivationWriter(str(tmp_path / "p"), d=3, shard_rows=4)
    part.append("train", x)  # two whole shards on disk, the split not finished
    _expect(ValueError, lambda: load_split(f"activations:{tmp_path / 'p'}", "train"), "incomplete", "re-run")
    _expect(ValueError, lambda: ActivationWriter(str(tmp_path / "p"), d=4, shard_rows=4), "d: 3 (stored) vs 4")


# A sequence model like the byte-level LM: tokens [B, T] -> logits, its block returns the residual stream.
class _Block(nn.Module):
    @nn.compact
    def __call__(self, h):
        return h + nn.Dense(h.shape[-1], name="mlp")(jnp.tanh(h))


class _TinyLM(nn.Module):
    vocab: int = 11
    d: int = 4

    @nn.compact
    def __call__(self, tokens, *, train=False, mask=None):
        del train, mask
        h = nn.Embed(self.vocab, self.d, name="embed")(tokens.astype(jnp.int32))  # [B, T, d]
        return nn.Dense(self.vocab, name="unembed")(_Block(name="block_0")(h))


def _tiny_lm(n=7, t=6, seed=0):
    tokens = np.random.default_rng(seed).integers(0, 11, size=(n, t)).astype(np.uint8)
    model = _TinyLM()
    variables = jax.device_get(model.init(jax.random.key(seed), tokens[:1]))
    p = variables["params"]
    e = np.asarray(p["embed"]["embedding"])[tokens]  # [N, T, d], the independent reference
    mlp = p["block_0"]["mlp"]
    residual = e + np.tanh(e) @ np.asarray(mlp["kernel"]) + np.asarray(mlp["bias"])
    return model, variables, tokens, residual


def test_sequence_layer_gives_rows_per_valid_token_with_example_and_position(tmp_path):
    model, variables, tokens, residual = _tiny_lm()
    assert activations.layer_names(model, variables, tokens) == ["block_0", "block_0/mlp", "embed", "unembed"]
    lengths = np.array([6, 2, 5, 1, 6, 3, 4])
    data = Split(x=tokens, labels=np.full(7, -1, np.int32), mask=mask_from_lengths(lengths, 6), kind="series")
    writer = ActivationWriter(str(tmp_path / "seq"), d=4, shard_rows=5)
    # max_rows=20 keeps whole examples: 6 + 2 + 5 + 1 + 6 = 20
    rows = activations.extract_split(model, variables, "block_0", data, writer, "train", max_rows=20, batch_size=3)
    store = ActivationStore(str(tmp_path / "seq"))
    example = np.concatenate([np.full(n, i) for i, n in enumerate(lengths[:5])])
    position = np.concatenate([np.arange(n) for n in lengths[:5]])
    assert rows == store.num_rows("train") == 20
    np.testing.assert_array_equal(store.examples("train"), example)
    np.testing.assert_array_equal(store.positions("train"), position)
    np.testing.assert_allclose(store.read("train"), residual[example, position], rtol=1e-5, atol=1e-6)
    # Without a mask: every token, rows [B*T, d]
    whole = ActivationWriter(str(tmp_path / "all"), d=4)
    activations.extract_split(model, variables, "block_0", data._replace(mask=None), whole, "train", batch_size=4)
    store = ActivationStore(str(tmp_path / "all"))
    np.testing.assert_allclose(store.read("train"), residual.reshape(42, 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(store.examples("train"), np.repeat(np.arange(7), 6))
    np.testing.assert_array_equal(store.positions("train"), np.tile(np.arange(6), 7))


def test_killed_sequence_extraction_resumes_mid_example_to_the_same_store(tmp_path, monkeypatch):
    model, variables, tokens, _ = _tiny_lm(n=9, seed=1)
    data = Split(x=tokens, labels=np.full(9, -1, np.int32), mask=mask_from_lengths(np.arange(1, 10) % 6 + 1, 6))

    def run(path):
        writer = ActivationWriter(str(path), d=4, shard_rows=5)  # shards end inside examples
        activations.extract_split(model, variables, "block_0", data, writer, "train", batch_size=2)

    run(tmp_path / "ref")
    real, calls = activation_store._save_atomic, []

    def dying(path, write):  # 4 files per shard (3 arrays, the manifest): die inside the third shard
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        real(path, write)

    monkeypatch.setattr(activation_store, "_save_atomic", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    monkeypatch.setattr(activation_store, "_save_atomic", real)
    assert ActivationStore(str(tmp_path / "resumed")).num_rows("train") == 10  # two whole shards survived
    run(tmp_path / "resumed")
    ref, got = ActivationStore(str(tmp_path / "ref")), ActivationStore(str(tmp_path / "resumed"))
    for key in ("vectors", "example", "position"):
        np.testing.assert_array_equal(got.read("train", key=key), ref.read("train", key=key), err_msg=key)


def test_unknown_layer_lists_the_known_ones_before_any_compute(tmp_path):
    model, variables, tokens, _ = _tiny_lm()
    data = Split(x=tokens, labels=np.full(7, -1, np.int32))
    writer = ActivationWriter(str(tmp_path / "x"), d=4)
    _expect(KeyError, lambda: activations.extract_split(model, variables, "block_1", data, writer, "train"),
            "'block_1'", "block_0 [6, 4]", "block_0/mlp [6, 4]", "embed [6, 4]", "unembed [6, 11]")  # fmt: skip
    assert not os.path.exists(tmp_path / "x" / "manifest.json")


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    """A trained MLP AE (the runlocal config, 4 steps) on 12-D vectors: 60 train, 20 test."""
    root = tmp_path_factory.mktemp("ae")
    rng = np.random.default_rng(0)
    np.save(root / "train_x.npy", rng.normal(size=(60, 12)).astype(np.float32))
    np.save(root / "test_x.npy", rng.normal(size=(20, 12)).astype(np.float32))
    config = mnist_ae.get_config("runlocal")
    config.dataset, config.likelihood = f"arrays:{root}", "gaussian"
    config.batch_size, config.num_train_steps, config.steps_per_call = 16, 4, 1
    config.log_every = config.eval_every = config.checkpoint_every = 2
    config.analysis.pca_baseline = False
    train.train_and_evaluate(config, str(root / "run"))
    return str(root / "run")


def test_extracted_mlp_layer_equals_a_numpy_matmul_of_the_checkpoint(tmp_path, ae_run):
    manifest = activations.extract(ae_run, "encoder_1", str(tmp_path / "acts"), max_rows=50, batch_size=16)
    run = runs.load_run(ae_run)
    p = jax.tree.map(np.asarray, run.variables["params"])
    for split, n in (("train", 50), ("test", 20)):
        x = np.asarray(load_split(run.config.dataset, split).x, np.float64)[:n]
        h0 = np.maximum(x @ p["encoder_0"]["kernel"] + p["encoder_0"]["bias"], 0.0)  # relu(Dense_0)
        want = h0 @ p["encoder_1"]["kernel"] + p["encoder_1"]["bias"]  # the Dense's output, before its activation
        store = ActivationStore(str(tmp_path / "acts"))
        np.testing.assert_allclose(store.read(split), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(store.examples(split), np.arange(n))
        np.testing.assert_array_equal(store.positions(split), np.full(n, -1))
    assert manifest["d"] == 32 and manifest["source"]["layer"] == "encoder_1"
    assert manifest["source"]["step"] == 4 and manifest["source"]["run"] == os.path.abspath(ae_run)


def test_killed_extraction_resumes_to_the_same_store_and_other_arguments_are_refused(
    tmp_path, ae_run, monkeypatch
):
    kw = dict(splits=("train",), batch_size=8, shard_rows=16)
    activations.extract(ae_run, "encoder_0", str(tmp_path / "ref"), **kw)
    real, calls = activation_store._save_atomic, []

    def dying(path, write):  # die while writing the third shard (4 files per shard)
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        real(path, write)

    monkeypatch.setattr(activation_store, "_save_atomic", dying)
    with pytest.raises(KeyboardInterrupt):
        activations.extract(ae_run, "encoder_0", str(tmp_path / "res"), **kw)
    monkeypatch.setattr(activation_store, "_save_atomic", real)
    appended = []
    real_append = ActivationWriter.append
    monkeypatch.setattr(
        ActivationWriter, "append", lambda self, s, v, *a: (appended.append(len(v)), real_append(self, s, v, *a))
    )
    activations.extract(ae_run, "encoder_0", str(tmp_path / "res"), **kw)
    assert sum(appended) == 60 - 32  # only what the two whole shards on disk did not hold was computed again
    ref, got = ActivationStore(str(tmp_path / "ref")), ActivationStore(str(tmp_path / "res"))
    np.testing.assert_array_equal(got.read("train"), ref.read("train"))
    np.testing.assert_array_equal(got.examples("train"), ref.examples("train"))

    def no_load(*a, **k):
        raise AssertionError("a complete store must not load the run")

    monkeypatch.setattr(runs, "load_run", no_load)
    assert activations.extract(ae_run, "encoder_0", str(tmp_path / "res"), **kw)["splits"]["train"]["complete"]
    monkeypatch.undo()
    _expect(ValueError, lambda: activations.extract(ae_run, "encoder_1", str(tmp_path / "res"), **kw),
            str(tmp_path / "res"), "layer: 'encoder_0' (stored) vs 'encoder_1'")  # fmt: skip
    _expect(ValueError, lambda: activations.extract(ae_run, "encoder_0", str(tmp_path / "res"), max_rows=30, **kw),
            "max_rows: {'train': None, 'test': None} (stored) vs {'train': 30, 'test': 30}")  # fmt: skip
    _expect(KeyError, lambda: activations.extract(ae_run, "encoder_7", str(tmp_path / "new"), **kw),
            "encoder_0 [64]", "decoder_2 [12]")  # fmt: skip
    with open(os.path.join(tmp_path, "ref", "manifest.json")) as f:
        assert json.load(f)["source"]["dataset"].startswith("arrays:")
