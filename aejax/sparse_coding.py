"""Sparse coding: ISTA and FISTA for the Lasso energy of predictive sparse decomposition.

Every solver here minimises, independently for each example b of a batch sharing one dictionary,

    E(z_b) = 0.5 * ||x_b - D z_b||_2^2 + lam * ||z_b||_1,

with inputs x: [B, n], dictionary D: [n, K] (columns are atoms), sparse codes z: [B, K] and a
scalar lam >= 0. E is in units of x squared (half the squared error summed over the n input
dimensions, plus the penalty).

Both solvers take proximal-gradient steps of size 1/L, where L = ||D||_2^2 is the Lipschitz constant
of the gradient D^T (D z - x) of the smooth part, and shrink(v, t) = sign(v) max(|v| - t, 0) is the
proximal map of t ||.||_1:

    z_{k+1} = shrink(y_k - D^T (D y_k - x) / L, lam / L).

ISTA (Daubechies, Defrise & De Mol 2004) takes y_k = z_k and converges as O(1/k) in energy. FISTA
(Beck & Teboulle 2009, eq. 4.1-4.3) extrapolates y_{k+1} = z_{k+1} + (t_k - 1) / t_{k+1} (z_{k+1} -
z_k), t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2, for O(1/k^2). These optimal codes are what the PSD
encoder learns to predict (Kavukcuoglu, Ranzato & LeCun 2008).

L is computed exactly, as the largest singular value squared `jnp.linalg.norm(D, 2) ** 2` (one SVD):
D is small (n x K in the hundreds), so the SVD costs about as much as a few iterations, whereas
power iteration approaches L from below, and an underestimate gives a step longer than 1/L, which
can make ISTA diverge. Pass `lipschitz=` to reuse L across calls with the same dictionary.

Matrix products use `Precision.HIGHEST` so that TPUs do not silently run them in bfloat16. The
solvers are not meant to be differentiated (tolerance mode is a `lax.while_loop`): PSD training
treats the codes as constants.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

_STATIC = ("num_steps", "tol", "max_steps", "return_info")
_matmul = functools.partial(jnp.matmul, precision=lax.Precision.HIGHEST)


class InferenceInfo(NamedTuple):
    """Diagnostics of one solve.

    Attributes:
      num_steps: [] int32 number of iterations run.
      objective: [T, B] energy E(z_k) after each iteration k = 1..T; T = num_steps in fixed-step
        mode, T = max_steps in tolerance mode (rows after `num_steps` are NaN).
      restarts: [B] int32 number of FISTA restarts (rejected steps) per example; zeros for ISTA.
    """

    num_steps: jax.Array
    objective: jax.Array
    restarts: jax.Array


class _State(NamedTuple):
    z: jax.Array  # [B, K] current iterate z_k
    dz: jax.Array  # [B, n] D z_k, tracked so each step costs two matmuls
    y: jax.Array  # [B, K] extrapolated point y_k
    dy: jax.Array  # [B, n] D y_k
    t: jax.Array  # [B] FISTA momentum scalar t_k (per example, since restarts are per example)
    f: jax.Array  # [B] E(z_k)
    restarts: jax.Array  # [B] int32


def shrink(v: jax.Array, threshold: jax.Array | float) -> jax.Array:
    """Soft-thresholding sign(v) * max(|v| - threshold, 0), the proximal map of threshold * ||.||_1.

    Args:
      v: array of any shape.
      threshold: non-negative scalar, or an array of v's rank that broadcasts against v.

    Returns:
      An array of v's shape; entries with |v| <= threshold are exactly zero.
    """
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - threshold, 0)


def _check_shapes(x: jax.Array, D: jax.Array, z: jax.Array | None) -> None:
    if x.ndim != 2 or D.ndim != 2 or x.shape[1] != D.shape[0]:
        raise ValueError(f"Expected x [B, n] and D [n, K], got x {x.shape} and D {D.shape}.")
    if z is not None and z.shape != (x.shape[0], D.shape[1]):
        raise ValueError(f"Expected codes [B, K] = {(x.shape[0], D.shape[1])}, got {z.shape}.")


def objective(x: jax.Array, D: jax.Array, z: jax.Array, lam: jax.Array | float) -> jax.Array:
    """Sparse-coding energy E(z) = 0.5 ||x - D z||_2^2 + lam ||z||_1 per example.

    Args:
      x: [B, n] inputs.
      D: [n, K] dictionary, columns are atoms.
      z: [B, K] codes.
      lam: scalar L1 weight.

    Returns:
      [B] energies in units of x squared (half the squared error summed over n, plus penalty).

    Raises:
      ValueError: if the shapes of x, D and z do not match.
    """
    _check_shapes(x, D, z)
    return _energy(x, _matmul(z, D.T), z, lam)


def _energy(x: jax.Array, dz: jax.Array, z: jax.Array, lam: jax.Array) -> jax.Array:
    """E(z) [B] from x [B, n], dz = D z [B, n] and z [B, K]."""
    return 0.5 * jnp.sum((x - dz) ** 2, axis=-1) + lam * jnp.sum(jnp.abs(z), axis=-1)


def _step(state: _State, x, D, lam, inv_l, momentum: bool, restart: bool) -> tuple[_State, jax.Array]:
    """One proximal-gradient step; returns the new state and the candidate prox point [B, K]."""
    grad = _matmul(state.dy - x, D)  # [B, K] = D^T (D y - x)
    cand = shrink(state.y - inv_l * grad, lam * inv_l)
    dcand = _matmul(cand, D.T)  # [B, n]
    f_cand = _energy(x, dcand, cand, lam)
    if not momentum:
        return _State(cand, dcand, cand, dcand, state.t, f_cand, state.restarts), cand
    t_next = 0.5 * (1 + jnp.sqrt(1 + 4 * state.t**2))
    beta = ((state.t - 1) / t_next)[:, None]  # [B, 1]
    # D y is linear in z, so D y_{k+1} follows from D z without a third matmul.
    new = _State(
        z=cand,
        dz=dcand,
        y=cand + beta * (cand - state.z),
        dy=dcand + beta * (dcand - state.dz),
        t=t_next,
        f=f_cand,
        restarts=state.restarts,
    )
    if restart:
        # O'Donoghue & Candes 2015 restart, also rejecting the step that raised E: the next step
        # is then a plain ISTA step from z_k, which cannot raise E, so the trace is monotone. ISTA
        # steps (y = z) are always kept, else float rounding near the optimum stalls the iterate.
        extrapolated = jnp.any(state.y != state.z, axis=-1)  # [B]
        reject = (f_cand > state.f) & extrapolated  # [B]
        keep = reject[:, None]
        new = _State(
            z=jnp.where(keep, state.z, new.z),
            dz=jnp.where(keep, state.dz, new.dz),
            y=jnp.where(keep, state.z, new.y),
            dy=jnp.where(keep, state.dz, new.dy),
            t=jnp.where(reject, jnp.ones_like(t_next), t_next),
            f=jnp.where(reject, state.f, f_cand),
            restarts=state.restarts + reject.astype(jnp.int32),
        )
    return new, cand


def _solve(x, D, lam, num_steps, z0, tol, max_steps, lipschitz, momentum, restart, return_info):
    """Shared driver of `ista` and `fista`: checks, initial state, fixed-step or tolerance loop."""
    x, D = jnp.asarray(x), jnp.asarray(D)
    _check_shapes(x, D, z0)
    if (num_steps is None) == (tol is None):
        raise ValueError(f"Give exactly one of num_steps and tol, got {num_steps=}, {tol=}.")
    if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 0):
        raise ValueError(f"num_steps must be a non-negative int, got {num_steps!r}.")
    if tol is not None and (not tol > 0 or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"Need tol > 0 and an int max_steps >= 1, got {tol=}, {max_steps=}.")
    dtype = jnp.result_type(x, D)
    x, D = x.astype(dtype), D.astype(dtype)
    lam = jnp.asarray(lam, dtype)
    if lam.ndim != 0:
        raise ValueError(f"lam must be a scalar, got shape {lam.shape}.")
    B, K = x.shape[0], D.shape[1]
    z0 = jnp.zeros((B, K), dtype) if z0 is None else jnp.asarray(z0, dtype)
    if lipschitz is None:
        lipschitz = jnp.linalg.norm(D, 2) ** 2
    # Guard D = 0: the gradient is then zero and the threshold infinite, so z -> 0 without NaN.
    inv_l = 1 / jnp.maximum(jnp.asarray(lipschitz, dtype), jnp.finfo(dtype).tiny)
    dz0 = _matmul(z0, D.T)
    f0 = _energy(x, dz0, z0, lam)
    state = _State(z0, dz0, z0, dz0, jnp.ones((B,), dtype), f0, jnp.zeros((B,), jnp.int32))
    step = functools.partial(_step, x=x, D=D, lam=lam, inv_l=inv_l, momentum=momentum, restart=restart)

    if num_steps is not None:

        def scan_body(s, _):
            s, _ = step(s)
            return s, s.f

        state, trace = lax.scan(scan_body, state, length=num_steps)  # trace: [num_steps, B]
        k = jnp.asarray(num_steps, jnp.int32)
    else:
        trace = jnp.full((max_steps, B), jnp.nan, dtype) if return_info else None

        def cond(carry):
            k, _, delta, _ = carry
            return (k < max_steps) & (delta >= tol)

        def while_body(carry):
            k, s, _, trace = carry
            s_new, cand = step(s)
            # On the candidate, not the accepted iterate: a rejected FISTA step must not stop.
            change = jnp.max(jnp.abs(cand - s.z), axis=-1) / jnp.maximum(jnp.max(jnp.abs(s.z), axis=-1), 1)
            if trace is not None:
                trace = trace.at[k].set(s_new.f)
            return k + 1, s_new, jnp.max(change), trace

        init = (jnp.asarray(0, jnp.int32), state, jnp.asarray(jnp.inf, dtype), trace)
        k, state, _, trace = lax.while_loop(cond, while_body, init)
    if return_info:
        return state.z, InferenceInfo(num_steps=k, objective=trace, restarts=state.restarts)
    return state.z


@functools.partial(jax.jit, static_argnames=_STATIC)
def ista(
    x,
    D,
    *,
    lam,
    num_steps=None,
    z0=None,
    tol=None,
    max_steps=1000,
    lipschitz=None,
    return_info=False,
):
    """ISTA: iterative shrinkage-thresholding, z <- shrink(z - D^T (D z - x) / L, lam / L).

    Minimises E(z) = 0.5 ||x - D z||_2^2 + lam ||z||_1 per example. E is non-increasing and
    E(z_k) - E* <= L ||z0 - z*||^2 / (2k) (Beck & Teboulle 2009, Thm 3.1).
    Reference: Daubechies, Defrise & De Mol 2004.

    Args:
      x: [B, n] inputs.
      D: [n, K] dictionary, columns are atoms, shared by the whole batch.
      lam: scalar L1 weight >= 0; may be traced (a new value does not recompile).
      num_steps: static number of iterations (a `lax.scan`). Exactly one of num_steps and tol.
      z0: [B, K] warm start; zeros if None.
      tol: static tolerance: iterate (a `lax.while_loop`) until the max over the batch of
        ||z_{k+1} - z_k||_inf / max(||z_k||_inf, 1) < tol, or max_steps iterations.
      max_steps: static cap on the iterations in tolerance mode.
      lipschitz: optional scalar L >= ||D||_2^2, to skip the SVD of D.
      return_info: static; if True also return an `InferenceInfo` (steps, per-step energy trace).

    Returns:
      z: [B, K] sparse codes, or the pair (z, info) if return_info.

    Raises:
      ValueError: if x is not [B, n], D not [n, K], z0 not [B, K], or not exactly one of num_steps
        and tol is given (or num_steps < 0, tol <= 0, max_steps < 1, lam not a scalar).
    """
    return _solve(x, D, lam, num_steps, z0, tol, max_steps, lipschitz, False, False, return_info)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "restart"))
def fista(
    x,
    D,
    *,
    lam,
    num_steps=None,
    z0=None,
    tol=None,
    max_steps=1000,
    restart=True,
    lipschitz=None,
    return_info=False,
):
    """FISTA: ISTA with Nesterov extrapolation, E(z_k) - E* <= 2 L ||z0 - z*||^2 / (k + 1)^2.

    Minimises E(z) = 0.5 ||x - D z||_2^2 + lam ||z||_1 per example. With restart=True, adaptive
    function-value restart (O'Donoghue & Candes 2015), per example: a step that would raise E is
    rejected and the momentum reset (t = 1), so the energy trace is monotone (up to float rounding,
    ~1e-7 relative in float32) and the linear rate near a sparse solution is recovered.
    Reference: Beck & Teboulle 2009, SIAM J. Imaging Sci. 2(1), eq. 4.1-4.3.

    Args:
      x: [B, n] inputs.
      D: [n, K] dictionary, columns are atoms, shared by the whole batch.
      lam: scalar L1 weight >= 0; may be traced (a new value does not recompile).
      num_steps: static number of iterations (a `lax.scan`). Exactly one of num_steps and tol.
      z0: [B, K] warm start; zeros if None.
      tol: static tolerance: iterate (a `lax.while_loop`) until the max over the batch of
        ||z_{k+1} - z_k||_inf / max(||z_k||_inf, 1) < tol (z_{k+1} the prox step before a restart's
        rejection), or max_steps iterations.
      max_steps: static cap on the iterations in tolerance mode.
      restart: static; function-value restart on (monotone) or off (plain FISTA, not monotone).
      lipschitz: optional scalar L >= ||D||_2^2, to skip the SVD of D.
      return_info: static; if True also return an `InferenceInfo` (steps, energy trace, restarts).

    Returns:
      z: [B, K] sparse codes, or the pair (z, info) if return_info.

    Raises:
      ValueError: if x is not [B, n], D not [n, K], z0 not [B, K], or not exactly one of num_steps
        and tol is given (or num_steps < 0, tol <= 0, max_steps < 1, lam not a scalar).
    """
    return _solve(x, D, lam, num_steps, z0, tol, max_steps, lipschitz, True, restart, return_info)
