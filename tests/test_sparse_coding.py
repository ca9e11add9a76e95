"""ISTA / FISTA sparse coding against scikit-learn's Lasso, Lasso optimality and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Lasso

from aejax.sparse_coding import fista, ista, objective, shrink

N, K, B, LAM = 20, 40, 5, 0.2


def _energy64(x, D, z, lam):
    """E(z) per example in float64 numpy, the independent reference of `objective`."""
    x, D, z = (np.asarray(a, np.float64) for a in (x, D, z))
    return 0.5 * ((x - z @ D.T) ** 2).sum(-1) + lam * np.abs(z).sum(-1)


@pytest.fixture(scope="module")
def problem():
    """Unit-norm Gaussian D [N, K]; x = D z_true + noise, z_true 4-sparse; sklearn Lasso optimum."""
    rng = np.random.default_rng(0)
    D = rng.normal(size=(N, K))
    D /= np.linalg.norm(D, axis=0)
    z_true = np.zeros((B, K))
    for b in range(B):
        z_true[b, rng.choice(K, 4, replace=False)] = 2 * rng.normal(size=4)
    x = z_true @ D.T + 0.05 * rng.normal(size=(B, N))
    # sklearn minimises 1/(2 n_samples) ||y - X w||^2 + alpha ||w||_1: with X = D, n_samples = N.
    lasso = Lasso(alpha=LAM / N, fit_intercept=False, tol=1e-12, max_iter=100_000)
    z_ref = np.stack([lasso.fit(D, x[b]).coef_.copy() for b in range(B)])
    f_ref = _energy64(x, D, z_ref, LAM)
    return jnp.asarray(x, jnp.float32), jnp.asarray(D, jnp.float32), z_ref, f_ref


def test_shrink_and_objective_closed_forms(problem):
    v = np.array([[-2.0, -0.5, 0.0, 0.3, 1.5]], np.float32)
    np.testing.assert_array_equal(shrink(v, 0.5), [[-1.5, 0.0, 0.0, 0.0, 1.0]])
    x, D, z_ref, f_ref = problem
    np.testing.assert_allclose(objective(x, D, jnp.asarray(z_ref, jnp.float32), LAM), f_ref, rtol=1e-5)


@pytest.mark.parametrize("solver, steps", [(fista, 500), (ista, 2000)])
def test_matches_sklearn_lasso(problem, solver, steps):
    x, D, z_ref, f_ref = problem
    z = solver(x, D, lam=LAM, num_steps=steps)
    assert z.shape == (B, K) and z.dtype == jnp.float32
    np.testing.assert_allclose(z, z_ref, atol=1e-4)
    np.testing.assert_allclose(_energy64(x, D, z, LAM), f_ref, rtol=1e-6)


def test_kkt_conditions_at_fista_solution(problem):
    x, D, _, _ = problem
    z = np.asarray(fista(x, D, lam=LAM, num_steps=500), np.float64)
    Dn = np.asarray(D, np.float64)
    g = (np.asarray(x, np.float64) - z @ Dn.T) @ Dn  # [B, K] = D^T (x - D z)
    active = z != 0
    assert active.any() and (~active).any()
    assert np.all(np.abs(g[~active]) <= LAM + 1e-5)
    np.testing.assert_allclose(g[active], LAM * np.sign(z[active]), atol=1e-5)


def test_fista_monotone_and_faster_than_ista(problem):
    x, D, _, f_ref = problem
    steps = 400
    _, info = fista(x, D, lam=LAM, num_steps=steps, return_info=True)
    _, info_ista = ista(x, D, lam=LAM, num_steps=steps, return_info=True)
    _, info_plain = fista(x, D, lam=LAM, num_steps=steps, restart=False, return_info=True)
    trace = np.asarray(info.objective, np.float64)  # [steps, B]
    assert trace.shape == (steps, B) and int(info.num_steps) == steps
    f0 = _energy64(x, D, np.zeros((B, K)), LAM)
    assert np.all(trace[0] <= f0)
    assert np.all(trace[1:] <= trace[:-1] * (1 + 1e-6))
    # Plain FISTA does overshoot on this problem, so the check above is not vacuous.
    plain = np.asarray(info_plain.objective, np.float64)
    assert np.any(plain[1:] > plain[:-1] * (1 + 1e-4))

    def steps_to_gap(tr):
        reached = np.all((np.asarray(tr, np.float64) - f_ref) / f_ref <= 1e-6, axis=1)
        assert reached.any()
        return int(np.argmax(reached)) + 1

    n_fista, n_ista = steps_to_gap(info.objective), steps_to_gap(info_ista.objective)
    assert 2 * n_fista < n_ista, (n_fista, n_ista)


def test_warm_start_at_solution_stays(problem):
    x, D, z_ref, _ = problem
    z0 = jnp.asarray(z_ref, jnp.float32)
    for solver in (fista, ista):
        np.testing.assert_allclose(solver(x, D, lam=LAM, num_steps=20, z0=z0), z_ref, atol=1e-5)


def test_large_lam_gives_exact_zero(problem):
    x, D, _, _ = problem
    lam_max = np.abs(np.asarray(x, np.float64) @ np.asarray(D, np.float64)).max()
    z = fista(x, D, lam=lam_max * (1 + 1e-4), num_steps=50)
    np.testing.assert_array_equal(z, np.zeros((B, K)))
    assert np.any(fista(x, D, lam=0.9 * lam_max, num_steps=50) != 0)


def test_orthonormal_dictionary_closed_form():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(N, N)))
    x = rng.normal(size=(B, N))
    # With D^T D = I the energy separates per coordinate: z* = shrink(D^T x, lam).
    c = x @ Q
    expected = np.sign(c) * np.maximum(np.abs(c) - 0.5, 0)
    xj, Qj = jnp.asarray(x, jnp.float32), jnp.asarray(Q, jnp.float32)
    for solver in (fista, ista):
        np.testing.assert_allclose(solver(xj, Qj, lam=0.5, num_steps=30), expected, atol=1e-5)


def test_zero_dictionary_gives_zero_codes():
    z = fista(jnp.ones((2, 3)), jnp.zeros((3, 4)), lam=0.1, num_steps=5)
    np.testing.assert_array_equal(z, np.zeros((2, 4)))


def test_tol_mode_agrees_with_fixed_steps(problem):
    x, D, z_ref, _ = problem
    for solver in (fista, ista):
        z, info = solver(x, D, lam=LAM, tol=1e-6, max_steps=3000, return_info=True)
        k = int(info.num_steps)
        assert 0 < k < 3000
        trace = np.asarray(info.objective)
        assert trace.shape == (3000, B)
        assert np.all(np.isfinite(trace[:k])) and np.all(np.isnan(trace[k:]))
        np.testing.assert_allclose(z, z_ref, atol=1e-4)
    # The cap: one step of tolerance mode is one fixed step.
    np.testing.assert_allclose(
        fista(x, D, lam=LAM, tol=1e-6, max_steps=1), fista(x, D, lam=LAM, num_steps=1), rtol=1e-6
    )


def test_jit_traced_lam_compiles_once(problem):
    x, D, z_ref, _ = problem
    traces = []

    @jax.jit
    def solve(x, D, lam):
        traces.append(None)
        return fista(x, D, lam=lam, num_steps=500)

    np.testing.assert_allclose(solve(x, D, jnp.float32(LAM)), z_ref, atol=1e-4)
    z_zero = solve(x, D, jnp.float32(100.0))
    np.testing.assert_array_equal(z_zero, np.zeros((B, K)))
    assert len(traces) == 1


def test_batch_sharded_over_devices(problem):
    x, D, z_ref, _ = problem
    n_dev = jax.device_count()
    mesh = jax.make_mesh((n_dev,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    P = jax.sharding.PartitionSpec
    x_sharded = jax.device_put(x[:n_dev], jax.sharding.NamedSharding(mesh, P("data")))
    z = fista(x_sharded, D, lam=LAM, num_steps=500)
    np.testing.assert_allclose(z, z_ref[:n_dev], atol=1e-4)


def test_bad_arguments_raise(problem):
    x, D, _, _ = problem
    with pytest.raises(ValueError, match="exactly one"):
        fista(x, D, lam=LAM)
    with pytest.raises(ValueError, match="exactly one"):
        ista(x, D, lam=LAM, num_steps=10, tol=1e-5)
    with pytest.raises(ValueError, match=r"D \[n, K\]"):
        fista(x, D.T, lam=LAM, num_steps=10)
    with pytest.raises(ValueError, match=r"D \[n, K\]"):
        ista(x[0], D, lam=LAM, num_steps=10)
    with pytest.raises(ValueError, match=r"codes \[B, K\]"):
        fista(x, D, lam=LAM, num_steps=10, z0=jnp.zeros((B, K + 1)))
    with pytest.raises(ValueError, match="scalar"):
        fista(x, D, lam=jnp.full((B,), LAM), num_steps=10)
    with pytest.raises(ValueError, match=r"codes \[B, K\]"):
        objective(x, D, jnp.zeros((B + 1, K)), LAM)
