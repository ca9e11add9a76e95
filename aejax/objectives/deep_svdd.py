"""Deep SVDD (Ruff et al., ICML 2018, "Deep One-Class Classification"): an encoder phi trained to map the normal
data into a small hypersphere of centre c; the anomaly score is the squared distance to c.

- One-class (their eq. 4): min_W (1/n) sum_i ||phi(x_i; W) - c||^2 + (lambda/2) sum_l ||W_l||_F^2.
- Soft-boundary (eq. 3): min_{R, W} R^2 + 1/(nu n) sum_i max(0, ||phi(x_i; W) - c||^2 - R^2) + weight decay; nu in
  (0, 1] bounds the fraction of training points outside the sphere from above. R is not a gradient variable: it
  is set every `radius_every` steps after `warmup_steps` to the (1 - nu)-quantile of the training distances
  ||phi(x) - c|| (their Sec. 3.1, "solve for R by line search every k epochs"; the quantile is that solution).
- Score s(x) = ||phi(x) - c||^2 (one-class) or ||phi(x) - c||^2 - R^2 (soft-boundary; > 0 outside the sphere).

The trivial solution phi = c is what the paper's rules exclude (Props. 1-3): c is fixed before training as the
mean of the initial (pre-trained) codes, never learned; the network has no bias terms (a bias can absorb c and
zero every weight); no bounded activation (a saturated unit is a constant). `check_no_collapse` refuses such
networks by parameter path; `initial_center` moves every coordinate with |c_j| < eps to +-eps (Ruff's code),
so c != 0 and the all-zero map of a bias-free network (phi(x) = 0 at zero weights) cannot reach it.

Weight decay lives in the optimizer (`config.optimizer.weight_decay`, `aejax.optim`), not in the loss.
The wrapper `DeepSVDDNet` holds the encoder (`AbstractAutoencoder.encode`, any aejax autoencoder: MLP, conv,
sequence) and keeps c and R^2 in its "svdd" collection, so a checkpoint holds them and a restored run scores
exactly as the trained one.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aejax import train_step as ts
from aejax.data.batch import Batch
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import EvalOutput, Objective

KINDS = ("one_class", "soft_boundary")
COLLECTION = "svdd"  # the model_state collection holding the centre and the radius
CENTER = "center"  # [K] c, fixed
RADIUS_SQ = "radius_sq"  # [] R^2 (soft-boundary; 0 for one-class)
ENCODER = "autoencoder"  # the submodule of DeepSVDDNet whose encode is phi
# Per-example eval metrics ([B] each): the anomaly report reads SCORE.
DIST_SQ = "svdd_dist_sq"  # ||phi(x) - c||^2, squared code units
SCORE = "svdd_score"  # DIST_SQ - R^2 (soft-boundary) or DIST_SQ (one-class)
# Activations that saturate to a constant (Ruff et al. 2018, Prop. 3); a config naming them is refused.
BOUNDED_ACTIVATIONS = ("sigmoid", "tanh")
BIAS_NAMES = ("bias",)  # flax's name of an additive offset (Dense, Conv, BatchNorm's shift)


class DeepSVDDNet(nn.Module):
    """phi(x) = autoencoder.encode(x): [B, *input_shape] -> [B, K]; the centre c [K] and R^2 [] are variables of
    the "svdd" collection (initialised to zeros; the job writes c from `initial_center`)."""

    autoencoder: AbstractAutoencoder

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        code = self.autoencoder.encode(x, train=train)  # [B, K]
        self.variable(COLLECTION, CENTER, lambda: jnp.zeros(code.shape[-1], jnp.float32))
        self.variable(COLLECTION, RADIUS_SQ, lambda: jnp.zeros((), jnp.float32))
        return code


def check_no_collapse(params: Mapping[str, Any], model_config: Mapping[str, Any] | None = None) -> None:
    """Refuses an encoder that can learn the constant map phi = c (Ruff et al. 2018, Props. 2 and 3).

    Args:
      params: the encoder's parameters (DeepSVDDNet's "params", or any tree).
      model_config: the model's config (config.model); its "activation" / "code_activation" are checked.

    Raises:
      ValueError: naming every bias parameter path (build the network with `use_bias=False`) and every bounded
        activation of the config.
    """
    flat = traverse_util.flatten_dict(dict(params))
    biases = ["/".join(map(str, p)) for p in flat if str(p[-1]) in BIAS_NAMES or str(p[-1]).endswith("_bias")]
    bounded = [
        f"{k}={v!r}"
        for k, v in dict(model_config or {}).items()
        if k in ("activation", "code_activation") and v in BOUNDED_ACTIVATIONS
    ]
    problems = []
    if biases:
        problems.append(
            f"bias terms {', '.join(biases)} (a bias can map every input to c; build the pre-training network "
            "without them, e.g. --config.pretrain.model.use_bias=False)"
        )
    if bounded:
        problems.append(f"bounded activations {', '.join(bounded)} (a saturated unit is a constant)")
    if problems:
        raise ValueError(
            "Deep SVDD refuses an encoder that can collapse to the constant map phi(x) = c (Ruff et al. 2018, "
            f"Props. 2-3): {'; '.join(problems)}."
        )


def initial_center(codes: np.ndarray, eps: float = 0.1) -> np.ndarray:
    """c = mean of the initial codes [N, K] -> [K], every |c_j| < eps moved to -eps (c_j < 0) or +eps (c_j >= 0),
    as Ruff et al.'s code does (`init_center_c`), so that no coordinate sits at the zero a bias-free network
    reaches by zeroing its weights.

    Raises:
      ValueError: for codes not [N, K] with N >= 1, non-finite codes, or eps <= 0.
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 1:
        raise ValueError(f"codes must be [N, K] with N >= 1, got shape {codes.shape}.")
    if not np.all(np.isfinite(codes)):
        raise ValueError("The initial codes are not finite.")
    if not eps > 0:
        raise ValueError(f"eps={eps} must be > 0.")
    c = codes.mean(axis=0)
    small = np.abs(c) < eps
    return np.where(small, np.where(c < 0, -eps, eps), c).astype(np.float32)


def radius_sq(dist_sq: jax.Array, nu: float) -> jax.Array:
    """R^2 = (the (1 - nu)-quantile of ||phi(x) - c||)^2 over [N] squared distances (linear interpolation, as
    numpy's and Ruff's `get_radius`): the R that solves the soft-boundary problem for fixed W."""
    return jnp.square(jnp.quantile(jnp.sqrt(jnp.maximum(dist_sq, 0.0)), 1.0 - nu))


def loss_value(dist_sq: jax.Array, r_sq: jax.Array, kind: str, nu: float) -> jax.Array:
    """The data term of the objective over [B] squared distances -> []: mean(dist_sq) (one-class, eq. 4), or
    R^2 + (1/nu) mean(max(0, dist_sq - R^2)) (soft-boundary, eq. 3).

    Raises:
      KeyError: for an unknown kind, listing KINDS.
    """
    if kind == "one_class":
        return jnp.mean(dist_sq)
    if kind == "soft_boundary":
        return r_sq + jnp.mean(jnp.maximum(dist_sq - r_sq, 0.0)) / nu
    raise KeyError(f"Unknown Deep SVDD objective {kind!r}. Known: {', '.join(KINDS)}.")


def make_objective(
    net: DeepSVDDNet,
    *,
    kind: str,
    nu: float,
    train_x: np.ndarray | None = None,
    radius_every: int = 0,
    warmup_steps: int = 0,
    radius_batch: int = 1000,
) -> Objective:
    """The loop's Objective of Deep SVDD.

    Args:
      net: the wrapper; its variables hold params {"autoencoder": encoder}, "svdd" {center, radius_sq} and
        possibly "batch_stats" (updated from the batch in training, as in pre-training).
      kind: one of KINDS. nu: in (0, 1], the soft-boundary's outlier-fraction bound.
      train_x: [N, ...] the whole training split; soft-boundary only: R is recomputed on it (evaluation mode,
        chunks of `radius_batch`) after every update whose step count t >= warmup_steps is a multiple of
        `radius_every` (`Objective.after_update`).

    Returns:
      Objective: loss (metrics "loss/svdd", "radius_sq", "dist_sq"), eval (DIST_SQ, SCORE per example, code =
      phi(x)).

    Raises:
      KeyError: for an unknown kind; ValueError: for nu outside (0, 1], or soft-boundary without train_x or
        with radius_every < 1.
    """
    if kind not in KINDS:
        raise KeyError(f"Unknown Deep SVDD objective {kind!r}. Known: {', '.join(KINDS)}.")
    if not 0.0 < nu <= 1.0:
        raise ValueError(f"nu={nu} must be in (0, 1].")
    soft = kind == "soft_boundary"
    if soft and (train_x is None or radius_every < 1):
        raise ValueError("The soft-boundary objective needs train_x and radius_every >= 1 to update R.")

    def dists(params, model_state, x, train):
        variables = {"params": params, **model_state}
        stats = [k for k in model_state if k != COLLECTION]
        if train and stats:  # BatchNorm on batch statistics, its running averages updated
            code, new = net.apply(variables, x, train=True, mutable=stats)
            new_state = {**model_state, **new}
        else:
            code, new_state = net.apply(variables, x, train=train), model_state
        c = model_state[COLLECTION][CENTER]
        return code, jnp.sum(jnp.square(code - c[None, :]), axis=-1), new_state  # [B, K], [B]

    def loss_fn(params, model_state, batch: Batch, rng, step):
        del rng, step
        _, d, new_state = dists(params, model_state, batch.x, True)
        r_sq = model_state[COLLECTION][RADIUS_SQ]
        loss = loss_value(d, r_sq, kind, nu)
        return loss, ({"loss/svdd": loss, "radius_sq": r_sq, "dist_sq": jnp.mean(d)}, new_state)

    def eval_fn(params, model_state, batch: Batch, rng) -> EvalOutput:
        del rng
        code, d, _ = dists(params, model_state, batch.x, False)
        score = d - model_state[COLLECTION][RADIUS_SQ] if soft else d
        return EvalOutput(metrics={DIST_SQ: d, SCORE: score}, code=code)

    after_update = None
    if soft:
        chunks = [jnp.asarray(train_x[i : i + radius_batch]) for i in range(0, len(train_x), radius_batch)]

        def update_radius(state: ts.TrainState) -> ts.TrainState:
            d = jnp.concatenate([dists(state.params, state.model_state, x, False)[1] for x in chunks])
            svdd = {**state.model_state[COLLECTION], RADIUS_SQ: radius_sq(d, nu)}
            return state.replace(model_state={**state.model_state, COLLECTION: svdd})

        def after_update(state: ts.TrainState, batch: Batch, tx) -> ts.TrainState:
            del batch, tx
            due = (state.step >= warmup_steps) & (state.step % radius_every == 0)
            return jax.lax.cond(due, update_radius, lambda s: s, state)

    return Objective(loss_fn, eval_fn, after_update=after_update)
