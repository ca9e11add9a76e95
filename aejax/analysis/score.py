"""Score-matching analysis of denoising autoencoders (Alain & Bengio, JMLR 2014).

A DAE r trained on x~ = x + sigma eps with squared error estimates the score of the data density:
(r(x) - x) / sigma^2 -> d log p(x) / dx as sigma -> 0. At finite sigma its Bayes-optimal target is
Tweedie's E[x | x~] = x~ + sigma^2 grad log p_sigma(x~), p_sigma = p * N(0, sigma^2 I), so the
estimator is biased towards the smoothed score (bias O(sigma^2)) while the 1 / sigma^2 amplifies
the DAE's fitting errors (variance grows as sigma -> 0). This module trains DAEs through the same
model, likelihood, objective and train step as every other run, measures the estimator against
the closed-form densities of `aejax.analysis.densities`, and samples with the learned score. Training runs
through the one loop of every run (`aejax.loop`).
"""

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import build, corruptions, loop, optim, regularizers, sharding
from aejax.analysis import densities
from aejax.data.pipeline import InMemoryLoader
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.objectives import Objective
from aejax.objectives.autoencoder import make_eval_fn, make_loss_fn

# The DAE's optimizer unless a config gives one (configs/score_dae.py: `config.optimizer`): Adam, cosine decay.
DEFAULT_OPTIMIZER = dict(name="adam", learning_rate=1e-2, schedule="cosine", weight_decay=0.0, grad_clip_norm=0.0)

# reconstruct: [B, D] -> [B, D], the mean reconstruction r(x).
Reconstruct = Callable[[jax.Array], jax.Array]


class TrainedDAE(NamedTuple):
    """A trained autoencoder as a reconstruction function; call it on [B, D] to get r(x) [B, D].

    Attributes:
      apply: jitted (params, x [B, D]) -> decoder output [B, D] (the mean r(x), Gaussian likelihood).
      params: the trained parameters (host-side, single-device).
      final_loss: [] training loss of the last logged window (nats per example); NaN when a relaunch found the
        run finished in its workdir and took no step.
    """

    apply: Callable
    params: dict
    final_loss: float

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply(self.params, x)


def check_2d(x, name: str = "x") -> None:
    """Raises ValueError unless x is 2-D, [N, D]."""
    if np.ndim(x) != 2:
        raise ValueError(f"Expected {name} of shape [N, D], got shape {np.shape(x)}.")


@functools.lru_cache(maxsize=8)
def _dae_parts(dim, hidden, code_dim, activation, sigma, contractive, optimizer_json, steps):
    """(model, objective, tx) of `train_dae`, cached: DAEs that differ only in seed (or data of one shape) share
    these objects and so the loop's compiled train step."""
    model = get_model("mlp", input_shape=(dim,), hidden=hidden, code_dim=code_dim, activation=activation)
    lik = get_likelihood("gaussian")
    if contractive:
        term = regularizers.Term("reconstruction_contractive", 0.5 * sigma**2, {"method": "jacfwd"})
        loss_fn = make_loss_fn(model, lik, penalty=regularizers.combine(term))
    else:

        def corrupt(rng, xb):
            return corruptions.gaussian(rng, xb, sigma=sigma)[0], None  # no per-component reweighting

        loss_fn = make_loss_fn(model, lik, corrupt=corrupt)
    tx = optim.make_optimizer(ml_collections.ConfigDict(json.loads(optimizer_json)), steps)
    return model, Objective(loss_fn, make_eval_fn(model, lik)), tx


@functools.lru_cache(maxsize=8)
def _reconstruct_fn(model):
    return jax.jit(lambda p, xb: model.apply({"params": p}, xb).decoder_output)


def train_dae(
    x: np.ndarray,
    *,
    sigma: float,
    steps: int = 2000,
    seed: int = 0,
    hidden: Sequence[int] = (64, 64),
    code_dim: int = 64,
    activation: str = "tanh",
    batch_size: int = 512,
    optimizer: Mapping | ml_collections.ConfigDict | None = None,
    contractive: bool = False,
    workdir: str | None = None,
) -> TrainedDAE:
    """Trains an MLP DAE r on samples x with Gaussian corruption and squared error, through the shared loop.

    Runs through the library: `get_model("mlp")` (linear code), the unit-variance Gaussian likelihood
    (NLL = squared error / 2 + const), `objectives.autoencoder.make_loss_fn` with `corruptions.gaussian`,
    `aejax.loop.run` (the train step on the data mesh, the NaN stop, checkpoints when `workdir` is given),
    `InMemoryLoader` batches; the optimizer of `optimizer` (`aejax.optim.make_optimizer`). With
    `contractive=True` it trains the reconstruction-contractive AE instead (Alain & Bengio 2014): no
    corruption, squared error + sigma^2 ||dr/dx||_F^2 (the regularizer "reconstruction_contractive", weight
    sigma^2 / 2 because the NLL is half the squared error).

    Args:
      x: [N, D] float training samples.
      sigma: corruption standard deviation (input units), > 0.
      steps: number of updates.
      seed: seed of the initialisation, the batch order and the noise.
      hidden, code_dim, activation: the MLP (`aejax.models.mlp.MLPAutoencoder`).
      batch_size: global batch, a multiple of the number of devices and <= N.
      optimizer: an optimizer config (name, learning_rate, schedule, weight_decay, grad_clip_norm, ...: the
        fields of `config.optimizer`); None: DEFAULT_OPTIMIZER (Adam, peak rate 1e-2, cosine decay).
      contractive: train the RCAE instead of the DAE.
      workdir: where the loop keeps checkpoints and metrics (a relaunch resumes); None keeps nothing.

    Returns:
      A `TrainedDAE`, callable as reconstruct(x [B, D]) -> [B, D].

    Raises:
      ValueError: if x is not [N, D], sigma <= 0, steps < 1, the batch size does not fit or the optimizer's
        hyperparameters are invalid; KeyError: for an unknown optimizer or schedule.
      aejax.loop.NonFiniteLossError: if training diverged (the message names the step and the term).
    """
    check_2d(x)
    if sigma <= 0 or steps < 1:
        raise ValueError(f"Need sigma > 0 and steps >= 1, got sigma={sigma}, steps={steps}.")
    x = np.asarray(x, np.float32)
    dim = x.shape[1]
    mesh = sharding.make_mesh()
    opt = dict(optimizer.to_dict() if isinstance(optimizer, ml_collections.ConfigDict) else optimizer or {})
    optimizer_json = json.dumps(opt or DEFAULT_OPTIMIZER, sort_keys=True)  # hashable: the parts are cached
    model, objective, tx = _dae_parts(
        dim, tuple(hidden), code_dim, activation, float(sigma), contractive, optimizer_json, steps
    )
    sharding.check_batch_size(batch_size, mesh)
    loader = InMemoryLoader(
        x,
        np.zeros(len(x), np.int32),
        global_batch_size=batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    settings = loop.LoopSettings(
        num_steps=steps, batch_size=batch_size, log_every=min(100, steps), checkpoint_every=steps, steps_per_call=0
    )
    init_fn = build.make_init_fn(model, tx, (dim,), mesh, jax.random.key(seed))
    result = loop.run(
        settings=settings,
        mesh=mesh,
        objective=objective,
        tx=tx,
        init_fn=init_fn,
        loader=loader,
        workdir=workdir,
        desc=f"{'RCAE' if contractive else 'DAE'} sigma={sigma:g}",
    )
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), result.state.params)  # off the mesh
    final_loss = float(result.last_metrics.get("loss", np.nan))  # {} when a finished run was restored
    return TrainedDAE(_reconstruct_fn(model), params, final_loss)


def linear_dae_closed_form(x: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares linear DAE r(x~) = x~ W + b, exact over the Gaussian noise (no training).

    Minimises mean_n E_eps ||(x_n + sigma eps) W + b - x_n||^2. With m the mean and C the (1/N) covariance
    of x, E[x~ x~^T] = C + sigma^2 I around m, so W = (C + sigma^2 I)^{-1} C and b = m - m W. For
    p = N(0, s^2) this is the slope s^2 / (s^2 + sigma^2), Tweedie's denoiser of a Gaussian.

    Args:
      x: [N, D] samples.
      sigma: corruption standard deviation, >= 0.

    Returns:
      (W [D, D], b [D]) in float64, acting on row vectors.

    Raises:
      ValueError: if x is not [N, D] or sigma < 0.
    """
    check_2d(x)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    x = np.asarray(x, np.float64)
    m = x.mean(axis=0)
    xc = x - m
    cov = xc.T @ xc / len(x)  # [D, D]
    w = np.linalg.solve(cov + sigma**2 * np.eye(x.shape[1]), cov)
    return w, m - m @ w


def dae_score(reconstruct: Reconstruct, x: jax.Array, sigma: float) -> jax.Array:
    """The DAE score estimate (r(x) - x) / sigma^2 (Alain & Bengio 2014), [B, D] -> [B, D].

    `reconstruct` maps [B, D] -> [B, D]; sigma is the DAE's training corruption. The result estimates
    d log p(x) / dx (per input unit). Raises ValueError if x is not [B, D] or sigma <= 0.
    """
    check_2d(x)
    if not isinstance(sigma, jax.core.Tracer) and sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}.")
    x = jnp.asarray(x, jnp.float32)
    return (reconstruct(x) - x) / sigma**2


def tweedie_target(density: densities.GaussianMixture, x: jax.Array, sigma: float) -> jax.Array:
    """[B, D] (E[x | x~ = x] - x) / sigma^2 = grad log p_sigma(x): what a perfect DAE's score estimate is."""
    return (density.tweedie_denoiser(x, sigma) - jnp.asarray(x, jnp.float32)) / sigma**2


def score_metrics(
    reconstruct: Reconstruct, density: densities.GaussianMixture, x: jax.Array, sigma: float
) -> dict[str, float]:
    """The DAE score estimate at x (data samples: data-weighted) against the Tweedie target and the true score.

    Returns:
      {"rel_rmse_tweedie", "rel_rmse_true", "corr_tweedie", "corr_true"}: relative RMSEs (0 perfect, 1 = zero
      field) and Pearson correlations, see `densities.relative_rmse` / `densities.correlation`.
    """
    est = dae_score(reconstruct, x, sigma)
    tw, true = tweedie_target(density, x, sigma), density.score(x)
    return {
        "rel_rmse_tweedie": float(densities.relative_rmse(est, tw)),
        "rel_rmse_true": float(densities.relative_rmse(est, true)),
        "corr_tweedie": float(densities.correlation(est, tw)),
        "corr_true": float(densities.correlation(est, true)),
    }


def band_points(curve: densities.AbstractCurve, rng: jax.Array, n: int, band: tuple[float, float]) -> jax.Array:
    """[<= n, 2] points whose distance to the curve lies in [band[0], band[1]].

    Curve points are moved by a distance ~ U(band) in a random direction; the few whose nearest curve point
    changed (so the distance left the band) are dropped.
    """
    p_rng, a_rng, d_rng = jax.random.split(rng, 3)
    angle = jax.random.uniform(a_rng, (n,), maxval=2 * np.pi)
    dist = jax.random.uniform(d_rng, (n, 1), minval=band[0], maxval=band[1])
    x = curve.sample(p_rng, n) + dist * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    d = np.asarray(curve.distance(x))
    return x[(d >= band[0]) & (d <= band[1])]


def manifold_metrics(
    reconstruct: Reconstruct,
    curve: densities.AbstractCurve,
    rng: jax.Array,
    *,
    n: int = 2000,
    band: tuple[float, float] = (0.08, 0.3),
) -> dict[str, float]:
    """Does r(x) - x point to the manifold? (Alain & Bengio 2014; DL book Fig. 14.5.)

    Returns:
      {"median_cosine", "mean_cosine", "frac_cosine_gt_0.9"}: cosine between r(x) - x and the unit direction
      to the nearest curve point, for x in the distance band; "norm_on" / "norm_off": mean ||r(x) - x|| on the
      curve and in the band (input units), and their ratio "on_off_ratio" (small: the field vanishes on the
      manifold).
    """
    on_rng, off_rng = jax.random.split(rng)
    x_off = band_points(curve, off_rng, n, band)
    disp = reconstruct(x_off) - x_off
    cos = np.asarray(densities.cosine(disp, curve.direction_to_manifold(x_off)))
    x_on = curve.sample(on_rng, n)
    norm_on = float(jnp.mean(jnp.linalg.norm(reconstruct(x_on) - x_on, axis=1)))
    norm_off = float(jnp.mean(jnp.linalg.norm(disp, axis=1)))
    return {
        "median_cosine": float(np.median(cos)),
        "mean_cosine": float(np.mean(cos)),
        "frac_cosine_gt_0.9": float(np.mean(cos > 0.9)),
        "norm_on": norm_on,
        "norm_off": norm_off,
        "on_off_ratio": norm_on / norm_off,
    }


def sigma_sweep(
    density: densities.GaussianMixture,
    sigmas: Sequence[float],
    seeds: Sequence[int],
    *,
    num_train: int = 4000,
    num_eval: int = 2000,
    **train_kwargs,
) -> list[dict[str, float]]:
    """Bias and variance of the DAE score estimate across corruption levels (Alain & Bengio 2014).

    One DAE per (sigma, seed), each on its own training sample. At data-distributed eval points, with s_k the
    estimate of seed k, s_bar their mean and g the true score, normalised by mean ||g||^2: "rel_bias" =
    sqrt(mean ||s_bar - g||^2) (it includes variance / K), "rel_std" = sqrt(mean_k ||s_k - s_bar||^2) (ddof 1),
    "tweedie_gap" = relative RMSE of the exact Tweedie target to g (the bias a perfect DAE keeps), and the
    seed-averaged "rel_rmse_true", "rel_rmse_tweedie" of `score_metrics`.

    Returns:
      One dict per sigma with "sigma" and the keys above. Raises ValueError for fewer than 2 seeds.
    """
    if len(seeds) < 2:
        raise ValueError(f"A variance needs at least 2 seeds, got {len(seeds)}.")
    x_eval = density.sample(jax.random.key(10_000), num_eval)
    true = density.score(x_eval)
    norm = float(jnp.mean(jnp.sum(jnp.square(true), axis=1)))
    rows = []
    for sigma in sigmas:
        ests, mets = [], []
        for seed in seeds:
            x = np.asarray(density.sample(jax.random.key(seed), num_train))
            dae = train_dae(x, sigma=sigma, seed=seed, **train_kwargs)
            ests.append(np.asarray(dae_score(dae, x_eval, sigma)))
            mets.append(score_metrics(dae, density, x_eval, sigma))
        ests = np.stack(ests)  # [K, N, D]
        mean = ests.mean(axis=0)
        bias2 = np.mean(np.sum(np.square(mean - np.asarray(true)), axis=1)) / norm
        var = np.mean(np.sum(np.var(ests, axis=0, ddof=1), axis=1)) / norm
        tw = tweedie_target(density, x_eval, sigma)
        row = {"sigma": float(sigma), "rel_bias": float(np.sqrt(bias2)), "rel_std": float(np.sqrt(var))}
        row["tweedie_gap"] = float(densities.relative_rmse(tw, true))
        for key in ("rel_rmse_true", "rel_rmse_tweedie"):
            row[key] = float(np.mean([m[key] for m in mets]))
        rows.append(row)
    return rows
