"""The "anomaly" and "inpainting" reports end to end: on finished runlocal runs trained on one digit, through
the re-analysis path (`runs.reanalyse` = `launch.py --eval_only`), numbers checked against independent
sklearn / numpy computations on the run's own data."""

import ml_collections
import numpy as np
import pytest
from sklearn import metrics
from sklearn.neighbors import NearestNeighbors

from aejax import runs, train
from aejax.analysis import inpainting
from aejax.analysis.reports import RunContext
from aejax.analysis.reports import anomaly as anomaly_report
from configs import mnist_ae, vae

NUM_INPAINT = 40  # test images of the inpainting report: enough for the checks, fast


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _one_class(config, data_dir, digit="1"):
    config.unlock()
    config.data_dir = data_dir
    config.train_classes = digit
    config.analysis.reports = ""
    config.analysis.inpainting_images = NUM_INPAINT
    return config.lock()


def test_reports_on_a_finished_autoencoder_run(tmp_path, data_dir, assert_figure):
    workdir = str(tmp_path / "ae")
    train.train_and_evaluate(_one_class(mnist_ae.get_config("runlocal"), data_dir), workdir)
    res = runs.reanalyse(workdir, reports="anomaly,inpainting")

    run = runs.load_run(workdir)
    assert set(np.unique(run.train_split.labels)) == {1}
    is_anomaly = run.test_split.labels != 1
    assert res["anomaly/anomaly_fraction"] == pytest.approx(is_anomaly.mean())
    # kNN baseline, recomputed here with sklearn on the run's own splits.
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    dist = NearestNeighbors(n_neighbors=5).fit(flat(run.train_split.x)).kneighbors(flat(run.test_split.x))[0]
    assert res["anomaly/knn_5/roc_auc"] == pytest.approx(metrics.roc_auc_score(is_anomaly, dist[:, -1]))
    for score in ("reconstruction_error", "pca_8", "isolation_forest", "one_class_svm"):
        assert 0.0 <= res[f"anomaly/{score}/roc_auc"] <= 1.0
    assert "anomaly/neg_elbo/roc_auc" not in res and "anomaly/dae_score/roc_auc" not in res
    assert_figure(f"{workdir}/anomaly_roc.png", min_ink=0.02)
    assert_figure(f"{workdir}/anomaly_extremes.png")

    # The mean fill of the centre square, recomputed: the train mean image on the missing pixels only.
    x = run.test_split.x[:NUM_INPAINT].astype(np.float64)
    missing = inpainting.make_missing("center12", x.shape[1:], len(x), seed=run.config.seed)
    mean = run.train_split.x.astype(np.float64).mean(axis=0)
    want = np.sum(np.where(missing, mean - x, 0.0) ** 2, axis=(1, 2, 3)).mean()
    assert res["inpainting/num_images"] == NUM_INPAINT
    assert res["inpainting/center12/mean/sq_err"] == pytest.approx(want, rel=1e-5)
    for mask in inpainting.MASKS:
        for fill in ("mean", "pca_8", "autoencoder", "one_pass", "code_fit", "code_fit_prior"):
            assert np.isfinite(res[f"inpainting/{mask}/{fill}/psnr"]), (mask, fill)
        assert 1 <= res[f"inpainting/{mask}/autoencoder/iterations"] <= 100
        assert_figure(f"{workdir}/inpainting_{mask}.png")
    assert "inpainting/center12/pseudo_gibbs/sq_err" not in res


def test_reports_on_a_finished_vae_run(tmp_path, data_dir):
    config = _one_class(vae.get_config("runlocal"), data_dir, digit="0,7")
    config.unlock()
    config.vae.eval_samples, config.vae.eval_chunk = 10, 10
    config.lock()
    workdir = str(tmp_path / "vae")
    train.train_and_evaluate(config, workdir)
    res = runs.reanalyse(workdir, reports="anomaly,inpainting")
    assert res["anomaly/normal_classes"] == "0,7" and res["anomaly/main_score"] == "neg_iwae"
    for score in ("neg_elbo", "neg_iwae", "reconstruction_error"):
        assert 0.0 <= res[f"anomaly/{score}/roc_auc"] <= 1.0
    for mask in inpainting.MASKS:
        for fill in ("pseudo_gibbs", "map", "importance"):
            assert np.isfinite(res[f"inpainting/{mask}/{fill}/psnr"]), (mask, fill)
        assert 1.0 <= res[f"inpainting/{mask}/importance/ess"] <= 200.0
    assert "inpainting/center12/code_fit/sq_err" not in res


def test_the_anomaly_report_refuses_a_run_trained_on_every_class():
    config = ml_collections.ConfigDict({"train_classes": ""})
    ctx = RunContext(config, "", None, None, {}, None, None, None)
    with pytest.raises(ValueError, match="config.train_classes"):
        anomaly_report.normal_classes(ctx)
