"""Few-label classification: linear probes in closed-form cases (codes that are the labels, codes that are
noise), the labelled subsets, fine-tuning (the pretrained encoder is transplanted exactly; training goes through
the loop and beats chance), and the "probe" and "finetune" reports on a finished runlocal run."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aejax import loop, runs, train
from aejax.analysis import probe
from aejax.jobs import finetune
from aejax.models import get_model
from configs import mnist_ae

NUM_CLASSES = 10


def _balanced_labels(per_class: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(NUM_CLASSES), per_class))


def test_codes_that_are_the_one_hot_labels_are_probed_perfectly():
    train_y, test_y = _balanced_labels(50, 0), _balanced_labels(30, 1)
    eye = np.eye(NUM_CLASSES)
    reps = {"labels": probe.Representation(eye[train_y], eye[test_y])}
    curves = probe.probe_curves(reps, train_y, test_y, labels_per_class=(1, 10, "all"), seeds=3)
    for n in (1, 10, "all"):
        assert curves["labels"][n]["accuracies"] == [1.0] * (1 if n == "all" else 3)


def test_codes_that_are_noise_are_probed_at_chance():
    # Test codes independent of the (exactly balanced) test labels: the number correct is Binomial-like with
    # mean M / 10 whatever the classifier does; 4 standard deviations of Binomial(M, 0.1).
    rng = np.random.default_rng(0)
    train_y, test_y = _balanced_labels(100, 2), _balanced_labels(200, 3)
    m = len(test_y)
    train_x, test_x = rng.normal(size=(len(train_y), 16)), rng.normal(size=(m, 16))
    acc = probe.probe_accuracy(train_x, train_y, test_x, test_y)
    assert abs(acc - 0.1) < 4 * np.sqrt(0.1 * 0.9 / m)


def test_probe_on_every_principal_component_equals_the_probe_on_pixels():
    # An L2-regularised logistic regression is invariant to a rotation of centred features, and the scaling by the
    # root mean variance is too (the total variance is kept): the same accuracy up to the solver's tolerance.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    train, test = slice(0, 1200), slice(1200, None)
    reps = {
        "pixels": probe.Representation(x[train], x[test]),
        "pca": probe.pca_codes(x[train], x[test], x.shape[1]),
    }
    curves = probe.probe_curves(reps, y[train], y[test], labels_per_class=(10, "all"), seeds=2)
    m = len(y[test])
    for n in (10, "all"):
        np.testing.assert_allclose(curves["pca"][n]["accuracies"], curves["pixels"][n]["accuracies"], atol=2 / m)
        assert curves["pixels"][n]["mean"] > 0.8


def test_labelled_subset_has_n_per_class_and_is_seed_deterministic():
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, size=1000)
    for n in (1, 7, 40):
        rows = probe.labelled_subset(labels, n, seed=3)
        assert len(np.unique(rows)) == len(rows) == n * NUM_CLASSES
        np.testing.assert_array_equal(np.bincount(labels[rows], minlength=NUM_CLASSES), n)
        np.testing.assert_array_equal(rows, probe.labelled_subset(labels, n, seed=3))
        assert not np.array_equal(rows, probe.labelled_subset(labels, n, seed=4))
    np.testing.assert_array_equal(probe.labelled_subset(labels, "all", seed=0), np.arange(1000))
    with pytest.raises(ValueError, match="fewer than n=1000"):
        probe.labelled_subset(labels, 1000, seed=0)
    assert probe.parse_labels_per_class("1, 10,all") == (1, 10, "all")
    with pytest.raises(ValueError, match="positive integers"):
        probe.parse_labels_per_class("1,ten")


@pytest.fixture(scope="module")
def runlocal_run(tmp_path_factory):
    """A finished runlocal run (20 steps) of the main job's config, with a small probe setting."""
    config = mnist_ae.get_config("runlocal")
    config.unlock()
    config.data_dir = str(tmp_path_factory.mktemp("tfds"))
    config.analysis.probe_labels_per_class = "1,all"
    config.analysis.probe_seeds = 2
    config.analysis.finetune_labels_per_class = "10"
    config.analysis.finetune_steps = 60
    config.analysis.pca_baseline = False  # not what is tested here
    config.lock()
    workdir = str(tmp_path_factory.mktemp("run"))
    train.train_and_evaluate(config, workdir)
    return workdir


@pytest.mark.parametrize(
    "name, kwargs, encoder_keys",
    [
        ("mlp", dict(hidden=(12,), code_dim=4), {"encoder_0", "encoder_1"}),
        (
            "conv",
            dict(features=(4,), code_dim=4, batch_norm=True),
            {"encoder_conv_0", "encoder_bn_0", "encoder_code"},
        ),
        ("vae", dict(hidden=(12,), code_dim=4), {"encoder_0", "encoder_mu", "encoder_logvar"}),
    ],
)
def test_transplant_gives_the_classifier_the_pretrained_encoder(name, kwargs, encoder_keys):
    model = get_model(name, input_shape=(8, 8, 1), **kwargs)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    pretrained = jax.jit(model.init)(jax.random.key(1), x[:1])  # jitted: an eager init compiles op by op
    # Non-trivial BatchNorm statistics, so that their transplant is tested too.
    pretrained = jax.tree.map(lambda a: a + 0.5, pretrained) if "batch_stats" in pretrained else pretrained
    classifier = finetune.Classifier(model, num_classes=NUM_CLASSES)
    variables = finetune.transplant(jax.jit(classifier.init)(jax.random.key(5), x[:1]), pretrained)
    assert set(variables["params"]) == {"autoencoder", "head"}
    assert set(variables["params"]["autoencoder"]) == encoder_keys  # the decoder is dropped
    logits, code = jax.jit(classifier.apply)(variables, x)
    assert logits.shape == (16, NUM_CLASSES)
    # The classifier's code is the autoencoder's (for the VAE: the posterior mean).
    np.testing.assert_allclose(code, model.apply(pretrained, x, method="encode"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit the encoder at"):
        finetune.transplant(variables, {"params": {"encoder_0": {"kernel": np.zeros((3, 3))}}})


def test_probe_and_finetune_reports_on_a_finished_run(runlocal_run, assert_figure, monkeypatch):
    calls = []
    real_run = loop.run
    monkeypatch.setattr(loop, "run", lambda **kw: calls.append(kw["desc"]) or real_run(**kw))
    # `launch.py --workdir=DIR --eval_only --reports=probe,finetune` is this call.
    results = runs.reanalyse(runlocal_run, reports="probe,finetune")
    with open(f"{runlocal_run}/results.json") as f:
        assert json.load(f) == results
    assert results["probe/labels_per_class"] == ["1", "all"] and results["probe/code_dim"] == 8
    for rep in ("encoder", "random_init", "pca", "pixels"):
        for n in ("n1", "nall"):
            assert 0.0 <= results[f"probe/{rep}/{n}/accuracy_mean"] <= 1.0
        assert results[f"probe/{rep}/nall/accuracy_std"] == 0.0  # one subset
    # Raw pixels with every label: far above chance (10%) on MNIST digits for any linear classifier worth the name.
    assert results["probe/pixels/nall/accuracy_mean"] > 0.8
    with open(f"{runlocal_run}/probe.json") as f:
        assert len(json.load(f)["encoder"]["n1"]["accuracies"]) == 2
    assert_figure(f"{runlocal_run}/probe.png")

    # Fine-tuning: both starts went through the shared loop (its checkpoints and eval metrics are there); each
    # reported test error is that of its checkpointed classifier, recomputed here with numpy on the test split.
    assert sorted(calls) == ["fine-tune (pretrained, n=10)", "fine-tune (random, n=10)"]
    assert results["finetune/n10/num_labels"] == 100 and results["finetune/num_steps"] == 60
    run = runs.load_run(runlocal_run)
    classifier = finetune.Classifier(run.model, num_classes=NUM_CLASSES)
    for start in ("pretrained", "random"):
        ckpts = f"{runlocal_run}/classifier/{start}_n10/checkpoints"
        assert os.listdir(ckpts) == ["60"]
        params = ocp.StandardCheckpointer().restore(os.path.join(ckpts, "60", "state"))["params"]
        logits, _ = classifier.apply({"params": params}, run.test_split.x)
        error = np.mean(np.argmax(np.asarray(logits), axis=1) != run.test_split.labels)
        assert abs(results[f"finetune/{start}/n10/test_error"] - error) <= 1.5 / len(logits)  # a near-tie at most
        assert error < 0.9 - 4 * np.sqrt(0.09 / 1000)  # and above chance (4 binomial sd of the 1,000 digits)
    assert_figure(f"{runlocal_run}/finetune.png")
