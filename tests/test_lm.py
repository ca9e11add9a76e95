"""The byte-level LM of issue 20: the pystdlib corpus, ByteLM, the "lm" objective, n-gram baselines and the "lm"
job, each against an independent reference (the files on disk, numpy cross-entropy, brute-force counts)."""

import hashlib
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import byte_lm, runs
from aejax.analysis import ngram
from aejax.data import datasets
from aejax.data.batch import Batch
from aejax.data.builders import pystdlib
from aejax.jobs import lm as lm_job
from aejax.objectives import BITS_PER_BYTE, NATS_PER_BYTE, OBJECTIVES
from configs import lm as lm_config

TINY = dict(context=16, d_model=16, n_layers=3, n_heads=2, d_mlp=32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _tokens(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape), jnp.int32)


@pytest.fixture(scope="module")
def tiny_lm():
    model = byte_lm.ByteLM(**TINY)
    return model, model.init(jax.random.key(0), _tokens((1, 8)))


def _expected_tiny_files(root: pathlib.Path) -> dict[str, list[str]]:
    """The tiny config's files, found independently of the builder's helpers (pathlib walk, the hash rule)."""
    paths = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if not set(p.relative_to(root).parts[:-1])
        & {"site-packages", "dist-packages", "test", "tests", "idle_test"}
    )
    out, held = {"train": [], "test": []}, {"train": 0, "test": 0}
    for p in paths:
        split = "test" if int(hashlib.sha256(p.encode()).hexdigest()[:16], 16) % 100 < 5 else "train"
        cap = pystdlib.TINY_TEST_BYTES if split == "test" else pystdlib.TINY_TRAIN_BYTES
        if held[split] < cap:
            out[split].append(p)
            held[split] += (root / p).stat().st_size
    return out


def test_corpus_windows_are_the_files_bytes_and_the_split_is_disjoint_by_file(data_dir):
    root = pystdlib.stdlib_root()
    files = _expected_tiny_files(root)
    assert files["train"] and files["test"] and not set(files["train"]) & set(files["test"])
    for split in ("train", "test"):
        s = datasets.load_split("pystdlib/tiny", split, data_dir=data_dir)
        assert s.kind == "text" and s.x.dtype == np.uint8 and s.x.shape[1] == 128
        stream = b"".join((root / p).read_bytes() for p in files[split])
        assert len(s.x) == len(stream) // 128
        assert s.x.tobytes() == stream[: len(s.x) * 128]  # in order, window after window

    info = pystdlib.corpus_info("tiny", data_dir)
    assert info["python_version"] == sys.version.split()[0]
    h = hashlib.sha256()
    for p in files["train"] + files["test"]:
        data = (root / p).read_bytes()
        h.update(p.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    assert info["corpus_sha256"] == h.hexdigest()
    assert (info["train_files"], info["test_files"]) == (len(files["train"]), len(files["test"]))


def test_logits_at_t_do_not_depend_on_later_tokens(tiny_lm):
    model, variables = tiny_lm
    x = _tokens((2, 12))
    t = 5
    y = x.at[:, t + 1 :].set(_tokens((2, 12 - t - 1), seed=1))
    a, b = model.apply(variables, x), model.apply(variables, y)
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(a[:, t + 1 :] - b[:, t + 1 :])).max() > 1e-3  # later positions do see them


def test_residual_spliced_back_gives_the_logits_for_every_layer(tiny_lm):
    model, variables = tiny_lm
    x = _tokens((3, 10), seed=2)
    logits = model.apply(variables, x)
    assert logits.shape == (3, 10, 256)
    assert model.layer_names() == ("embed", "block_0", "block_1", "block_2")
    _, inter = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    for layer in model.layer_names():
        h = model.apply(variables, x, layer, method="residual")
        assert h.shape == (3, 10, TINY["d_model"])
        spliced = model.apply(variables, h, layer, method="logits_from_residual")
        np.testing.assert_allclose(spliced, logits, rtol=1e-5, atol=1e-5)
        if layer != "embed":  # the block submodules' outputs are the resid_post activations
            np.testing.assert_allclose(inter["intermediates"][layer]["__call__"][0], h, rtol=1e-6, atol=1e-6)


def test_unknown_layer_and_bad_tokens_raise_naming_what_is_known(tiny_lm):
    model, variables = tiny_lm
    x = _tokens((1, 4))
    with pytest.raises(KeyError, match="Known layers: embed, block_0, block_1, block_2"):
        model.apply(variables, x, "block_7", method="residual")
    with pytest.raises(KeyError, match="Known layers: embed"):
        model.apply(variables, jnp.zeros((1, 4, TINY["d_model"])), "resid", method="logits_from_residual")
    with pytest.raises(ValueError, match="context is 16"):
        model.apply(variables, _tokens((1, 17)))
    with pytest.raises(ValueError, match="integers"):
        model.apply(variables, jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="n_heads=3 must divide"):
        byte_lm.ByteLM(d_model=16, n_heads=3)


def _numpy_nats(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """[B, T-1] -log softmax(logits)[next byte], float64."""
    z = logits.astype(np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    b, t = np.meshgrid(np.arange(len(tokens)), np.arange(tokens.shape[1] - 1), indexing="ij")
    return -logp[b, t, tokens[:, 1:]]


def test_lm_loss_and_eval_equal_numpy_cross_entropy(tiny_lm):
    model, variables = tiny_lm
    config = lm_config.get_config("runlocal")
    objective = OBJECTIVES.get("lm")(config, model, None)
    tokens = np.asarray(_tokens((4, 9), seed=3)).astype(np.uint8)  # as the loader carries them
    batch = Batch(x=jnp.asarray(tokens), label=jnp.zeros((4,), jnp.int32))
    want = _numpy_nats(np.asarray(model.apply(variables, jnp.asarray(tokens[:, :-1], jnp.int32))), tokens)
    loss, (metrics, _) = jax.jit(objective.loss_fn)(variables["params"], {}, batch, jax.random.key(0), 0)
    np.testing.assert_allclose(float(loss), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss/bits_per_byte"]), want.mean() / np.log(2), rtol=1e-5)
    out = jax.jit(objective.eval_fn)(variables["params"], {}, batch, jax.random.key(0))
    np.testing.assert_allclose(out.metrics[NATS_PER_BYTE], want.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(out.metrics[BITS_PER_BYTE], want.mean(axis=1) / np.log(2), rtol=1e-5)
    assert out.code.shape == (4, TINY["d_model"])


def test_ngram_baselines_match_brute_force_counts():
    rng = np.random.default_rng(4)
    train, test = rng.integers(0, 6, (20, 7)), rng.integers(0, 6, (5, 7))  # a few symbols: real counts
    pairs, singles = {}, {}
    for row in train:
        for a, b in zip(row[:-1], row[1:], strict=True):
            pairs[a, b] = pairs.get((a, b), 0) + 1
            singles[b] = singles.get(b, 0) + 1
    prev = {a: sum(c for (p, _), c in pairs.items() if p == a) for a in range(256)}
    test_pairs = [(a, b) for row in test for a, b in zip(row[:-1], row[1:], strict=True)]
    bi = [-np.log((pairs.get((a, b), 0) + 1) / (prev[a] + 256)) for a, b in test_pairs]
    n = sum(singles.values())
    uni = [-np.log((singles.get(b, 0) + 1) / (n + 256)) for row in test for b in row[1:]]
    got = ngram.baseline_nats(train, test)
    np.testing.assert_allclose(got["bigram"], np.mean(bi), rtol=1e-12)
    np.testing.assert_allclose(got["unigram"], np.mean(uni), rtol=1e-12)
    with pytest.raises(ValueError, match="bytes 0..255"):
        ngram.baseline_nats(train + 300, test)


def test_greedy_sample_is_the_argmax_of_the_sliding_context(tiny_lm):
    model, variables = tiny_lm
    prompt = b"import os, sys\n# x"  # 18 bytes: longer than the context of 16
    got = lm_job.sample(model, variables, prompt, 4, temperature=0.0, seed=0)
    text = list(prompt)
    for _ in range(4):
        window = jnp.asarray([text[-16:]], jnp.int32)
        text.append(int(np.argmax(np.asarray(model.apply(variables, window))[0, -1])))
    assert got == bytes(text)


def _run_config(data_dir, **overrides):
    c = ml_collections.ConfigDict(lm_config.get_config("runlocal").to_dict())
    c.data_dir = data_dir
    c.steps_per_call = 1  # the killer replaces the one-step train step
    c.lm.sample_length = 8
    c.update(overrides)
    return c.lock()


def test_lm_run_resumes_exactly_after_a_kill(tmp_path, data_dir, train_step_killer):
    ref = lm_job.train_and_evaluate(_run_config(data_dir), str(tmp_path / "ref"))
    workdir = str(tmp_path / "resumed")
    train_step_killer.arm(13)  # killed after step 13; the last checkpoint is at step 10
    with pytest.raises(KeyboardInterrupt):
        lm_job.train_and_evaluate(_run_config(data_dir), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]
    train_step_killer.disarm()
    resumed = lm_job.train_and_evaluate(_run_config(data_dir), workdir)
    a, b = lm_job.load_lm(str(tmp_path / "ref")), lm_job.load_lm(workdir)
    assert a.step == b.step == 20
    for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables), strict=True):
        np.testing.assert_array_equal(x, y)
    assert resumed["test_nats_per_byte"] == ref["test_nats_per_byte"]
    assert resumed["sample"] == ref["sample"]
    assert ref["corpus_python_version"] == sys.version.split()[0] and len(ref["corpus_sha256"]) == 64
    assert ref["baseline_bigram_bits_per_byte"] < ref["baseline_unigram_bits_per_byte"] < 8.0
    with open(os.path.join(workdir, lm_job.SAMPLE_FILE), "rb") as f:
        assert f.read().startswith(b"def ")
    with pytest.raises(ValueError, match="load_lm"):  # the autoencoder loader points to the LM's own
        runs.load_run(workdir)
