"""aejax.analysis.anomaly: ROC / PR AUC of a score against the pairwise definition and sklearn, the kNN
baseline against a brute-force distance, and the DAE's line-integral log-density against a Gaussian's."""

import numpy as np
import pytest
from sklearn import metrics

from aejax.analysis import anomaly


def _pairwise_auc(scores, is_anomaly):
    """P(score of an anomaly > score of a normal example) + P(tie) / 2 (Mann-Whitney), by counting pairs."""
    a, n = scores[is_anomaly], scores[~is_anomaly]
    diff = a[:, None] - n[None, :]
    return (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size


def test_roc_auc_of_a_handmade_case_with_ties_matches_the_pairwise_count_and_sklearn():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.05])
    is_anomaly = np.array([False, True, False, True, False, False, True, True])
    d = anomaly.detection(scores, is_anomaly)
    # Anomalies 0.4, 0.8, 0.9, 0.05 against normals 0.1, 0.35, 0.4, 0.2: 3.5 + 4 + 4 + 0 of 16 pairs.
    assert d.roc_auc == pytest.approx(11.5 / 16)
    assert d.roc_auc == pytest.approx(_pairwise_auc(scores, is_anomaly))
    assert d.roc_auc == pytest.approx(metrics.roc_auc_score(is_anomaly, scores))
    # Average precision = sum_n (R_n - R_{n-1}) P_n over thresholds (ties one threshold). Anomalies by descending
    # score: 0.9, 0.8 (precision 1, 1), 0.4 tied with a normal (3/4), 0.05 after all normals (4/8).
    assert d.pr_auc == pytest.approx((1 + 1 + 3 / 4 + 4 / 8) / 4)
    assert d.pr_auc == pytest.approx(metrics.average_precision_score(is_anomaly, scores))
    # Normals by ascending score: 0.1 (after the anomaly 0.05: 1/2), 0.2 (2/3), 0.35 (3/4), 0.4 tied (4/6).
    assert d.pr_auc_normal == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 6) / 4)
    assert d.anomaly_fraction == 0.5


def test_a_perfectly_separating_score_has_areas_one_and_its_negation_roc_auc_zero():
    rng = np.random.default_rng(0)
    is_anomaly = rng.random(200) < 0.3
    scores = np.where(is_anomaly, rng.uniform(2, 3, 200), rng.uniform(0, 1, 200))
    d = anomaly.detection(scores, is_anomaly)
    assert d.roc_auc == 1.0
    assert d.pr_auc == pytest.approx(1.0, abs=1e-12)  # a mean of precisions that are all 1, in floating point
    assert d.pr_auc_normal == pytest.approx(1.0, abs=1e-12)
    assert anomaly.detection(-scores, is_anomaly).roc_auc == 0.0
    fpr, tpr = anomaly.roc_curve(scores, is_anomaly)
    assert np.trapezoid(tpr, fpr) == pytest.approx(1.0)


def test_a_random_score_has_roc_auc_near_half_and_pr_auc_near_the_anomaly_fraction():
    rng = np.random.default_rng(1)
    is_anomaly = rng.random(20000) < 0.2
    d = anomaly.detection(rng.normal(size=20000), is_anomaly)
    # Standard error of the AUC of an uninformative score ~ sqrt((n_a + n_n + 1) / (12 n_a n_n)) ~ 0.0025.
    assert abs(d.roc_auc - 0.5) < 0.01
    assert abs(d.pr_auc - d.anomaly_fraction) < 0.02


@pytest.mark.parametrize(
    ("scores", "is_anomaly", "match"),
    [
        (np.zeros(3), np.array([True, False]), "same"),
        (np.zeros(2), np.array([1, 0]), "boolean"),
        (np.zeros(2), np.array([True, True]), "both normal and anomalous"),
        (np.array([0.0, np.nan]), np.array([True, False]), "not finite"),
    ],
)
def test_detection_rejects_bad_input(scores, is_anomaly, match):
    with pytest.raises(ValueError, match=match):
        anomaly.detection(scores, is_anomaly)


def test_knn_score_is_the_distance_to_the_kth_nearest_training_example():
    rng = np.random.default_rng(2)
    train_x, test_x = rng.normal(size=(30, 2, 3)), rng.normal(size=(7, 2, 3))
    dist = np.linalg.norm(test_x.reshape(7, 1, -1) - train_x.reshape(1, 30, -1), axis=-1)
    np.testing.assert_allclose(anomaly.knn_scores(train_x, test_x, k=5), np.sort(dist, axis=1)[:, 4], rtol=1e-10)
    with pytest.raises(ValueError, match="must be in"):
        anomaly.knn_scores(train_x, test_x, k=31)


def test_baselines_rank_far_away_points_as_anomalous():
    rng = np.random.default_rng(3)
    # Normal data near a 2-D plane of R^10; the anomalies are off the plane and far from the normal cloud.
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0]
    normal = lambda n: rng.normal(size=(n, 2)) @ basis.T + 0.01 * rng.normal(size=(n, 10))  # noqa: E731
    train_x = normal(200)
    test_x = np.concatenate([normal(50), 4.0 * rng.normal(size=(50, 10))])
    is_anomaly = np.arange(100) >= 50
    scores = anomaly.baseline_scores(train_x, test_x, code_dim=2)
    assert set(scores) == {"pca_2", "isolation_forest", "one_class_svm", "knn_5"}
    for name, s in scores.items():
        assert s.shape == (100,)
        assert anomaly.detection(s, is_anomaly).roc_auc > 0.9, name
    assert "pca_10" not in anomaly.baseline_scores(train_x, test_x, code_dim=10)  # no undercomplete PCA


def test_dae_log_density_of_the_optimal_linear_dae_on_a_gaussian_is_the_smoothed_log_density():
    """For x ~ N(m, s^2 I) and noise N(0, sigma^2 I) the optimal denoiser is Tweedie's r(y) = y + sigma^2 grad log
    p_sigma(y) = m + s^2 / (s^2 + sigma^2) (y - m), p_sigma = N(m, (s^2 + sigma^2) I), so the line integral is
    log p_sigma(x) - log p_sigma(x0) = -(||x - m||^2 - ||x0 - m||^2) / (2 (s^2 + sigma^2)), for images too."""
    s2, sigma = 0.5, 0.4
    rng = np.random.default_rng(5)
    m = rng.normal(size=(3, 4, 1)).astype(np.float32)

    def reconstruct(y):
        return m[None] + s2 / (s2 + sigma**2) * (y - m[None])

    x = rng.normal(size=(9, 3, 4, 1)).astype(np.float32)
    x0 = rng.normal(size=(3, 4, 1)).astype(np.float32)
    want = -(np.sum((x - m) ** 2, axis=(1, 2, 3)) - np.sum((x0 - m) ** 2)) / (2 * (s2 + sigma**2))
    # The field is affine in y, so the integrand is linear in t: every rule from the midpoint (1 node) up is exact.
    for nodes in (1, 2, 8):
        got = anomaly.dae_log_density(reconstruct, x, x0, sigma=sigma, num_nodes=nodes, batch_size=4)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shape of one example"):
        anomaly.dae_log_density(reconstruct, x, x0[0], sigma=sigma)
    with pytest.raises(ValueError, match="sigma"):
        anomaly.dae_log_density(reconstruct, x, x0, sigma=0.0)
