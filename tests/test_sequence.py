"""Sequence autoencoders: masking, reverse-order decoding, windows and point scores, anomaly detection on a
synthetic series, bad input, and the runlocal launch end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aejax import runs
from aejax.analysis import sequence_anomaly
from aejax.data import Batch, series, transforms
from aejax.data.batch import Split, mask_from_lengths
from aejax.jobs import sequence as job
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.models.sequence import reverse_valid
from aejax.objectives import sequence as seq_objective
from configs import seq2seq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENGTHS = np.array([9, 4, 6])
T, C = 9, 2


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A TFDS data directory of this module's own, so no test reads or writes the default one."""
    return str(tmp_path_factory.mktemp("tfds"))


def _padded(junk: float, seed: int = 0):
    """(x [N, T, C] unpadded values, x with junk after each length, mask [N, T])."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(LENGTHS), T, C)).astype(np.float32)
    mask = mask_from_lengths(LENGTHS, T)
    padded = np.where(mask[..., None] > 0, x, junk * rng.normal(size=x.shape)).astype(np.float32)
    return x, padded, mask


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masked_loss_and_gradient_equal_unpadded_per_sequence(cell):
    # The masking is the same for both cells (nn.RNN's seq_lengths, the reversed decoder, the objective's
    # weights); the LSTM is checked through the gradient too, the GRU through loss and scores (cheaper).
    x, padded, mask = _padded(junk=1e3)
    model = get_model("seq2seq", input_shape=(T, C), cell=cell, hidden=8, code_dim=3)
    params = model.init(jax.random.key(0), jnp.asarray(padded))["params"]
    lik = get_likelihood("gaussian")
    loss_fn = seq_objective.make_loss_fn(model, lik)

    def padded_loss(p, batch_x):
        return loss_fn(p, {}, Batch(batch_x, None, jnp.asarray(mask)), jax.random.key(1), 0)[0]

    def alone_loss(p):  # the mean over sequences of each one's loss, run alone at its own length (no mask)
        total = 0.0
        for b, n in enumerate(LENGTHS):
            alone = get_model("seq2seq", input_shape=(int(n), C), cell=cell, hidden=8, code_dim=3)
            one = jnp.asarray(x[b : b + 1, :n])
            out = alone.apply({"params": p}, one, train=True).decoder_output
            total = total + seq_objective.masked_terms(lik, out, one, None)["nll"][0]
        return total / len(LENGTHS)

    batch_x = jnp.asarray(padded)
    if cell == "lstm":
        loss_pad, g_pad = jax.jit(jax.value_and_grad(padded_loss))(params, batch_x)
        loss_alone, g_alone = jax.jit(jax.value_and_grad(alone_loss))(params)
        for a, b in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_alone), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    else:
        loss_pad, loss_alone = jax.jit(padded_loss)(params, batch_x), jax.jit(alone_loss)(params)
    np.testing.assert_allclose(loss_pad, loss_alone, rtol=1e-5)
    # Other junk in the padding: the same loss, gradient and evaluation scores (free-running decoder).
    _, other, _ = _padded(junk=-7.0, seed=0)
    np.testing.assert_allclose(jax.jit(padded_loss)(params, jnp.asarray(other)), loss_pad, rtol=1e-6)
    eval_fn = jax.jit(
        lambda p, bx: (
            seq_objective.make_eval_fn(model, lik)(p, {}, Batch(bx, None, jnp.asarray(mask)), None).metrics
        )
    )
    ev = [eval_fn(params, jnp.asarray(p))["mse"] for p in (padded, other)]
    np.testing.assert_allclose(ev[0], ev[1], rtol=1e-6)


def test_reverse_valid_matches_loop():
    x = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1)
    got = np.asarray(reverse_valid(jnp.asarray(x), jnp.array([5, 3])))
    np.testing.assert_array_equal(got[0, :, 0], x[0, ::-1, 0])
    np.testing.assert_array_equal(got[1, :3, 0], x[1, 2::-1, 0])


def test_reverse_order_decoding_aligns_with_targets():
    """The decoder emits x_{L-1} first: position t's reconstruction (teacher forced) reads only x_{t+1..L-1},
    and free-running position L-1 depends on the code alone, whatever the length."""
    model = get_model("seq2seq", input_shape=(T, C), hidden=8, code_dim=3)
    params = model.init(jax.random.key(0), jnp.zeros((1, T, C)))["params"]
    n = 6
    z = jax.random.normal(jax.random.key(2), (1, 3))
    targets = jax.random.normal(jax.random.key(3), (1, T, C))

    def decode(tg):
        return model.apply({"params": params}, z, train=True, lengths=jnp.array([n]), targets=tg, method="decode")

    jac = np.abs(np.asarray(jax.jit(jax.jacfwd(decode))(targets)))[0, :, :, 0, :, :].sum(axis=(1, 3))  # [t, s]
    for t in range(n):
        for s in range(T):
            reads = t < s < n  # teacher inputs of position t are the later targets of the reversed order
            assert (jac[t, s] > 0) == reads, (t, s, jac[t, s])
    assert np.all(np.asarray(decode(targets))[0, n:] == 0)  # padding output is zero
    free = model.apply({"params": params}, jnp.repeat(z, 2, 0), lengths=jnp.array([9, 4]), method="decode")
    np.testing.assert_allclose(free[0, 8], free[1, 3], rtol=1e-6)


def test_window_starts_cover_every_point_and_refuse_long_windows():
    starts = series.window_starts(53, 8, 3)
    assert starts[0] == 0 and starts[-1] == 53 - 8 and np.all(np.diff(starts) > 0)
    covered = np.zeros(53, bool)
    for s in starts:
        covered[s : s + 8] = True
    assert covered.all()
    with pytest.raises(ValueError, match="longer than the series"):
        series.window_starts(10, 11, 1)


@pytest.mark.parametrize("per_step", [True, False])
def test_point_scores_match_a_direct_loop(per_step):
    num, length = 53, 8
    starts = series.window_starts(num, length, 3)
    rng = np.random.default_rng(0)
    w = rng.random((len(starts), length)) if per_step else rng.random(len(starts))
    want = np.zeros(num)
    for i in range(num):
        vals = [w[j, i - s] if per_step else w[j] for j, s in enumerate(starts) if s <= i < s + length]
        want[i] = np.mean(vals)
    np.testing.assert_allclose(series.point_scores(w, starts, length, num), want, rtol=1e-12)


def test_znorm_uses_valid_training_steps_only():
    x = np.zeros((2, 4, 1))
    x[0, :, 0] = [1, 2, 3, 4]
    x[1, :2, 0], x[1, 2:, 0] = [5, 6], 1e6  # padding must not count
    norm = transforms.Standardizer.fit(x, mask_from_lengths(np.array([4, 2]), 4))
    values = np.array([1, 2, 3, 4, 5, 6.0])
    np.testing.assert_allclose(norm.mean, [values.mean()])
    np.testing.assert_allclose(norm.std, [values.std()])


def test_builders_match_aeons_loaders(tfds_dir):
    from aeon.datasets import load_classification, load_kdd_tsad_135

    from aejax.data.datasets import load_split

    split = load_split("ucr/JapaneseVowels", "train", data_dir=tfds_dir)
    xs, names = load_classification("JapaneseVowels", split="train")  # a list of [12, T_i]
    assert split.x.shape == (270, 29, 12) and split.kind == "series"
    # TFDS stores the records in its own (seeded, shuffled) order: compare the sets of (label, series).
    ours = sorted(
        (int(y), tuple(np.round(x[:n].ravel(), 4)))
        for x, n, y in zip(split.x, split.lengths, split.labels, strict=True)
    )
    theirs = sorted(
        (int(y) - 1, tuple(np.round(x.T.astype(np.float32).ravel(), 4))) for x, y in zip(xs, names, strict=True)
    )
    assert ours == theirs  # classes "1".."9" -> labels 0..8, lengths and values as aeon reads them
    assert all(np.all(x[n:] == 0) for x, n in zip(split.x, split.lengths, strict=True))
    whole = series.load_anomaly_series("kdd_tsad_135", "test", data_dir=tfds_dir)
    prefix = series.load_anomaly_series("kdd_tsad_135", "train", data_dir=tfds_dir)
    values, labels = load_kdd_tsad_135("test")
    np.testing.assert_allclose(whole.values[:, 0], values, rtol=1e-6)
    np.testing.assert_array_equal(np.flatnonzero(whole.anomaly), np.flatnonzero(labels))
    np.testing.assert_array_equal(prefix.values, whole.values[:1200])
    assert prefix.anomaly.sum() == 0


def _synthetic(seed=0, num=2200, prefix=800, start=1500, width=40):
    rng = np.random.default_rng(seed)
    t = np.arange(num)
    x = np.sin(2 * np.pi * t / 40) + 0.05 * rng.normal(size=num)
    x[start : start + width] = np.sin(2 * np.pi * t[start : start + width] / 13)  # a faster rhythm
    labels = np.zeros(num, np.int32)
    labels[start : start + width] = 1
    return x[:prefix, None].astype(np.float32), x[prefix:, None].astype(np.float32), labels[prefix:]


def _small_config(**sequence):
    c = seq2seq.get_config("runlocal,conv1d")
    with c.unlocked():
        c.sequence.update(sequence)
        c.num_train_steps = 100
        c.log_every = c.eval_every = c.checkpoint_every = 100
        c.model.features = (8, 16)
        c.model.code_dim = 6
    return c


def test_injected_anomaly_is_found(tmp_path):
    prefix, rest, labels = _synthetic()
    config = _small_config(window=32, stride=2, score_stride=4)
    data = job.anomaly_data(prefix, rest, labels, window=32, stride=2, score_stride=4, heldout_fraction=0.25)
    model, variables, *_ = job.train(config, data, str(tmp_path))
    apply_fn = sequence_anomaly.reconstruct_fn(model, variables)
    recon, _ = sequence_anomaly.reconstruct(apply_fn, data.test.x)
    err = sequence_anomaly.step_errors(recon, data.test.x)
    held, _ = sequence_anomaly.reconstruct(apply_fn, data.heldout.x)
    gauss = sequence_anomaly.fit_error_gaussian(sequence_anomaly.step_errors(held, data.heldout.x))
    for window_scores in (np.square(err).mean(-1), sequence_anomaly.mahalanobis_scores(gauss, err)):
        scores = series.point_scores(window_scores, data.starts, 32, len(rest))
        assert roc_auc_score(labels, scores) > 0.9


def test_long_window_or_nan_is_an_error_before_training(tmp_path, tfds_dir):
    prefix, rest, labels = _synthetic(num=1000, prefix=400, start=600, width=20)
    kw = dict(stride=2, score_stride=2, heldout_fraction=0.25)
    with pytest.raises(ValueError, match="longer than the series"):
        job.anomaly_data(prefix, rest, labels, window=500, **kw)
    bad = prefix.copy()
    bad[17] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        job.anomaly_data(bad, rest, labels, window=32, **kw)
    with pytest.raises(ValueError, match="NaN"):
        series.to_split(np.full((1, 5, 1), np.nan))
    # Through the job: a window longer than kdd_tsad_135's held-out prefix fails with no checkpoint written.
    config = seq2seq.get_config("runlocal")
    with config.unlocked():
        config.sequence.window = 400
        config.data_dir = tfds_dir
    with pytest.raises(ValueError, match="longer than the series"):
        job.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_runlocal_launch_end_to_end(tmp_path, tfds_dir, assert_figure):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "launch.py",
        "--config=configs/seq2seq.py:runlocal",
        f"--config.data_dir={tfds_dir}",
        f"--workdir={workdir}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((workdir / "results.json").read_text())
    assert r["num_steps"] == 10 and r["dataset"] == "kdd_tsad_135"
    for score in ("recon_error", "encdec_ad"):
        assert 0.0 <= r[f"{score}/roc_auc"] <= 1.0 and 0.0 <= r[f"{score}/range_pr_auc"] <= 1.0
    scores = np.load(workdir / "scores.npz")
    assert scores["encdec_ad"].shape == scores["anomaly"].shape == (7501 - 1200,)
    assert scores["anomaly"].sum() == 12  # the labelled anomaly of InternalBleeding16
    for fig in ("anomaly_scores.png", "reconstructions.png", "loss_curves.png"):
        assert_figure(workdir / fig)
    # --eval_only re-scores the finished run without training: same step, same scores, config.json untouched.
    config_json = (workdir / "config.json").read_text()
    again = runs.reanalyse(str(workdir))
    assert again["num_steps"] == 10 and (workdir / "config.json").read_text() == config_json
    np.testing.assert_allclose(again["encdec_ad/roc_auc"], r["encdec_ad/roc_auc"], rtol=1e-6)
    np.testing.assert_allclose(again["test_sq_err"], r["test_sq_err"], rtol=1e-6)
    with pytest.raises(ValueError, match="no per-run reports"):
        runs.reanalyse(str(workdir), reports="anomaly")


# Identical all-zero series give identical codes, whose PCA embedding (latent.png) divides by zero variance.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_raw_probe_baseline_does_not_see_the_lengths(tmp_path):
    # Two classes that differ only in length, all values zero: nothing but the lengths tells them apart. The raw
    # baseline reads the values only, so it is at chance (with the lengths as a channel it scored 1.0).
    n, t = 32, 8
    labels = (np.arange(n) % 2).astype(np.int32)
    split = Split(np.zeros((n, t, 1), np.float32), labels, mask_from_lengths(np.where(labels, t, 3), t), "series")
    assert job.raw_features(split).shape == (n, t)  # values only, no length channel
    config = seq2seq.get_config("runlocal")
    with config.unlocked():
        config.sequence.task = "classes"
    data = job.SequenceData(split, split)
    model, variables, *_ = job.train(config, data, str(tmp_path))
    out = job._class_results(config, data, model, variables, str(tmp_path))
    assert out["probe_accuracy/raw"] <= 0.5 + 1e-9  # identical rows: the majority class of a balanced set


def test_masked_series_train_alike_one_step_or_five_per_call(tmp_path):
    # The K-step scan gathers x, labels and the mask on the device; a wrong mask row would change the loss.
    rng = np.random.default_rng(0)
    n, t = 32, 8
    lengths = 2 + np.arange(n) % (t - 1)
    mask = mask_from_lengths(lengths, t)
    x = (rng.normal(size=(n, t, 2)) * mask[..., None]).astype(np.float32)
    split = Split(x, np.zeros(n, np.int32), mask, "series")
    params, losses = [], []
    for k in (1, 5):
        config = seq2seq.get_config("runlocal,conv1d")  # compiles in a fraction of the LSTM's time
        with config.unlocked():
            config.steps_per_call = k
        (tmp_path / f"k{k}").mkdir()
        *_, result, _ = job.train(config, job.SequenceData(split, split), str(tmp_path / f"k{k}"))
        assert result.steps_per_call == k
        params.append(jax.device_get(result.state.params))
        losses.append(result.last_eval.means()["nll"])
    for a, b in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    # Training without the mask (padding taken as valid zeros) moves the parameters elsewhere, by far more than
    # the scan's reassociation does: the mask reached the loss on both paths.
    (tmp_path / "nomask").mkdir()
    unmasked = job.train(config, job.SequenceData(split._replace(mask=None), split), str(tmp_path / "nomask"))

    def max_diff(p, q):
        return max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True))

    assert max_diff(jax.device_get(unmasked[4].state.params), params[1]) > max(10 * max_diff(*params), 1e-5)
