"""Retrieval with binary codes: Hamming distances, ranking metrics, the Hamming-ball hash table, the baselines
(LSH, PCA sign, ITQ), the hashing model's bits, and the end-to-end runlocal hashing launch."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score

from aejax.analysis import binary_codes, retrieval
from aejax.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_bits(rng, n, b):
    return rng.integers(0, 2, size=(n, b))


@pytest.mark.parametrize("num_bits", [1, 7, 8, 13, 32, 64])
def test_hamming_distances_match_a_brute_force_count(num_bits):
    rng = np.random.default_rng(num_bits)
    q, d = _random_bits(rng, 9, num_bits), _random_bits(rng, 31, num_bits)
    expected = np.array([[sum(int(a != b) for a, b in zip(qi, di, strict=True)) for di in d] for qi in q])
    np.testing.assert_array_equal(retrieval.hamming_distances(q, d), expected)


def test_hamming_distances_refuse_real_codes_and_mismatched_bits():
    with pytest.raises(ValueError, match="only 0 and 1"):
        retrieval.hamming_distances(np.full((2, 4), 0.5), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="bits"):
        retrieval.hamming_distances(np.zeros((2, 4)), np.zeros((3, 5)))


@pytest.mark.parametrize("num_bits,radius", [(6, 0), (6, 1), (6, 2), (12, 2), (40, 1), (64, 2)])
def test_hash_table_lookup_returns_exactly_the_items_within_the_radius(num_bits, radius):
    rng = np.random.default_rng(num_bits + radius)
    # Few distinct codes, so buckets hold several items and some queries sit at small distances.
    prototypes = _random_bits(rng, 8, num_bits)
    db = prototypes[rng.integers(0, 8, 200)] ^ (rng.random((200, num_bits)) < 0.03)
    queries = prototypes[rng.integers(0, 8, 25)] ^ (rng.random((25, num_bits)) < 0.03)
    found = retrieval.HashTable(db).lookup(queries, radius)
    for q, items in zip(queries, found, strict=True):
        expected = [i for i, d in enumerate(db) if np.sum(q != d) <= radius]
        np.testing.assert_array_equal(items, expected)
    assert sum(len(f) for f in found) > 0  # the case is not vacuous


def test_flip_masks_count_is_the_ball_volume():
    for b, r in [(8, 0), (8, 1), (8, 2), (32, 2)]:
        masks = retrieval.flip_masks(b, r)
        volume = sum(len(list(itertools.combinations(range(b), i))) for i in range(r + 1))
        assert len(masks) == len(set(masks.tolist())) == volume


def test_precision_at_k_and_average_precision_on_a_handmade_case():
    # Query 0 (label 1) ranks items with labels [1, 0, 1, 1, 0]; query 1 (label 0) ranks [1, 1, 0, 0, 1].
    db_labels = np.array([1, 0, 1, 1, 0])
    distances = np.array([[0, 1, 2, 3, 4], [4, 3, 0, 1, 2]])  # query 1's order: items 2, 3, 4, 1, 0
    rel = retrieval.relevance(retrieval.ranking(distances), np.array([1, 0]), db_labels)
    np.testing.assert_array_equal(rel, [[1, 0, 1, 1, 0], [0, 0, 1, 1, 0]])
    np.testing.assert_allclose(retrieval.precision_at_k(rel, 1), [1.0, 0.0])
    np.testing.assert_allclose(retrieval.precision_at_k(rel, 3), [2 / 3, 1 / 3])
    # AP by hand: query 0 hits at ranks 1, 3, 4 -> (1 + 2/3 + 3/4) / 3; query 1 at ranks 3, 4 -> (1/3 + 2/4) / 2.
    np.testing.assert_allclose(retrieval.average_precision(rel), [(1 + 2 / 3 + 3 / 4) / 3, (1 / 3 + 2 / 4) / 2])
    with pytest.raises(ValueError, match="k must be"):
        retrieval.precision_at_k(rel, 6)


def test_average_precision_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    rel = rng.random((6, 50)) < 0.3
    ours = retrieval.average_precision(rel)
    scores = -np.arange(50)  # rank order as a score with no ties
    np.testing.assert_allclose(ours, [average_precision_score(r, scores) for r in rel], rtol=1e-12)


def test_set_metrics_on_a_handmade_case():
    db_labels = np.array([0, 0, 1, 1, 1])
    found = [np.array([0, 2]), np.array([], int), np.array([2, 3, 4])]
    m = retrieval.set_metrics(found, np.array([0, 0, 1]), db_labels)
    np.testing.assert_allclose(m["precision"], (1 / 2 + 1) / 2)  # over the two answered queries
    np.testing.assert_allclose(m["recall"], (1 / 2 + 0 + 1) / 3)
    np.testing.assert_allclose(m["fraction_answered"], 2 / 3)


def test_itq_lowers_its_quantisation_loss_at_every_iteration():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 20)) @ rng.standard_normal((20, 20))
    hash_fn, losses = binary_codes.itq(x, 8, iterations=30, seed=1)
    # Each iteration minimises over B, then over R, so it cannot increase (up to float64 rounding).
    scale = losses[0]
    assert np.all(np.diff(losses) <= 1e-10 * scale), np.diff(losses)
    assert losses[-1] < losses[0] - 1e-3 * scale
    # The returned codes sign(V R) are the best for the last rotation, so their loss is at most the last one.
    pca = PCA(8, svd_solver="covariance_eigh").fit(x)
    v_r = (x - pca.mean_) @ hash_fn.projection
    b = 2.0 * hash_fn(x) - 1
    assert np.square(b - v_r).sum() / len(x) <= losses[-1] * (1 + 1e-9)


def test_pca_sign_and_lsh_are_signs_of_their_projections():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 12)) * np.linspace(3, 0.5, 12)
    scores = PCA(4).fit(x).transform(x)
    bits = binary_codes.pca_sign(x, 4)(x)
    # Components are defined up to sign: each bit equals 1[score > 0] or its complement.
    for j in range(4):
        assert np.all(bits[:, j] == (scores[:, j] > 0)) or np.all(bits[:, j] == (scores[:, j] <= 0))
    lsh = binary_codes.random_hyperplanes(x, 16, seed=0)
    np.testing.assert_array_equal(lsh(x), (x - x.mean(0)) @ lsh.projection > 0)
    with pytest.raises(ValueError, match="num_bits"):
        binary_codes.pca_sign(x, 13)


def test_bit_statistics_on_a_handmade_case():
    bits = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 1], [1, 1, 0]])
    s = binary_codes.bit_statistics(bits, probs=np.array([[0.95, 0.5, 0.02]] * 4))
    np.testing.assert_allclose(s["bit_balance"], [1, 0.5, 0.5])
    assert s["constant_bits"] == 1
    np.testing.assert_allclose(s["mean_abs_correlation"], 1.0)  # bits 1 and 2 are complements
    np.testing.assert_allclose(s["saturated_fraction"], 2 / 3)


@pytest.mark.parametrize("estimator", ["noise", "straight_through"])
def test_hashing_model_codes_are_exactly_binary_at_evaluation(estimator):
    model = get_model("hashing", input_shape=(6, 6, 1), hidden=(10,), code_dim=12, estimator=estimator)
    x = jax.random.uniform(jax.random.key(0), (32, 6, 6, 1))
    variables = model.init(jax.random.key(1), x)
    out = model.apply(variables, x)
    code = np.asarray(out.code)
    assert set(np.unique(code).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(code, np.asarray(out.extras["code_logits"]) > 0)
    np.testing.assert_array_equal(np.asarray(model.apply(variables, x, method=model.encode)), code)
    train = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}).code
    if estimator == "straight_through":  # binary forward, sigmoid gradient
        assert set(np.unique(np.asarray(train)).tolist()) <= {0.0, 1.0}
        grad = jax.grad(lambda v: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)}).code.sum())(
            variables
        )
        assert float(jnp.abs(grad["params"]["encoder_1"]["kernel"]).sum()) > 0
    else:  # noisy sigmoid: strictly inside (0, 1) somewhere, and the same noise for the same step rng
        assert np.any((np.asarray(train) > 0.01) & (np.asarray(train) < 0.99))
        again = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}).code
        np.testing.assert_array_equal(np.asarray(train), np.asarray(again))
    with pytest.raises(ValueError, match="estimator"):
        get_model("hashing", input_shape=(6, 6, 1), estimator="gumbel").init(jax.random.key(0), x)


def test_runlocal_hashing_launch_writes_the_retrieval_table(tmp_path, assert_figure):
    workdir = tmp_path / "hash"
    data_dir = tmp_path / "tfds"
    cmd = [
        sys.executable,
        "launch.py",
        "--config=configs/hashing.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.retrieval.max_queries=100",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["retrieval/num_bits"] == 32 and results["retrieval/model_bits_are_binary"]
    for method in ("ae_hashing", "ae_itq", "lsh", "pca_sign", "itq"):
        for key in ("p@10", "p@100", "map", "r0_precision", "r2_recall", "r1_queries_per_s"):
            value = results[f"retrieval/{method}/{key}"]
            assert np.isfinite(value) or (key == "r0_precision" and value is None)  # None: no query answered
        # A larger Hamming ball retrieves a superset: recall cannot fall.
        assert results[f"retrieval/{method}/r0_recall"] <= results[f"retrieval/{method}/r2_recall"]
    for method in ("ae_real", "pixels"):
        assert 0 <= results[f"retrieval/{method}/map"] <= 1
    assert "retrieval/ae_real/knn100_queries_per_s" in results
    assert 0 <= results["retrieval/saturated_fraction"] <= 1
    assert results["retrieval/itq_loss_last"] <= results["retrieval/itq_loss_first"]
    assert results["retrieval/ae_itq_loss_last"] <= results["retrieval/ae_itq_loss_start"]
    assert "| ae_hashing |" in (workdir / "retrieval_table.md").read_text()
    assert_figure(workdir / "retrieval.png", min_width=800)


def test_report_hashes_a_real_valued_code_at_its_medians(tmp_path, assert_figure):
    """A model with a real-valued code (the `mlp`): one bit per unit, 1 above the unit's median on the database,
    so every bit is balanced on the database."""
    from aejax.analysis import reports
    from aejax.analysis.reports import retrieval as retrieval_report
    from aejax.data.datasets import Split
    from aejax.likelihoods import get_likelihood
    from configs import hashing as hashing_config

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 160)
    x = np.clip(rng.random((3, 8, 8, 1))[labels] + 0.1 * rng.standard_normal((160, 8, 8, 1)), 0, 1)
    model = get_model("mlp", input_shape=(8, 8, 1), hidden=(16,), code_dim=6)
    variables = jax.device_get(model.init(jax.random.key(0), jnp.asarray(x[:1], jnp.float32)))
    config = hashing_config.get_config("runlocal")
    ctx = reports.RunContext(
        config, str(tmp_path), model, get_likelihood("bernoulli"), variables,
        Split(x[:120].astype(np.float32), labels[:120], kind="image"),
        Split(x[120:].astype(np.float32), labels[120:], kind="image"), None,
    )  # fmt: skip
    out = retrieval_report.report(ctx)
    assert out["num_bits"] == 6 and not out["model_bits_are_binary"]
    codes = np.asarray(model.apply(variables, ctx.train_split.x).code)
    bits = codes > np.median(codes, axis=0)
    np.testing.assert_allclose(out["ae_hashing/mean_abs_balance_error"], np.abs(bits.mean(0) - 0.5).mean())
    assert 0 <= out["ae_hashing/map"] <= 1 and "saturated_fraction" not in out
    assert_figure(tmp_path / "retrieval.png", min_width=800)
