"""Score-matching analysis of denoising autoencoders (Alain & Bengio, JMLR 2014), as a launchable job.

Tasks (`config.score.tasks`, comma separated):
- mixture1d: a DAE (and the reconstruction-contractive AE) on the 1-D mixture; its (r(x) - x) / sigma^2 against
  the Tweedie target and the true score; figure score_1d.png.
- spiral: a DAE on a noisy spiral; cosine of r(x) - x with the direction to the curve in a distance band, the
  field's norm on and off the curve; spiral_field.png (DL book Fig 14.5), spiral_corruption.png (Fig 14.4).
- sweep: bias and seed-to-seed spread of the score estimate across sigma; sigma_sweep.png.
- sampling: Langevin with the learned score and the DAE Markov chain (Bengio et al. 2013) from a uniform
  start; energy distance to held-out data next to the noise-smoothed data x + sigma eps and a fresh data
  sample (the sampling-noise floor); samples_1d.png, samples_spiral.png.
Writes results.json into the workdir; the DAEs of mixture1d and spiral keep checkpoints and metrics in
dae_1d/, rcae_1d/ and dae_spiral/ (a relaunch resumes them); the sweep's many small DAEs are kept in memory.
Every DAE trains through the one loop with the config's optimizer (`config.optimizer`). Registered as the job
"score_dae" (`config.trainer = "score_dae"`).
"""

import json
import os
import time

import jax
import ml_collections
import numpy as np

from aejax import build, optim, runs
from aejax.analysis import densities, score, score_plots, score_sampling
from aejax.jobs import JOBS, Job

TASKS = ("mixture1d", "spiral", "sweep", "sampling")


def _dae_kwargs(config: ml_collections.ConfigDict) -> dict:
    keys = ("hidden", "code_dim", "activation", "batch_size")
    return {**{k: config.score[k] for k in keys}, "optimizer": config.optimizer}


def _sampling(dae, sigma, data, held_out, rng, s, name, workdir) -> dict:
    """Langevin, the DAE chain (mean only and with Tweedie posterior noise) and baselines, from uniform x0."""
    n = s.num_samples
    u_rng, l_rng, c_rng, b_rng = jax.random.split(rng, 4)
    lo, hi = data.min(axis=0), data.max(axis=0)
    x0 = np.asarray(jax.random.uniform(u_rng, (n, data.shape[1]), minval=lo, maxval=hi))
    sets = {
        "held-out data": held_out[:n],
        "fresh data (floor)": data[:n],
        "data + sigma eps (baseline)": data[n : 2 * n]
        + sigma * np.asarray(jax.random.normal(b_rng, (n, data.shape[1]))),
        "Langevin": score_sampling.langevin(
            lambda x: score.dae_score(dae, x, sigma),
            x0,
            l_rng,
            step_size=s.langevin_step,
            num_steps=s.langevin_steps,
        ),
        "DAE chain, mean": score_sampling.dae_chain(
            dae, x0, c_rng, sigma=sigma, num_steps=s.chain_steps, posterior_noise=False
        ),
        "DAE chain, Tweedie noise": score_sampling.dae_chain(dae, x0, c_rng, sigma=sigma, num_steps=s.chain_steps),
    }
    sets = {k: np.asarray(v) for k, v in sets.items()}
    score_plots.samples(sets, os.path.join(workdir, f"samples_{name}.png"), title=f"{name}, sigma = {sigma}")
    ref = sets.pop("held-out data")
    return {f"energy/{k}": float(score_sampling.energy_distance(v, ref)) for k, v in sets.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the tasks of `config.score.tasks`; returns (and writes to workdir/results.json) their numbers.

    Raises:
      KeyError / ValueError: for an unknown task, optimizer or schedule, or bad optimizer hyperparameters,
        before any training.
    """
    unknown = sorted(set(filter(None, config.score.tasks.split(","))) - set(TASKS))
    if unknown:
        raise KeyError(f"Unknown config.score.tasks {', '.join(unknown)}. Known tasks: {', '.join(TASKS)}.")
    optim.make_optimizer(config.optimizer, config.score.steps)  # a bad optimizer fails before any training
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    build.write_config(config, workdir)
    s = config.score
    tasks = [t for t in s.tasks.split(",") if t]
    kw = _dae_kwargs(config)
    rng = jax.random.key(config.seed)
    results, daes, start = {"tasks": tasks}, {}, time.time()

    if "mixture1d" in tasks:
        gm, sigma = densities.mixture_1d(), s.mixture_sigma
        x = np.asarray(gm.sample(jax.random.fold_in(rng, 1), s.num_train + 2 * s.num_samples))
        x_eval = gm.sample(jax.random.fold_in(rng, 2), s.num_eval)
        estimates = {
            "DAE": score.train_dae(
                x[: s.num_train], sigma=sigma, steps=s.steps, seed=config.seed, workdir=f"{workdir}/dae_1d", **kw
            )
        }
        if s.rcae:
            estimates["RCAE"] = score.train_dae(
                x[: s.num_train],
                sigma=sigma,
                steps=s.steps,
                seed=config.seed,
                contractive=True,
                workdir=f"{workdir}/rcae_1d",
                **kw,
            )
        for label, fn in estimates.items():
            results[f"mixture1d/{label}"] = score.score_metrics(fn, gm, x_eval, sigma)
        results["mixture1d/tweedie_gap"] = float(
            densities.relative_rmse(score.tweedie_target(gm, x_eval, sigma), gm.score(x_eval))
        )
        score_plots.score_1d(estimates, gm, os.path.join(workdir, "score_1d.png"), sigma=sigma)
        daes["1d"] = (estimates["DAE"], sigma, x[s.num_train :], np.asarray(x_eval))

    if "spiral" in tasks:
        curve, sigma = densities.Spiral(), s.spiral_sigma
        n_all = s.num_train + 2 * s.num_samples
        x = np.asarray(curve.sample(jax.random.fold_in(rng, 3), n_all, s.spiral_noise))
        dae = score.train_dae(
            x[: s.num_train], sigma=sigma, steps=s.steps, seed=config.seed, workdir=f"{workdir}/dae_spiral", **kw
        )
        results["spiral"] = score.manifold_metrics(dae, curve, jax.random.fold_in(rng, 4), band=tuple(s.band))
        score_plots.field_quiver(dae, curve, x, os.path.join(workdir, "spiral_field.png"))
        score_plots.corruption_denoising(
            dae, curve, jax.random.fold_in(rng, 5), os.path.join(workdir, "spiral_corruption.png"), sigma=sigma
        )
        held_out = np.asarray(curve.sample(jax.random.fold_in(rng, 6), s.num_samples, s.spiral_noise))
        daes["spiral"] = (dae, sigma, x[s.num_train :], held_out)

    if "sweep" in tasks:
        rows = score.sigma_sweep(
            densities.mixture_1d(),
            s.sweep_sigmas,
            s.sweep_seeds,
            num_train=s.num_train,
            num_eval=s.num_eval,
            steps=s.sweep_steps,
            **kw,
        )
        results["sweep"] = rows
        score_plots.sigma_sweep(rows, os.path.join(workdir, "sigma_sweep.png"))

    if "sampling" in tasks:
        for i, (name, (dae, sigma, data, held_out)) in enumerate(sorted(daes.items())):
            results[f"sampling/{name}"] = _sampling(
                dae, sigma, data, held_out, jax.random.fold_in(rng, 100 + i), s, name, workdir
            )

    results["train_time_s"] = time.time() - start
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-runs the tasks of a finished score run with its own config.json: the checkpointed DAEs (dae_1d/,
    rcae_1d/, dae_spiral/) are restored without training; the sweep's in-memory DAEs are trained again.

    Raises:
      ValueError: if `reports` are asked for (the score analysis has no per-run reports).
    """
    if reports:
        raise ValueError(f"Score runs have no per-run reports (asked for {reports!r}); drop --reports.")
    return train_and_evaluate(runs.load_config(workdir), workdir)


JOB = JOBS.register("score_dae")(Job(train_and_evaluate, reanalyse))
