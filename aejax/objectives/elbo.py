"""The evidence lower bound of a VAE (Kingma & Welling 2014) and the importance-weighted bound (Burda et al.
2016), as a training objective and as the evaluation of log p(x).

For q(z | x) = N(mu, diag exp(logvar)), the prior p(z) = N(0, I) and the decoder likelihood p(x | z):

    ELBO(x)   = E_q[log p(x | z)] - KL(q(z | x) || p(z))                      (Kingma & Welling 2014, eq. 3)
    IWAE_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x)      (Burda et al. 2016, eq. 8)

with ELBO = IWAE_1 <= IWAE_k <= IWAE_{k+1} <= log p(x). The KL is the closed form
0.5 * sum_j (exp(logvar_j) + mu_j^2 - 1 - logvar_j) (Kingma & Welling 2014, appendix B).

Config (`config.vae`): `beta` (weight of the KL, the beta-VAE of Higgins et al. 2017) ramped linearly from 0
over `kl_warmup_steps` (0: no warm-up); `train_samples` k (1: the ELBO with the analytic KL; k > 1: the IWAE_k
bound with log p(z) - log q(z | x) weighted by beta, whose k = 1 expectation is the beta-ELBO);
`eval_samples` and `eval_chunk` (importance samples of the evaluation bound, drawn `eval_chunk` at a time).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aejax.data.batch import Batch
from aejax.likelihoods import Likelihood, squared_error
from aejax.models.vae import AbstractVAE
from aejax.objectives import (
    ELBO,
    IWAE,
    KL,
    OBJECTIVES,
    RECON_NLL,
    SQ_ERR,
    EvalOutput,
    Objective,
    refuse_unsupported,
)

LOG_2PI = float(np.log(2 * np.pi))


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, diag exp(logvar)) || N(0, I)): mu, logvar [..., K] -> [...] nats."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


def log_normal_diag(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mu, diag exp(logvar)): [..., K] -> [...] nats."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(z - mu) * jnp.exp(-logvar), axis=-1)


def log_weights(model: AbstractVAE, variables, likelihood: Likelihood, x, mu, logvar, eps, beta=1.0):
    """Log importance weights of reparameterised samples z = mu + exp(logvar / 2) * eps.

    Args:
      model, variables: the VAE and its variables; likelihood: the decoder likelihood.
      x: [B, *input_shape] data; mu, logvar: [B, K] of q(z | x); eps: [S, B, K] standard normal draws.
      beta: weight of log p(z) - log q(z | x) (1 for the bound on log p(x)).

    Returns:
      (log w [S, B] = log p(x | z) + beta * (log p(z) - log q(z | x)), log p(x | z) [S, B]), nats.
    """
    s, b, k = eps.shape
    mu, logvar = mu[None], logvar[None]  # [1, B, K]: explicit ranks (strict rank promotion)
    z = mu + jnp.exp(0.5 * logvar) * eps  # [S, B, K]
    out = model.apply(variables, z.reshape(s * b, k), method="decode")
    x_rep = jnp.broadcast_to(x, (s, *x.shape)).reshape(s * b, *x.shape[1:])
    log_px_z = -likelihood.nll(out, x_rep).reshape(s, b)
    log_pz = log_normal_diag(z, jnp.zeros_like(z), jnp.zeros_like(z))
    log_qz = log_normal_diag(z, mu, logvar)
    return log_px_z + beta * (log_pz - log_qz), log_px_z


def importance_bound(
    model: AbstractVAE, variables, likelihood: Likelihood, x, rng, *, num_samples: int, chunk: int
):
    """IWAE_k and the mean of log p(x | z_i) over the same k samples, `chunk` samples at a time.

    Sample i uses eps_i = normal(fold_in(rng, i)), so the result does not depend on `chunk`; a `lax.map` over
    the k / chunk chunks accumulates log sum_i w_i with `logaddexp`, so memory holds one chunk of decoder
    outputs, not k.

    Args:
      x: [B, *input_shape]; rng: a key; num_samples: k; chunk: samples per chunk, dividing k.

    Returns:
      (iwae [B], mean_i log p(x | z_i) [B]), nats per example.

    Raises:
      ValueError: if chunk does not divide num_samples or either is < 1.
    """
    if num_samples < 1 or chunk < 1 or num_samples % chunk:
        raise ValueError(f"eval_chunk ({chunk}) must be >= 1 and divide eval_samples ({num_samples}).")
    mu, logvar = model.apply(variables, x, method="posterior")

    def one_chunk(j):
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(j * chunk + jnp.arange(chunk))
        eps = jax.vmap(lambda key: jax.random.normal(key, mu.shape, mu.dtype))(keys)  # [C, B, K]
        log_w, log_px_z = log_weights(model, variables, likelihood, x, mu, logvar, eps)
        return jax.nn.logsumexp(log_w, axis=0), log_px_z.sum(axis=0)  # [B], [B]

    lse, sum_log_px = jax.lax.map(one_chunk, jnp.arange(num_samples // chunk))  # [J, B] each
    iwae = jax.nn.logsumexp(lse, axis=0) - jnp.log(float(num_samples))
    return iwae, sum_log_px.sum(axis=0) / num_samples


def make_loss_fn(model: AbstractVAE, likelihood: Likelihood, *, beta, train_samples: int = 1):
    """Returns loss_fn(params, model_state, batch, rng, step) -> ([] loss, (metrics, model_state)).

    loss = mean_B -(E_q[log p(x | z)] - beta(step) * KL) for train_samples = 1 (one reparameterised sample,
    analytic KL), else mean_B -log (1/k) sum_i w_i with the weights of `log_weights`. Metrics: "loss/recon_nll"
    and "loss/kl" (unweighted, k = 1), "loss/bound" (k > 1) and "beta". beta is a float or an optax schedule.
    """

    def loss_fn(params, model_state, batch: Batch, rng: jax.Array, step: jax.Array):
        variables = {"params": params, **model_state}
        beta_t = beta(step) if callable(beta) else jnp.float32(beta)
        mu, logvar = model.apply(variables, batch.x, method="posterior")
        eps = jax.random.normal(rng, (train_samples, *mu.shape), mu.dtype)
        if train_samples == 1:
            z = mu + jnp.exp(0.5 * logvar) * eps[0]
            recon = likelihood.nll(model.apply(variables, z, method="decode"), batch.x).mean()
            kl = gaussian_kl(mu, logvar).mean()
            metrics = {"loss/recon_nll": recon, "loss/kl": kl, "beta": beta_t}
            return recon + beta_t * kl, (metrics, model_state)
        log_w, _ = log_weights(model, variables, likelihood, batch.x, mu, logvar, eps, beta_t)
        bound = (jax.nn.logsumexp(log_w, axis=0) - jnp.log(float(train_samples))).mean()
        return -bound, ({"loss/bound": bound, "beta": beta_t}, model_state)

    return loss_fn


def make_eval_fn(model: AbstractVAE, likelihood: Likelihood, *, eval_samples: int, eval_chunk: int):
    """Returns eval_fn(params, model_state, batch, rng) -> EvalOutput(metrics, code = mu [B, K]).

    Metrics [B], nats per example: "iwae" (IWAE_k, k = eval_samples), "recon_nll" (-mean_i log p(x | z_i) over
    the same samples), "kl" (closed form), "elbo" (= -recon_nll - kl, the Monte Carlo ELBO), and "sq_err"
    (squared error of the mean reconstruction at z = mu, summed over the input's components).
    """

    def eval_fn(params, model_state, batch: Batch, rng: jax.Array) -> EvalOutput:
        variables = {"params": params, **model_state}
        mu, logvar = model.apply(variables, batch.x, method="posterior")
        iwae, mean_log_px = importance_bound(
            model, variables, likelihood, batch.x, rng, num_samples=eval_samples, chunk=eval_chunk
        )
        kl = gaussian_kl(mu, logvar)
        recon = likelihood.mean(model.apply(variables, mu, method="decode"))
        metrics = {
            ELBO: mean_log_px - kl,
            RECON_NLL: -mean_log_px,
            KL: kl,
            IWAE: iwae,
            SQ_ERR: squared_error(recon, batch.x),
        }
        return EvalOutput(metrics=metrics, code=mu)

    return eval_fn


def check_model(model, likelihood: Likelihood) -> None:
    """Raises ValueError unless `model` is a VAE whose decoder output fits `likelihood` (a learned decoder
    variance goes with "gaussian_learned", a fixed one with any other likelihood)."""
    if not isinstance(model, AbstractVAE):
        raise ValueError(
            f'The "elbo" objective needs a VAE (model_name "vae" or "conv_vae"), got {type(model).__name__}.'
        )
    learned = model.decoder_variance != "fixed"
    if learned != (likelihood.name == "gaussian_learned"):
        raise ValueError(
            f'decoder_variance={model.decoder_variance!r} needs likelihood "gaussian_learned" exactly when the '
            f"variance is learned; got likelihood {likelihood.name!r}."
        )


@OBJECTIVES.register("elbo")
def from_config(config: ml_collections.ConfigDict, model: AbstractVAE, likelihood: Likelihood) -> Objective:
    """The ELBO / IWAE objective of `config.vae` (beta, kl_warmup_steps, train_samples, eval_samples,
    eval_chunk).

    Raises:
      ValueError: for a model that is not a VAE, a likelihood that does not fit its decoder, train_samples < 1
        or an eval_chunk that does not divide eval_samples; for config.regularizers or a corruption, which the
        ELBO does not apply (`objectives.refuse_unsupported`).
    """
    refuse_unsupported(config, "elbo")
    check_model(model, likelihood)
    cfg = config.vae
    if cfg.train_samples < 1:
        raise ValueError(f"vae.train_samples must be >= 1, got {cfg.train_samples}.")
    if cfg.eval_samples < 1 or cfg.eval_chunk < 1 or cfg.eval_samples % cfg.eval_chunk:
        raise ValueError(f"vae.eval_chunk ({cfg.eval_chunk}) must divide vae.eval_samples ({cfg.eval_samples}).")
    beta = cfg.beta
    if cfg.kl_warmup_steps:
        beta = optax.linear_schedule(0.0, cfg.beta, cfg.kl_warmup_steps)
    return Objective(
        make_loss_fn(model, likelihood, beta=beta, train_samples=cfg.train_samples),
        make_eval_fn(model, likelihood, eval_samples=cfg.eval_samples, eval_chunk=cfg.eval_chunk),
    )
