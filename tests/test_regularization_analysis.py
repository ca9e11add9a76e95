"""aejax.analysis.regularization against closed forms, and the sparsity / denoising / contractive reports and
configs end to end on runlocal-sized trained models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import runs, train
from aejax.analysis import regularization as reg
from configs import contractive, denoising, sparse

D, H = 6, 10  # input and code sizes of the linear maps: D <= H so W^T [H, D] has D non-zero singular values


def _linear(w, b):
    """f(x) = x_flat W + b on inputs [B, 2, 3]."""
    w, b = jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)
    return lambda x: x.reshape(x.shape[0], -1) @ w + b[None, :]


@pytest.fixture
def linear_map():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(D, H)), rng.normal(size=H)
    x = rng.uniform(size=(7, 2, 3)).astype(np.float32)  # 7 points: chunks of 3 exercise the padding
    return w, b, x


def test_jacobian_norm_of_linear_encoder_is_frobenius_norm_of_w(linear_map):
    w, b, x = linear_map
    norms = reg.jacobian_norms(_linear(w, b), x, chunk_size=3)
    np.testing.assert_allclose(norms, np.full(len(x), np.linalg.norm(w)), rtol=1e-5)


def test_jacobian_norm_of_sigmoid_layer_is_rifai_closed_form():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(D, H)), rng.normal(size=H)
    x = rng.uniform(size=(5, 2, 3))
    h = 1.0 / (1.0 + np.exp(-(x.reshape(5, -1) @ w + b)))  # [5, H], numpy float64
    closed_form = np.sum((h * (1 - h)) ** 2 * np.sum(w**2, axis=0)[None, :], axis=1)
    lin = _linear(w, b)
    norms = reg.jacobian_norms(lambda xb: jax.nn.sigmoid(lin(xb)), x.astype(np.float32), chunk_size=2)
    np.testing.assert_allclose(norms**2, closed_form, rtol=1e-4)


@pytest.mark.parametrize("shape", [(4, 9), (9, 4)])
def test_singular_values_match_numpy_svd(shape):
    jac = np.random.default_rng(2).normal(size=(3, *shape))
    np.testing.assert_allclose(reg.singular_values(jac), np.linalg.svd(jac, compute_uv=False), rtol=1e-8)


def test_jacobian_spectrum_of_linear_encoder_is_spectrum_of_w(linear_map):
    w, b, x = linear_map
    spectrum = reg.jacobian_spectrum(_linear(w, b), x, chunk_size=3)
    np.testing.assert_allclose(spectrum, np.linalg.svd(w, compute_uv=False), rtol=1e-4)


def test_contraction_ratio_of_linear_map_is_norm_of_w_transpose_u(linear_map):
    w, b, x = linear_map
    u = np.random.default_rng(3).normal(size=x.shape)
    u = (u / np.linalg.norm(u.reshape(len(u), -1), axis=1)[:, None, None]).astype(np.float32)
    radii = (0.1, 1.0, 5.0)
    ratios = reg.contraction_ratios(_linear(w, b), x, radii, directions=u, chunk_size=3)
    expected = np.linalg.norm(u.reshape(len(u), -1).astype(np.float64) @ w, axis=1)  # ||W^T u|| per point
    assert ratios.shape == (3, len(x))
    np.testing.assert_allclose(ratios, np.broadcast_to(expected[None, :], ratios.shape), rtol=1e-3)


def test_contraction_ratio_with_random_directions_lies_between_extreme_singular_values(linear_map):
    w, b, x = linear_map
    s = np.linalg.svd(w, compute_uv=False)
    ratios = reg.contraction_ratios(_linear(w, b), x, (0.5, 2.0), rng=jax.random.key(0))
    assert np.all(ratios >= s.min() * (1 - 1e-3)) and np.all(ratios <= s.max() * (1 + 1e-3))
    u = reg.random_unit_directions(jax.random.key(1), (50, 2, 3))
    np.testing.assert_allclose(np.linalg.norm(u.reshape(50, -1), axis=1), 1.0, rtol=1e-6)


def test_contraction_ratio_rejects_bad_arguments(linear_map):
    w, b, x = linear_map
    f = _linear(w, b)
    with pytest.raises(ValueError, match="exactly one"):
        reg.contraction_ratios(f, x, (1.0,))
    with pytest.raises(ValueError, match="positive"):
        reg.contraction_ratios(f, x, (0.0,), rng=jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        reg.contraction_ratios(f, x, (1.0,), directions=np.ones((2, 2, 3), np.float32))


def test_saturated_fraction_on_constructed_activations():
    h = np.array([[0.01, 0.04, 0.05, 0.5], [0.95, 0.96, 0.999, 0.2]])  # 0.05 and 0.95 are not saturated
    assert reg.saturated_fraction(h) == 4 / 8
    assert reg.saturated_fraction(h, low=0.3, high=0.7) == 7 / 8
    with pytest.raises(ValueError):
        reg.saturated_fraction(h, low=0.9, high=0.1)


def test_psnr_formula():
    x = np.zeros((2, 4, 4, 1))
    np.testing.assert_allclose(reg.psnr(x + 0.1, x), [20.0, 20.0])  # 10 log10(1 / 0.01)
    np.testing.assert_allclose(reg.psnr(x + 1.0, x, max_value=255.0), 20 * np.log10(255.0))
    assert np.isinf(reg.psnr(x, x)).all()
    with pytest.raises(ValueError, match="same shape"):
        reg.psnr(x[:1], x)


def test_code_statistics_on_constructed_codes():
    z = np.array([[0.0, 2.0, 0.01], [0.0, 4.0, 1.0]])
    s = reg.code_statistics(z, zero_tol=0.05, bins=4)
    assert s.mean_activation == pytest.approx(7.01 / 6)
    np.testing.assert_allclose(s.unit_means, [0.0, 3.0, 0.505])
    assert s.fraction_near_zero == pytest.approx(3 / 6)
    assert s.hist_counts.sum() == 6 and s.hist_edges[0] == 0.0 and s.hist_edges[-1] == 4.0
    with pytest.raises(ValueError):
        reg.code_statistics(np.zeros(3))


def test_denoising_error_of_identity_and_zero_maps():
    n, d, nu, sigma = 20, 100, 0.25, 0.2
    x = np.ones((n, 10, 10, 1), np.float32)
    masked = reg.denoising_error(lambda xb: xb, x, "masking", jax.random.key(0), nu=nu, chunk_size=8)
    np.testing.assert_allclose(masked.sq_err, masked.corrupted_sq_err)  # identity = no denoising
    # Masking ones: the squared error counts the zeroed pixels, Binomial(n d, nu); 5 standard deviations.
    assert abs(masked.sq_err.sum() - nu * n * d) < 5 * np.sqrt(n * d * nu * (1 - nu))
    zero = reg.denoising_error(jnp.zeros_like, x, "gaussian", jax.random.key(1), sigma=sigma)
    np.testing.assert_allclose(zero.sq_err, np.full(n, d))  # ||0 - 1||^2 summed over 100 pixels
    np.testing.assert_allclose(zero.psnr, 0.0, atol=1e-12)
    # Gaussian: ||x~ - x||^2 / sigma^2 ~ chi^2 with n d degrees of freedom (mean n d, sd sqrt(2 n d)).
    assert abs(zero.corrupted_sq_err.sum() / sigma**2 - n * d) < 5 * np.sqrt(2 * n * d)
    with pytest.raises(KeyError, match="Known corruptions"):
        reg.denoising_error(jnp.zeros_like, x, "blur", jax.random.key(0))


def test_config_variants_build_and_reject_bad_combinations():
    assert sparse.get_config("l1").regularizers.to_dict() == {"l1_activity": {"weight": sparse.L1_WEIGHT}}
    assert sparse.get_config("kl").regularizers.kl_sparsity.rho == 0.05
    assert not sparse.get_config("kl,plain").regularizers
    for name in ("gaussian", "masking", "salt_and_pepper"):
        assert denoising.get_config(name).corruption.name == name
    emph = denoising.get_config("emphasized").corruption
    assert (emph.name, emph.emphasis_alpha, emph.emphasis_beta) == ("masking", 1.0, 0.5)
    assert denoising.get_config("plain").corruption.name == "none"
    assert contractive.get_config("hutchinson").regularizers.contractive.method == "hutchinson"
    assert contractive.get_config("exact,quick").model.code_dim == 100
    assert set(contractive.get_config("cae_h").regularizers) == {"contractive", "contractive_higher_order"}
    for module, bad in ((sparse, "l1,kl"), (denoising, "gaussian,masking"), (contractive, "exact,nope")):
        with pytest.raises(ValueError):
            module.get_config(bad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One runlocal-sized KL-sparse sigmoid layer (784-16) trained for 20 steps, with all three reports."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    workdir = tmp_path_factory.mktemp("run")
    config = sparse.get_config("kl,runlocal")
    config.data_dir = data_dir
    config.analysis.pca_baseline = False  # not what these tests check; saves a PCA fit
    config.analysis.reports = "sparsity,denoising,contractive"
    with config.unlocked():  # the contractive report's fields, which the sparse config does not define
        config.analysis.jacobian_points = 20
        config.analysis.spectrum_points = 1  # the spectrum of one point: sum s^2 = ||J||_F^2
    results = train.train_and_evaluate(config, str(workdir))
    run = runs.load_run(str(workdir))  # the trained parameters and the test digits as the model saw them
    assert run.step == 20
    return workdir, results, run.variables["params"], run.test_split.x


def test_sparsity_report_on_a_trained_model(trained, assert_figure):
    workdir, results, params, images = trained
    for name in ("sparsity_histogram.png", "sparsity_filters.png"):
        assert_figure(workdir / name)
    # Independent: the sigmoid codes from the trained parameters, in numpy float64.
    w, b = np.asarray(params["encoder_0"]["kernel"], np.float64), np.asarray(params["encoder_0"]["bias"])
    h = 1.0 / (1.0 + np.exp(-(images.reshape(len(images), -1) @ w + b)))
    assert results["sparsity/mean_activation"] == pytest.approx(h.mean(), rel=1e-4)
    assert results["sparsity/rho"] == 0.05
    hist = np.load(workdir / "sparsity.npz")
    assert hist["hist_counts"].sum() == h.size


def test_denoising_report_on_a_trained_model(trained, assert_figure):
    workdir, results, _, _ = trained
    assert_figure(workdir / "denoising.png")
    for name in ("gaussian", "masking", "salt_and_pepper"):
        assert np.isfinite(results[f"denoising/{name}/sq_err"]) and results[f"denoising/{name}/psnr"] > 0
    # 25% masking of the test digits zeroes ~25% of their squared pixel mass (~100 per digit).
    assert 10 < results["denoising/masking/corrupted_sq_err"] < 50
    # Gaussian sigma = 0.3 on 784 pixels: E ||x~ - x||^2 = 784 * 0.09 = 70.56 (1000 images; 5 sd of chi^2).
    assert abs(results["denoising/gaussian/corrupted_sq_err"] - 70.56) < 5 * 0.09 * np.sqrt(2 * 784 / 1000)


def test_contractive_report_matches_closed_form_of_trained_sigmoid_layer(trained, assert_figure):
    workdir, results, params, images = trained
    assert_figure(workdir / "contractive.png")
    arrays = np.load(workdir / "contractive.npz")
    n = len(arrays["jacobian_norms"])
    # Independent: Rifai's closed form from the trained parameters, in numpy float64.
    w, b = np.asarray(params["encoder_0"]["kernel"], np.float64), np.asarray(params["encoder_0"]["bias"])
    h = 1.0 / (1.0 + np.exp(-(images[:n].reshape(n, -1) @ w + b)))
    closed = np.sqrt(np.sum((h * (1 - h)) ** 2 * np.sum(w**2, axis=0)[None, :], axis=1))
    np.testing.assert_allclose(arrays["jacobian_norms"], closed, rtol=1e-4)
    assert results["contractive/mean_jacobian_norm"] == pytest.approx(closed.mean(), rel=1e-4)
    # ||J||_F^2 is the sum of the squared singular values (the spectrum of the first point).
    assert np.sum(arrays["spectrum"] ** 2) == pytest.approx(closed[0] ** 2, rel=1e-3)
    assert 0.0 <= results["contractive/saturated_fraction"] <= 1.0
    assert arrays["ratios"].shape == (len(arrays["radii"]), n) and np.all(arrays["ratios"] > 0)
