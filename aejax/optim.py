"""The optimizer from the config: an optax optimizer, a learning-rate schedule, weight decay on kernels only."""

import jax
import ml_collections
import optax

SCHEDULES = ("constant", "cosine", "warmup_cosine")


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """`cfg.schedule` in SCHEDULES; `cfg.learning_rate` the peak; `cfg.warmup_steps` for warmup_cosine.

    Raises:
      KeyError: for an unknown schedule name.
    """
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=max(num_steps, 1))
    if cfg.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup_steps=cfg.warmup_steps, decay_steps=max(num_steps, cfg.warmup_steps + 1)
        )
    raise KeyError(f"Unknown schedule {cfg.schedule!r}. Known schedules: {', '.join(SCHEDULES)}.")


def _kernels_only(params):
    # Decay weights, not biases (the usual convention; biases have no prior to pull them to 0).
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def make_optimizer(
    cfg: ml_collections.ConfigDict, num_steps: int, *, where: str = "config.optimizer"
) -> optax.GradientTransformation:
    """`optax.<cfg.name>(learning_rate=schedule)`, preceded by weight decay on kernels if cfg.weight_decay > 0.

    `where` names the config section in error messages.

    Raises:
      KeyError: if `cfg.name` is not an optax optimizer.
      ValueError: for a negative learning rate (gradient ascent), weight decay, clipping norm or warm-up
        (naming the field).
    """
    for field, ok, rule in (
        ("learning_rate", cfg.learning_rate >= 0, ">= 0 (a negative rate is gradient ascent)"),
        ("weight_decay", cfg.weight_decay >= 0, ">= 0"),
        ("grad_clip_norm", cfg.grad_clip_norm >= 0, ">= 0 (0 disables clipping)"),
        ("warmup_steps", cfg.get("warmup_steps", 0) >= 0, ">= 0"),
    ):
        if not ok:
            raise ValueError(f"{where}.{field}={cfg.get(field)!r} must be {rule}.")
    factory = getattr(optax, cfg.name, None)
    if not callable(factory) or cfg.name.startswith("_"):
        known = "adam, adamw, sgd, rmsprop, lamb, lion, ... (any optax optimizer)"
        raise KeyError(f"Unknown optimizer {cfg.name!r}. Known optimizers: {known}.")
    tx = factory(learning_rate=learning_rate_schedule(cfg, num_steps))
    if cfg.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=_kernels_only), tx)
    if cfg.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
    return tx
