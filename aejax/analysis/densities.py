"""Densities with known scores, and 1-D manifolds in 2-D, for the score analysis of DAEs.

A DAE trained on Gaussian corruption x~ = x + sigma eps has the Bayes-optimal reconstruction
given by Tweedie's formula, r*(x~) = E[x | x~] = x~ + sigma^2 grad log p_sigma(x~), with
p_sigma = p * N(0, sigma^2 I) (Efron 2011); and r(x) - x ~ sigma^2 d log p / dx as sigma -> 0
(Alain & Bengio 2014, JMLR; Vincent 2011). Gaussian mixtures give log p, the score and p_sigma
in closed form; the spiral and circle give the "vector field points to the manifold" picture of
DL book Fig 14.5. All arrays are float32; every method is jittable and batched.
"""

import abc
import dataclasses
import functools
import math
from typing import ClassVar, final

import jax
import jax.numpy as jnp
import numpy as np


def _set_fields(obj, values):
    for name, v in zip(("weights", "means", "scales"), values, strict=True):
        object.__setattr__(obj, name, v)
    return obj


@final
@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Isotropic Gaussian mixture p(x) = sum_m w_m N(x; mu_m, s_m^2 I), a pytree (jit can take it).

    Attributes:
      weights: [M] mixture weights w_m, positive and summing to 1.
      means: [M, D] component means mu_m.
      scales: [M] component standard deviations s_m > 0 (isotropic).

    Raises:
      ValueError: on bad shapes; and, for concrete (non-traced) values, if weights are not
        positive or do not sum to 1 (tolerance 1e-5), or scales are not positive.
    """

    weights: jax.Array
    means: jax.Array
    scales: jax.Array

    def __post_init__(self):
        w, mu, s = (jnp.asarray(v, jnp.float32) for v in (self.weights, self.means, self.scales))
        if (w.ndim, mu.ndim, s.ndim) != (1, 2, 1) or not 0 < len(w) == len(mu) == len(s):
            raise ValueError(
                f"Expected weights [M], means [M, D], scales [M], M > 0; got {w.shape}, {mu.shape}, {s.shape}."
            )
        if not any(isinstance(v, jax.core.Tracer) for v in (w, mu, s)):
            w_np, s_np = np.asarray(w, np.float64), np.asarray(s, np.float64)
            if not (np.all(w_np > 0) and abs(w_np.sum() - 1.0) <= 1e-5):
                raise ValueError(f"Weights must be positive and sum to 1, got {w_np}.")
            if not np.all(s_np > 0):
                raise ValueError(f"Scales must be positive, got {s_np}.")
        _set_fields(self, (w, mu, s))

    def tree_flatten(self):
        return (self.weights, self.means, self.scales), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        # Bypass __post_init__: jax unflattens with tracers, None or axis specs as leaves.
        return _set_fields(object.__new__(cls), children)

    @property
    def dim(self) -> int:
        """The data dimension D."""
        return self.means.shape[1]

    def _check_x(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"Expected x of shape [N, {self.dim}], got {x.shape}.")
        return x

    def _log_joint(self, x: jax.Array) -> jax.Array:
        """[N, D] -> [N, M] log w_m + log N(x; mu_m, s_m^2 I), nats."""
        sq = jnp.sum(jnp.square(x[:, None, :] - self.means[None, :, :]), axis=-1)  # [N, M]
        s = self.scales[None, :]
        log_norm = self.dim * (jnp.log(s) + 0.5 * math.log(2 * math.pi))
        return jnp.log(self.weights)[None, :] - 0.5 * sq / jnp.square(s) - log_norm

    def log_prob(self, x: jax.Array) -> jax.Array:
        """[N, D] points -> [N] log p(x), nats (logsumexp over components).

        Raises:
          ValueError: if x is not [N, D].
        """
        return jax.nn.logsumexp(self._log_joint(self._check_x(x)), axis=1)

    def score(self, x: jax.Array) -> jax.Array:
        """[N, D] points -> [N, D] score grad_x log p(x), in closed form (not autodiff).

        grad log p(x) = sum_m gamma_m(x) (mu_m - x) / s_m^2, gamma_m(x) = p(m | x) the posterior
        responsibilities. Raises ValueError if x is not [N, D].
        """
        x = self._check_x(x)
        gamma = jax.nn.softmax(self._log_joint(x), axis=1)  # [N, M]
        prec = gamma / jnp.square(self.scales)[None, :]  # [N, M]
        return prec @ self.means - jnp.sum(prec, axis=1, keepdims=True) * x

    def sample(self, rng: jax.Array, n: int) -> jax.Array:
        """[n, D] i.i.d. samples: a component m ~ w, then x = mu_m + s_m eps, eps ~ N(0, I)."""
        k_rng, e_rng = jax.random.split(rng)
        comp = jax.random.categorical(k_rng, jnp.log(self.weights), shape=(n,))  # [n]
        eps = jax.random.normal(e_rng, (n, self.dim), jnp.float32)
        return self.means[comp] + self.scales[comp][:, None] * eps

    def smoothed(self, sigma: float | jax.Array) -> "GaussianMixture":
        """Density of x~ = x + sigma eps: p * N(0, sigma^2 I), scales -> sqrt(s^2 + sigma^2).

        Raises:
          ValueError: if a concrete sigma is negative.
        """
        if not isinstance(sigma, jax.core.Tracer) and float(sigma) < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        scales = jnp.sqrt(jnp.square(self.scales) + jnp.square(sigma))
        return GaussianMixture(self.weights, self.means, scales)

    def tweedie_denoiser(self, x_tilde: jax.Array, sigma: float | jax.Array) -> jax.Array:
        """Bayes-optimal DAE reconstruction E[x | x~] = x~ + sigma^2 grad log p_sigma(x~).

        Tweedie's formula (Efron 2011): the minimiser of E||r(x~) - x||^2 over all functions r for
        the corruption x~ = x + sigma eps (Alain & Bengio 2014; Vincent 2011).

        Args:
          x_tilde: [N, D] corrupted points.
          sigma: corruption standard deviation (>= 0).

        Returns:
          [N, D] posterior means E[x | x~].
        """
        x_tilde = self._check_x(x_tilde)
        return x_tilde + jnp.square(sigma) * self.smoothed(sigma).score(x_tilde)


def mixture_1d() -> GaussianMixture:
    """1-D test density: means (-2, 0, 2.5), scales (0.3, 0.5, 0.4), weights (0.3, 0.4, 0.3)."""
    return GaussianMixture(
        jnp.array([0.3, 0.4, 0.3]), jnp.array([[-2.0], [0.0], [2.5]]), jnp.array([0.3, 0.5, 0.4])
    )


def mixture_2d() -> GaussianMixture:
    """2-D test density: three modes whose unequal scales make the score field asymmetric.

    Means (-1.5, -1), (1.5, -1), (0, 1.5); scales (0.4, 0.6, 0.5); weights (0.3, 0.3, 0.4).
    """
    means = jnp.array([[-1.5, -1.0], [1.5, -1.0], [0.0, 1.5]])
    return GaussianMixture(jnp.array([0.3, 0.3, 0.4]), means, jnp.array([0.4, 0.6, 0.5]))


class AbstractCurve(abc.ABC):
    """A 1-D manifold c(t), t in [t0, t1], in 2-D: sampling, nearest point, distance, direction.

    The nearest point is an argmin over a dense grid of the parameter t, refined by safeguarded
    Newton steps on f(t) = ||c(t) - x||^2 / 2 (each clipped to one grid spacing); accurate to
    ~1e-6 in float32. Subclasses give only t_range and point(t); jax.jvp gives c' and c''.
    """

    closed: ClassVar[bool] = False  # closed curves are periodic in t: no clipping to [t0, t1]
    grid_size: ClassVar[int] = 1024
    newton_steps: ClassVar[int] = 6

    @property
    @abc.abstractmethod
    def t_range(self) -> tuple[float, float]:
        """(t0, t1), the parameter interval."""

    @abc.abstractmethod
    def point(self, t: jax.Array) -> jax.Array:
        """[...] parameters -> [..., 2] points c(t) on the curve."""

    def _grid(self) -> tuple[jax.Array, jax.Array]:
        t = jnp.linspace(*self.t_range, self.grid_size, dtype=jnp.float32)  # [G]
        return t, self.point(t)  # [G], [G, 2]

    @functools.partial(jax.jit, static_argnames=("self", "n"))
    def sample(self, rng: jax.Array, n: int, noise_std: float = 0.0) -> jax.Array:
        """[n, 2] points drawn uniformly in arc length on the curve, plus N(0, noise_std^2 I)."""
        t_grid, pts = self._grid()
        seg = jnp.linalg.norm(jnp.diff(pts, axis=0), axis=1)  # [G - 1] chord lengths
        arc = jnp.concatenate([jnp.zeros(1), jnp.cumsum(seg)])
        u_rng, e_rng = jax.random.split(rng)
        t = jnp.interp(jax.random.uniform(u_rng, (n,)) * arc[-1], arc, t_grid)
        return self.point(t) + noise_std * jax.random.normal(e_rng, (n, 2), jnp.float32)

    @functools.partial(jax.jit, static_argnames="self")
    def nearest_t(self, x: jax.Array) -> jax.Array:
        """[N, 2] points -> [N] parameter t of the nearest curve point; ValueError if not [N, 2]."""
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"Expected x of shape [N, 2], got {x.shape}.")
        t_grid, pts = self._grid()
        cross = jnp.matmul(x, pts.T, precision=jax.lax.Precision.HIGHEST)  # [N, G]
        # ||x - c||^2 minus ||x||^2, which does not change the argmin over the grid.
        d2 = jnp.sum(jnp.square(pts), axis=1)[None, :] - 2.0 * cross
        t = t_grid[jnp.argmin(d2, axis=1)]
        dt = t_grid[1] - t_grid[0]
        ones = jnp.ones_like(t)
        velocity = lambda t: jax.jvp(self.point, (t,), (ones,))[1]

        def newton(i, t):
            del i
            (c, v), (_, a) = jax.jvp(lambda t: (self.point(t), velocity(t)), (t,), (ones,))
            r = c - x
            grad, curv = jnp.sum(r * v, axis=1), jnp.sum(v * v + r * a, axis=1)
            # Where f is not locally convex, step downhill by one grid spacing instead.
            newton_step = -grad / jnp.where(curv > 0, curv, 1.0)
            step = jnp.where(curv > 0, newton_step, -jnp.sign(grad) * dt)
            t = t + jnp.clip(step, min=-dt, max=dt)
            return t if self.closed else jnp.clip(t, min=self.t_range[0], max=self.t_range[1])

        return jax.lax.fori_loop(0, self.newton_steps, newton, t)

    def nearest_point(self, x: jax.Array) -> jax.Array:
        """[N, 2] points -> [N, 2] their orthogonal projections onto the curve."""
        return self.point(self.nearest_t(x))

    def distance(self, x: jax.Array) -> jax.Array:
        """[N, 2] points -> [N] Euclidean distance to the curve (>= 0)."""
        return jnp.linalg.norm(self.nearest_point(x) - x, axis=1)

    def direction_to_manifold(self, x: jax.Array) -> jax.Array:
        """[N, 2] points -> [N, 2] unit vectors from x to its nearest point (0 if x is that point).

        For small sigma this is the direction of the optimal DAE displacement r(x) - x.
        """
        delta = self.nearest_point(x) - x
        norm = jnp.linalg.norm(delta, axis=1, keepdims=True)
        return jnp.where(norm > 0, delta / jnp.where(norm > 0, norm, 1.0), 0.0)


@final
@dataclasses.dataclass(frozen=True)
class Spiral(AbstractCurve):
    """Archimedean spiral r(t) = inner_radius + arm_separation t / (2 pi), t in [0, 2 pi turns].

    The defaults (2 turns, r from 0.4 to 2.4, box about [-2.4, 2.4]^2) separate neighbouring
    arms by 1.0, more than 3x the widest band (0.3) DAE fields are evaluated in, so each point
    of the band has a unique nearest arm.
    """

    inner_radius: float = 0.4
    arm_separation: float = 1.0
    turns: float = 2.0

    @property
    def t_range(self) -> tuple[float, float]:
        return 0.0, 2 * math.pi * self.turns

    def point(self, t: jax.Array) -> jax.Array:
        r = self.inner_radius + self.arm_separation * t / (2 * math.pi)
        return jnp.stack([r * jnp.cos(t), r * jnp.sin(t)], axis=-1)


@final
@dataclasses.dataclass(frozen=True)
class Circle(AbstractCurve):
    """Circle centred at the origin, c(t) = radius (cos t, sin t), t in [0, 2 pi), periodic."""

    closed: ClassVar[bool] = True
    radius: float = 1.0

    @property
    def t_range(self) -> tuple[float, float]:
        return 0.0, 2 * math.pi

    def point(self, t: jax.Array) -> jax.Array:
        return self.radius * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)


def _check_pair(u: jax.Array, v: jax.Array) -> None:
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"Expected two [N, D] arrays of one shape, got {u.shape}, {v.shape}.")


def relative_rmse(estimate: jax.Array, target: jax.Array) -> jax.Array:
    """sqrt(mean_n ||e_n - t_n||^2 / mean_n ||t_n||^2): 0 is perfect, 1 = predicting zero.

    Averages over the given points: weighted by the data density when x are data samples.

    Args:
      estimate: [N, D] e.g. (r(x) - x) / sigma^2.
      target: [N, D] e.g. the true score.

    Returns:
      [] relative RMSE (inf or nan if target is all zero). ValueError unless both are [N, D].
    """
    _check_pair(estimate, target)
    return jnp.sqrt(jnp.sum(jnp.square(estimate - target)) / jnp.sum(jnp.square(target)))


def correlation(estimate: jax.Array, target: jax.Array) -> jax.Array:
    """[] Pearson correlation over all N * D components of two [N, D] arrays (else ValueError)."""
    _check_pair(estimate, target)
    e, t = estimate.ravel() - jnp.mean(estimate), target.ravel() - jnp.mean(target)
    return jnp.sum(e * t) / jnp.sqrt(jnp.sum(e * e) * jnp.sum(t * t))


def cosine(u: jax.Array, v: jax.Array) -> jax.Array:
    """[N] row-wise cosine of two [N, D] arrays, in [-1, 1], 0 for zero rows (else ValueError)."""
    _check_pair(u, v)
    norms = jnp.linalg.norm(u, axis=1) * jnp.linalg.norm(v, axis=1)
    return jnp.sum(u * v, axis=1) / jnp.maximum(norms, 1e-12)
