"""The linear autoencoder learns the PCA subspace (Baldi & Hornik 1989), and uniform code quantisation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.decomposition import PCA

from aejax.analysis import compression, pca
from aejax.likelihoods import get_likelihood
from aejax.models import get_model


def _train_linear_ae(x: np.ndarray, k: int, steps: int = 5000, lr: float = 0.05):
    """Full-batch Adam (cosine-decayed step size) on the Gaussian NLL (squared error / 2 + const) of the
    `mlp` model with no hidden layer."""
    model = get_model("mlp", input_shape=(x.shape[1],), hidden=(), code_dim=k, code_activation="linear")
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
    nll = get_likelihood("gaussian").nll
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
    xj = jnp.asarray(x, jnp.float32)

    def loss(p):
        return nll(model.apply({"params": p}, xj).decoder_output, xj).mean()

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps))(params)
    return model, params


def test_linear_autoencoder_spans_the_pca_subspace_and_matches_its_error():
    rng = np.random.default_rng(0)
    # 10-D data with a clear gap after the 3rd principal direction (std 4, 3, 2 | 0.5 ...), rotated and shifted.
    basis, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    stds = np.array([4.0, 3.0, 2.0] + [0.5] * 7)
    x = (rng.standard_normal((400, 10)) * stds) @ basis.T + 3.0
    model, params = _train_linear_ae(x, 3)
    angles = compression.subspace_angles_to_pca(np.asarray(params["decoder_0"]["kernel"]), x)
    assert angles.shape == (3,) and angles.max() < 1.0, angles
    # A random 3-D subspace is far from it (the angle measure is not trivially small).
    random_angles = compression.subspace_angles_to_pca(rng.standard_normal((3, 10)), x)
    assert random_angles.max() > 10.0
    recon = np.asarray(model.apply({"params": params}, jnp.asarray(x, jnp.float32)).decoder_output)
    ae_err = np.square(recon - x).sum(axis=1).mean()
    pca_err = pca.pca_reconstruction_error(x, x, 3).mean()
    # PCA is the optimum, so the AE cannot beat it beyond float32 rounding; at < 1 degree it is within 1%.
    assert pca_err * (1 - 1e-4) <= ae_err <= pca_err * 1.01, (ae_err, pca_err)


def test_quantise_levels_and_error_bound():
    rng = np.random.default_rng(1)
    codes = rng.uniform(-2.0, 3.0, size=(500, 4))
    lo, hi = compression.code_range(codes)
    for q in (1, 4, 8):
        out = compression.quantise(codes, q, lo, hi)
        step = (hi - lo) / 2**q
        assert np.all(np.abs(out - codes) <= step / 2 + 1e-12)  # the nearest reconstruction level
        assert all(len(np.unique(out[:, j])) <= 2**q for j in range(4))
    np.testing.assert_allclose(
        compression.quantise(np.array([[10.0]]), 2, np.array([0.0]), np.array([4.0])), [[3.5]]
    )
    with pytest.raises(ValueError, match="bits"):
        compression.quantise(codes, 0, lo, hi)


def test_pca_errors_with_quantised_scores_add_the_quantisation_error():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 12)) * np.linspace(3, 0.3, 12)
    np.testing.assert_allclose(
        compression.pca_errors(x[:200], x[200:], 5)["float"],
        pca.pca_reconstruction_error(x[:200], x[200:], 5).mean(),
    )
    # On the training data (no clipping) the components are orthonormal, so the error is PCA's plus the squared
    # quantisation error of the scores (Pythagoras), at most K (step / 2)^2 with step = range / 2^q.
    errs = compression.pca_errors(x, x, 5, bits=(2, 4, 8))
    scores = PCA(5).fit(x).transform(x)
    span = scores.max(axis=0) - scores.min(axis=0)
    for q in (2, 4, 8):
        assert 0 <= errs[q] - errs["float"] <= np.sum((span / 2**q / 2) ** 2) * (1 + 1e-9)
    assert errs[2] > errs[4] > errs[8]
