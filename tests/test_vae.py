"""The VAE, its learned-variance likelihood and the ELBO / IWAE bounds, against closed forms and independent
estimates (scipy, numpy Monte Carlo, finite differences)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aejax import runs, train
from aejax.analysis.reports import ppca, vae_figures
from aejax.data.batch import Batch
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.models.vae import LOGVAR_BOUND
from aejax.objectives import elbo
from configs import vae as vae_config

D, K, B = 6, 2, 8
H = 1e-2  # finite-difference step (float32 parameters)


def _tiny_vae(seed=0, **kwargs):
    model = get_model("vae", input_shape=(D,), hidden=(5,), code_dim=K, activation="tanh", **kwargs)
    x = np.random.default_rng(seed).uniform(size=(B, D)).astype(np.float32)
    params = model.init(jax.random.key(seed), jnp.asarray(x))["params"]
    return model, {"params": params}, x


def _raw(logvar):
    """The unconstrained parameter whose bounded log-variance is `logvar`."""
    return np.float32(LOGVAR_BOUND * np.arctanh(logvar / LOGVAR_BOUND))


def test_gaussian_learned_nll_is_scipy_normal_logpdf():
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    x = rng.normal(size=(4, 3, 2))
    out = np.stack([mean, logvar], axis=-1).astype(np.float32)
    lik = get_likelihood("gaussian_learned")
    expected = -stats.norm.logpdf(x, mean, np.exp(0.5 * logvar)).reshape(4, -1).sum(1)
    np.testing.assert_allclose(lik.nll(out, x.astype(np.float32)), expected, rtol=1e-5)
    np.testing.assert_allclose(lik.mean(out), mean, rtol=1e-6)


@pytest.mark.parametrize("variance", ["fixed", "scalar", "per_dim"])
def test_forward_shapes_and_sampling_stream(variance):
    model, variables, x = _tiny_vae(decoder_variance=variance)
    out = model.apply(variables, x)
    extra = () if variance == "fixed" else (2,)
    assert out.decoder_output.shape == (B, D, *extra)
    np.testing.assert_array_equal(out.code, out.posterior_mean)  # z = mu at evaluation
    np.testing.assert_array_equal(model.apply(variables, x, method="encode"), out.posterior_mean)
    draw = lambda key, **kw: model.apply(variables, x, rngs={"sample": jax.random.key(key)}, **kw).code  # noqa: E731
    np.testing.assert_array_equal(draw(1, train=True), draw(1, sample=True))  # one stream, one draw
    assert np.all(np.asarray(draw(1, train=True)) != np.asarray(draw(2, train=True)))
    # z - mu scaled by the posterior standard deviation is standard normal (a large batch of one input).
    many = np.repeat(x[:1], 4000, axis=0)
    mu, logvar = model.apply(variables, many, method="posterior")
    eps = (model.apply(variables, many, sample=True, rngs={"sample": jax.random.key(3)}).code - mu) / np.exp(
        0.5 * logvar
    )
    assert stats.kstest(np.asarray(eps).ravel(), "norm").pvalue > 1e-3


def test_kl_matches_monte_carlo_within_standard_error():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    n = 200_000
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(n, 3, 4))
    log_ratio = (stats.norm.logpdf(z, mu, np.exp(0.5 * logvar)) - stats.norm.logpdf(z)).sum(-1)  # [n, 3]
    mc, se = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(n)
    kl = np.asarray(elbo.gaussian_kl(jnp.asarray(mu, jnp.float32), jnp.asarray(logvar, jnp.float32)))
    assert np.all(np.abs(kl - mc) < 4 * se + 1e-4), (kl, mc, se)


def test_iwae_1_is_the_elbo_on_average_and_iwae_k_grows_with_k():
    model, variables, x = _tiny_vae(seed=2)
    lik = get_likelihood("bernoulli")
    xb = (x > 0.5).astype(np.float32)
    mu, logvar = model.apply(variables, xb, method="posterior")
    n = 20_000
    eps = jax.random.normal(jax.random.key(3), (n, B, K))
    log_w, log_px_z = elbo.log_weights(model, variables, lik, xb, mu, logvar, eps)
    iwae1 = np.asarray(log_w)  # [n, B]: n independent IWAE_1 draws
    analytic = np.asarray(log_px_z).mean(0) - np.asarray(elbo.gaussian_kl(mu, logvar))
    # iwae1 - analytic is a Monte Carlo estimate of E[log p(z) - log q(z)] + KL = 0: its standard error.
    se = (iwae1 - np.asarray(log_px_z)).std(0) / np.sqrt(n)
    assert np.all(np.abs(iwae1.mean(0) - analytic) < 4 * se), (iwae1.mean(0), analytic, se)
    # IWAE_k on disjoint groups of the same draws: the mean over groups is non-decreasing in k.
    means = {}
    for k in (1, 10, 100, 1000):
        groups = iwae1[: n // k * k].reshape(n // k, k, B)
        means[k] = (jax.nn.logsumexp(groups, axis=1) - np.log(k)).mean(0)
    for small, large in [(1, 10), (10, 100), (100, 1000)]:
        assert np.all(means[large] >= means[small] - 1e-3), (small, large, means)
    assert np.all(means[1000] > analytic + 1e-3)


def test_chunked_iwae_equals_unchunked():
    model, variables, x = _tiny_vae(seed=4, decoder_variance="scalar")
    lik = get_likelihood("gaussian_learned")
    key = jax.random.key(5)
    one = elbo.importance_bound(model, variables, lik, x, key, num_samples=120, chunk=120)
    many = elbo.importance_bound(model, variables, lik, x, key, num_samples=120, chunk=8)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divide"):
        elbo.importance_bound(model, variables, lik, x, key, num_samples=120, chunk=7)


def _linear_gaussian(w, b, s2, enc_kernel, enc_bias, enc_logvar):
    """A linear VAE with decoder N(x; W z + b, s2 I) and q(z | x) = N(A x + c, diag exp(enc_logvar))."""
    d, k = w.shape
    model = get_model("vae", input_shape=(d,), code_dim=k, linear=True, decoder_variance="scalar")
    params = {
        "encoder_mu": {"kernel": enc_kernel.astype(np.float32), "bias": enc_bias.astype(np.float32)},
        "encoder_logvar": {"kernel": np.zeros((d, k), np.float32), "bias": _raw(enc_logvar)},
        "decoder_0": {"kernel": w.T.astype(np.float32), "bias": b.astype(np.float32)},
        "decoder_logvar": _raw(np.log(s2)),
    }
    shapes = jax.tree.map(np.shape, model.init(jax.random.key(0), jnp.zeros((1, d)))["params"])
    assert jax.tree.map(np.shape, params) == shapes
    return model, {"params": params}


def _exact_posterior(w, b, s2, x):
    """Mean [N, K] and covariance [K, K] of p(z | x) for the linear-Gaussian model."""
    cov = np.linalg.inv(w.T @ w / s2 + np.eye(w.shape[1]))
    return (x - b) @ w @ cov.T / s2, cov


def _exactly_encoded_linear_gaussian(seed):
    """A linear VAE whose q(z | x) is the exact posterior, with data x [B, D] and log p(x) [B] from scipy."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, K)))
    w, b, s2 = q * np.array([2.0, 0.7]), rng.normal(size=D), 0.3  # orthogonal columns: diagonal posterior
    x = rng.multivariate_normal(b, w @ w.T + s2 * np.eye(D), size=B)
    a = np.linalg.inv(w.T @ w / s2 + np.eye(K)) @ w.T / s2  # posterior mean = A (x - b)
    _, cov = _exact_posterior(w, b, s2, x)
    model, variables = _linear_gaussian(w, b, s2, a.T, -a @ b, np.log(np.diag(cov)))
    return model, variables, x, stats.multivariate_normal(b, w @ w.T + s2 * np.eye(D)).logpdf(x)


def test_training_losses_are_minus_log_p_x_under_the_exact_posterior():
    model, variables, x, log_px = _exactly_encoded_linear_gaussian(14)
    lik = get_likelihood("gaussian_learned")
    batch = Batch(x=jnp.asarray(x, jnp.float32), label=jnp.zeros(B, jnp.int32))
    iwae_loss = elbo.make_loss_fn(model, lik, beta=1.0, train_samples=7)
    loss, _ = iwae_loss(variables["params"], {}, batch, jax.random.key(0), jnp.int32(0))
    np.testing.assert_allclose(float(loss), -log_px.mean(), rtol=1e-4, atol=1e-3)  # every weight is p(x)
    # k = 1 uses the analytic KL, so only its expectation over the sample is -log p(x): within 4 standard errors.
    elbo_loss = elbo.make_loss_fn(model, lik, beta=1.0)
    draws = np.array(
        [float(elbo_loss(variables["params"], {}, batch, jax.random.key(i), jnp.int32(0))[0]) for i in range(200)]
    )
    assert abs(draws.mean() + log_px.mean()) < 4 * draws.std() / np.sqrt(len(draws)) + 1e-3
    warm = elbo.from_config(vae_config.get_config("linear"), model, lik)  # beta = 1, no warm-up
    config = vae_config.get_config("linear")
    config.vae.kl_warmup_steps = 10
    cold = elbo.from_config(config, model, lik)
    key, step0 = jax.random.key(0), jnp.int32(0)
    loss_warm, (m_warm, _) = warm.loss_fn(variables["params"], {}, batch, key, step0)
    loss_cold, (m_cold, _) = cold.loss_fn(variables["params"], {}, batch, key, step0)
    assert float(m_cold["beta"]) == 0.0 and float(m_warm["beta"]) == 1.0
    np.testing.assert_allclose(float(loss_cold), float(m_warm["loss/recon_nll"]), rtol=1e-6)
    np.testing.assert_allclose(float(loss_warm - loss_cold), float(m_warm["loss/kl"]), rtol=1e-5)


def test_exact_posterior_makes_every_bound_log_p_x():
    model, variables, x, log_px = _exactly_encoded_linear_gaussian(6)
    lik = get_likelihood("gaussian_learned")
    iwae, mean_log_px_z = elbo.importance_bound(
        model, variables, lik, x.astype(np.float32), jax.random.key(7), num_samples=4, chunk=1
    )
    mu, logvar = model.apply(variables, x.astype(np.float32), method="posterior")
    np.testing.assert_allclose(iwae, log_px, rtol=1e-4, atol=1e-3)  # every weight is p(x) exactly
    eps = jax.random.normal(jax.random.key(8), (3, B, K))
    log_w, _ = elbo.log_weights(model, variables, lik, x.astype(np.float32), mu, logvar, eps)
    np.testing.assert_allclose(log_w, np.broadcast_to(log_px, (3, B)), rtol=1e-4, atol=1e-3)


def test_iwae_approaches_exact_log_likelihood_of_a_linear_gaussian_model():
    rng = np.random.default_rng(9)
    w, b, s2 = rng.normal(size=(D, K)), rng.normal(size=D), 0.5  # correlated posterior: q is only diagonal
    x = rng.multivariate_normal(b, w @ w.T + s2 * np.eye(D), size=B)
    _, cov = _exact_posterior(w, b, s2, x)
    a = cov @ w.T / s2
    # A deliberately loose q: the right mean, twice the posterior's marginal variances, no correlation.
    model, variables = _linear_gaussian(w, b, s2, a.T, -a @ b, np.log(2 * np.diag(cov)))
    log_px = stats.multivariate_normal(b, w @ w.T + s2 * np.eye(D)).logpdf(x)
    lik, xf = get_likelihood("gaussian_learned"), x.astype(np.float32)
    gaps = {}
    for k in (1, 5000):
        iwae, _ = elbo.importance_bound(
            model, variables, lik, xf, jax.random.key(k), num_samples=k, chunk=min(k, 500)
        )
        gaps[k] = log_px - np.asarray(iwae)
    mu, logvar = model.apply(variables, xf, method="posterior")
    elbo_gap = log_px - (
        elbo.importance_bound(model, variables, lik, xf, jax.random.key(1), num_samples=2000, chunk=500)[1]
        - elbo.gaussian_kl(mu, logvar)
    )
    assert np.mean(elbo_gap) > 0.05  # the ELBO is visibly loose for this q
    assert np.all(np.abs(gaps[5000]) < 0.02), gaps[5000]
    assert np.mean(gaps[5000]) < 0.2 * np.mean(elbo_gap)


def test_reparameterised_elbo_gradient_matches_central_differences():
    model, variables, x = _tiny_vae(seed=10, decoder_variance="scalar")
    lik = get_likelihood("gaussian_learned")
    loss_fn = elbo.make_loss_fn(model, lik, beta=1.0)
    batch = Batch(x=jnp.asarray(x), label=jnp.zeros(B, jnp.int32))
    key = jax.random.key(11)  # fixed eps: the loss is a deterministic function of the parameters

    def loss(params):
        return loss_fn(params, {}, batch, key, jnp.int32(0))[0]

    params = variables["params"]
    grads = jax.grad(loss)(params)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(12)
    for _ in range(3):
        v = treedef.unflatten([rng.normal(size=np.shape(p)).astype(np.float32) for p in leaves])
        plus = jax.tree.map(lambda p, d: p + H * d, params, v)
        minus = jax.tree.map(lambda p, d: p - H * d, params, v)
        fd = (float(loss(plus)) - float(loss(minus))) / (2 * H)
        directional = sum(
            float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(v), strict=True)
        )
        assert abs(fd - directional) < 1e-2 * max(1.0, abs(directional)), (fd, directional)


@pytest.mark.parametrize(
    "arg", ["", "code2", "digits", "linear", "runlocal,code2", "linear,runlocal", "conv", "conv,digits"]
)
def test_config_variants_build_a_vae_that_fits_its_likelihood(arg):
    config = vae_config.get_config(arg)
    shape = (8, 8, 1) if config.dataset == "digits" else (28, 28, 1)
    model = get_model(config.model_name, input_shape=shape, **config.model)
    objective = elbo.from_config(config, model, get_likelihood(config.likelihood))
    assert callable(objective.loss_fn) and callable(objective.eval_fn)
    expected_k = (
        2 if "code2" in arg else 10 if "linear" in arg else 8 if "digits" in arg or "runlocal" in arg else 20
    )
    assert config.model.code_dim == expected_k


def test_mismatched_likelihood_and_model_are_refused():
    config = vae_config.get_config("linear")
    model = get_model("vae", input_shape=(D,), code_dim=K, linear=True, decoder_variance="scalar")
    with pytest.raises(ValueError, match="gaussian_learned"):
        elbo.from_config(config, model, get_likelihood("gaussian"))
    with pytest.raises(ValueError, match="needs a VAE"):
        elbo.from_config(config, get_model("mlp", input_shape=(D,)), get_likelihood("gaussian_learned"))


def test_ppca_log_lik_is_the_gaussian_of_the_tipping_bishop_solution():
    rng = np.random.default_rng(13)
    train_x = rng.normal(size=(300, 7)) @ rng.normal(size=(7, 7)) + 1.0
    test_x = rng.normal(size=(50, 7)) @ rng.normal(size=(7, 7))
    k = 3
    evals, evecs = np.linalg.eigh(np.cov(train_x, rowvar=False))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s2 = evals[k:].mean()  # ML noise variance: the mean discarded eigenvalue (Tipping & Bishop 1999, eq. 8)
    w = evecs[:, :k] * np.sqrt(evals[:k] - s2)
    expected = stats.multivariate_normal(train_x.mean(0), w @ w.T + s2 * np.eye(7)).logpdf(test_x).mean()
    np.testing.assert_allclose(ppca.ppca_log_lik(train_x, test_x, k), expected, rtol=1e-8)


def test_tile_and_manifold_grid():
    images = np.arange(6 * 2 * 3).reshape(6, 2, 3)
    big = vae_figures.tile(images, 2, 3)
    for i in range(6):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(big[2 * r : 2 * r + 2, 3 * c : 3 * c + 3], images[i])
    grid = vae_figures.manifold_grid(3).reshape(3, 3, 2)
    q = stats.norm.ppf([0.05, 0.5, 0.95])
    np.testing.assert_allclose(grid[0, :, 0], q, rtol=1e-6, atol=1e-7)  # first coordinate left to right
    np.testing.assert_allclose(grid[:, 0, 1], q[::-1], rtol=1e-6, atol=1e-7)  # second coordinate bottom to top


def test_runlocal_code2_writes_finite_bounds(tmp_path, assert_figure):
    config = vae_config.get_config("runlocal,code2")
    config.data_dir = str(tmp_path / "tfds")
    workdir = str(tmp_path / "run")
    results = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        written = json.load(f)
    assert written["code_dim"] == 2
    for key in ("test_elbo", "test_iwae", "test_kl", "test_recon_nll", "test_sq_err"):
        assert np.isfinite(written[key]), key
    assert written["test_iwae"] >= written["test_elbo"]
    assert written["test_kl"] >= 0
    # The test KL, recomputed in float64 from the trained posterior on the test split (closed form
    # KL(N(mu, s^2) || N(0, I)) = 1/2 sum(mu^2 + s^2 - 1 - log s^2), Kingma & Welling 2014, appendix B).
    run = runs.load_run(workdir)
    mu, logvar = (
        np.asarray(a, np.float64) for a in run.model.apply(run.variables, run.test_split.x, method="posterior")
    )
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1.0 - logvar, axis=1).mean()
    np.testing.assert_allclose(results["test_kl"], kl, rtol=1e-4)
    assert written["vae_figures/manifold_drawn"] == 1
    assert written["vae_figures/interpolation_pairs"] == 8
    assert written["eval_time_s"] > 0
    assert_figure(os.path.join(workdir, "prior_samples.png"))
    assert_figure(os.path.join(workdir, "manifold.png"))
    assert_figure(os.path.join(workdir, "interpolation.png"))


def test_interpolation_runs_straight_between_the_pair_at_equal_steps():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    path = vae_figures.interpolation_codes(a, b, 5).reshape(4, 5, 3)
    np.testing.assert_allclose(path[:, 0], a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(path[:, -1], b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.diff(path, axis=1), np.repeat((b - a)[:, None] / 4, 4, axis=1), atol=1e-6)
    with pytest.raises(ValueError, match="steps >= 2"):
        vae_figures.interpolation_codes(a, b, 1)
    labels = np.array([0, 0, 1, 2, 2, 3])
    pairs = vae_figures.interpolation_pairs(labels, 5, seed=0)
    assert pairs.shape == (5, 2) and np.all(labels[pairs[:, 0]] != labels[pairs[:, 1]])
    np.testing.assert_array_equal(pairs, vae_figures.interpolation_pairs(labels, 5, seed=0))
    assert vae_figures.interpolation_pairs(np.zeros(4), 3, seed=0).shape == (0, 2)


@pytest.mark.parametrize("variance", ["fixed", "per_dim"])
def test_conv_vae_decodes_with_the_conv_autoencoders_layers(variance):
    """The conv VAE's decoder is ConvAutoencoder.decode with the same parameters, and its posterior heads read
    ConvAutoencoder.trunk: so the two families share their layers, not copies of them."""
    shape = (8, 8, 1)
    vae = get_model("conv_vae", input_shape=shape, features=(3, 4), code_dim=K, decoder_variance=variance)
    x = np.random.default_rng(5).uniform(size=(B, *shape)).astype(np.float32)
    params = vae.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, jnp.asarray(x))["params"]
    ae = get_model("conv", input_shape=shape, features=(3, 4), code_dim=K)
    z = np.random.default_rng(6).normal(size=(B, K)).astype(np.float32)
    out = vae.apply({"params": params}, z, method="decode")
    mean = out if variance == "fixed" else out[..., 0]
    assert out.shape == ((B, *shape) if variance == "fixed" else (B, *shape, 2))
    np.testing.assert_allclose(mean, ae.apply({"params": params["layers"]}, z, method="decode"), rtol=1e-6)
    mu, logvar = vae.apply({"params": params}, jnp.asarray(x), method="posterior")
    h = np.asarray(ae.apply({"params": params["layers"]}, jnp.asarray(x), method="trunk"))
    head = params["encoder_mu"]
    np.testing.assert_allclose(mu, h @ np.asarray(head["kernel"]) + np.asarray(head["bias"]), rtol=1e-5, atol=1e-5)
    assert logvar.shape == (B, K) and "encoder_code" not in params["layers"]


def test_runlocal_conv_vae_trains_and_bounds(tmp_path):
    config = vae_config.get_config("runlocal,conv,digits")  # 8 x 8 digits keep the conv decoder passes cheap
    config.data_dir = str(tmp_path / "tfds")
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["code_dim"] == 8
    assert np.isfinite(results["test_iwae"]) and results["test_iwae"] >= results["test_elbo"]
    assert results["vae_figures/interpolation_pairs"] == 8


def test_active_units_count_the_coordinates_whose_posterior_mean_varies():
    from aejax.analysis.reports import active_units

    rng = np.random.default_rng(0)
    # Two informative units (variance 1 and 0.04 across inputs), two collapsed ones (variance 1e-4 and 0).
    mu = np.stack([rng.normal(0, 1, 5000), rng.normal(0, 0.2, 5000), rng.normal(0, 0.01, 5000), np.zeros(5000)], 1)
    a = active_units.activity(mu)
    np.testing.assert_allclose(a, [1.0, 0.04, 1e-4, 0.0], rtol=0.1, atol=1e-12)
    assert int(np.sum(a > active_units.THRESHOLD)) == 2
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        active_units.activity(np.zeros(5))
