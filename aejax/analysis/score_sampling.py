"""Sampling with a denoising autoencoder's learned score, and a two-sample distance to judge the samples.

Langevin dynamics with the DAE score estimate (r(x) - x) / sigma^2 (Alain & Bengio 2014) and the
generalized-DAE Markov chain corrupt -> reconstruct (Bengio, Yao, Alain & Vincent, NeurIPS 2013); the energy
distance (Szekely & Rizzo 2013) measures how far the samples are from held-out data.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from aejax.analysis.score import Reconstruct, check_2d


def langevin(
    score_fn: Callable[[jax.Array], jax.Array], x0: jax.Array, rng: jax.Array, *, step_size: float, num_steps: int
) -> jax.Array:
    """Unadjusted Langevin dynamics x <- x + (eps / 2) s(x) + sqrt(eps) n, n ~ N(0, I), from x0 [N, D].

    With s the DAE score estimate (`dae_score`), whose target is the smoothed score grad log p_sigma, the
    chain samples p_sigma up to the O(eps) discretisation bias.

    Returns:
      [N, D] the states after num_steps steps (one jit compilation per call).
    """
    check_2d(x0, "x0")

    def step(x, key):
        return x + 0.5 * step_size * score_fn(x) + np.sqrt(step_size) * jax.random.normal(key, x.shape), None

    run = jax.jit(lambda x, keys: jax.lax.scan(step, x, keys)[0])
    return run(jnp.asarray(x0, jnp.float32), jax.random.split(rng, num_steps))


def dae_chain(
    reconstruct: Reconstruct,
    x0: jax.Array,
    rng: jax.Array,
    *,
    sigma: float,
    num_steps: int,
    posterior_noise: bool = True,
) -> jax.Array:
    """The generalized-DAE Markov chain: corrupt x~ = x + sigma eps, then x ~ P(x | x~), repeat.

    Bengio et al. (NeurIPS 2013) sample x from the DAE's reconstruction distribution P(x | x~); a
    squared-error DAE gives only its mean r(x~). With `posterior_noise` P(x | x~) is the Gaussian with that
    mean and Tweedie's second-order covariance Cov[x | x~] = sigma^2 dr/dx~ (symmetrised, negative eigenvalues
    clipped to 0; D x D per point, so small D), which makes the chain exact for Gaussian data and a linear
    optimal DAE (stationary variance s^2). Without it x <- r(x~), a chain that concentrates too much.

    Args:
      reconstruct: [B, D] -> [B, D].
      x0: [N, D] initial states.
      rng: PRNG key.
      sigma: the DAE's corruption standard deviation.
      num_steps: chain length.
      posterior_noise: sample N(r(x~), sigma^2 J_r(x~)) instead of taking r(x~).

    Returns:
      [N, D] the states after num_steps steps.
    """
    check_2d(x0, "x0")

    def single(v):
        return reconstruct(v[None])[0]

    def step(x, key):
        c_key, p_key = jax.random.split(key)
        x_tilde = x + sigma * jax.random.normal(c_key, x.shape)
        mean = reconstruct(x_tilde)
        if not posterior_noise:
            return mean, None
        jac = jax.vmap(jax.jacfwd(single))(x_tilde)  # [N, D, D]
        lam, vec = jnp.linalg.eigh(0.5 * (jac + jnp.swapaxes(jac, 1, 2)))
        scale = sigma * jnp.sqrt(jnp.clip(lam, min=0.0))  # [N, D] posterior std along each eigenvector
        n = jax.random.normal(p_key, x.shape)
        return mean + jnp.einsum("nij,nj->ni", vec, scale * n), None

    run = jax.jit(lambda x, keys: jax.lax.scan(step, x, keys)[0])
    return run(jnp.asarray(x0, jnp.float32), jax.random.split(rng, num_steps))


def energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Energy distance sqrt(2 E||X - Y|| - E||X - X'|| - E||Y - Y'||) of two samples (Szekely & Rizzo 2013).

    Plug-in (V-statistic) means over all pairs, the convention of `scipy.stats.energy_distance` in 1-D. It is
    0 iff the two empirical distributions are equal.

    Args:
      x: [N, D] samples.
      y: [M, D] samples.

    Returns:
      [] distance in input units.

    Raises:
      ValueError: unless x and y are 2-D with the same D.
    """
    check_2d(x)
    check_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same D, got {x.shape} and {y.shape}.")
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def mean_dist(a, b):
        return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)))

    d2 = 2.0 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    return jnp.sqrt(jnp.clip(d2, min=0.0))
