"""Score-matching analysis of denoising autoencoders (Alain & Bengio, JMLR 2014): the job aejax.jobs.score_dae.

A small MLP DAE is trained on samples of densities with known scores (a 1-D Gaussian mixture, a noisy spiral in
2-D); its (r(x) - x) / sigma^2 is compared with the true score and the Tweedie target, its field r(x) - x with
the direction to the manifold, across a sweep of sigma; then it samples (Langevin, DAE Markov chain).

  python launch.py --config=configs/score_dae.py                 # everything (about 1.5-2 min CPU)
  python launch.py --config=configs/score_dae.py:quick           # everything, smaller (about 1-1.5 min CPU)
  python launch.py --config=configs/score_dae.py:spiral --workdir=/tmp/spiral   # one analysis only
  python launch.py --config=configs/score_dae.py:quick --config.score.mixture_sigma=0.3

Variants (comma separated): "" (all tasks), "mixture1d", "spiral", "sweep", "sampling" (select tasks; sampling
reuses the DAEs of mixture1d and spiral), "quick" (fewer steps, smaller sweep), "runlocal" (seconds, smoke test).
Outputs in the workdir: results.json and score_1d.png, spiral_field.png (DL book Fig 14.5),
spiral_corruption.png (Fig 14.4), sigma_sweep.png, samples_1d.png, samples_spiral.png.
"""

import ml_collections

from configs import variants as variants_lib

TASKS = ("mixture1d", "spiral", "sweep", "sampling")
VARIANTS = (*TASKS, "quick", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    tasks = [t for t in TASKS if t in variants] or list(TASKS)
    if "sampling" in tasks:  # sampling uses the DAEs of both densities
        tasks = sorted({*tasks, "mixture1d", "spiral"}, key=TASKS.index)

    c = ml_collections.ConfigDict()
    c.trainer = "score_dae"
    c.seed = 0
    # Every DAE's optimizer (aejax.optim.make_optimizer): Adam, peak rate 1e-2, cosine decay over its steps.
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-2,
            schedule="cosine",
            warmup_steps=0,
            weight_decay=0.0,
            grad_clip_norm=0.0,
        )
    )
    c.score = ml_collections.ConfigDict(
        dict(
            tasks=",".join(tasks),
            # The DAE: aejax.models.mlp with a linear code (score.train_dae), the optimizer of c.optimizer.
            hidden=(64, 64),
            code_dim=64,
            activation="tanh",
            batch_size=512,
            steps=2000,
            num_train=10_000,
            num_eval=2000,
            # 1-D mixture (densities.mixture_1d): DAE and reconstruction-contractive AE (lambda = sigma^2).
            mixture_sigma=0.5,
            rcae=True,
            # Spiral (densities.Spiral) with N(0, noise^2) off the curve; cosines in a distance band.
            spiral_noise=0.02,
            spiral_sigma=0.2,
            band=(0.08, 0.3),
            # Sweep on the 1-D mixture: one DAE per (sigma, seed).
            sweep_sigmas=(0.1, 0.2, 0.3, 0.5, 1.0),
            sweep_seeds=(0, 1, 2),
            sweep_steps=1000,
            # Sampling from a uniform start over the data's range.
            num_samples=2000,
            langevin_step=0.01,
            langevin_steps=1000,
            chain_steps=100,
        )
    )
    if "quick" in variants:
        c.score.steps = 800
        c.score.sweep_sigmas = (0.1, 0.3, 1.0)
        c.score.sweep_seeds = (0, 1)
        c.score.sweep_steps = 600
        c.score.langevin_steps = 500
        c.score.chain_steps = 50
    if "runlocal" in variants:
        c.score.steps = 20
        c.score.num_train = 2048
        c.score.num_eval = 256
        c.score.sweep_sigmas = (0.3, 1.0)
        c.score.sweep_seeds = (0, 1)
        c.score.sweep_steps = 10
        c.score.num_samples = 256
        c.score.langevin_steps = 10
        c.score.chain_steps = 5
    return c.lock()
