"""The byte-level transformer language model on the Python standard library (issue 20): the job aejax.jobs.lm.

The activation source of the sparse autoencoders: a causal byte transformer (aejax/byte_lm.py) trained by the one
loop on `pystdlib` (the running interpreter's stdlib .py files, 5% of the files held out), beside a bigram byte
model fitted by counting on the same training bytes (the baseline it must beat).

  python launch.py --config=configs/lm.py --workdir=/tmp/lm          # full corpus, ~5 CPU min (README)
  python launch.py --config=configs/lm.py:runlocal --workdir=/tmp/lm_tiny    # tiny corpus, seconds

Variants (comma separated): "runlocal" (the tiny corpus and a tiny model), "wide" (d_model 256, 4 layers:
slower, for better activations when time allows).
"""

import ml_collections

from configs import variants as variants_lib

VARIANTS = ("runlocal", "wide")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)

    c = ml_collections.ConfigDict()
    c.trainer = "lm"
    c.seed = 0
    c.dataset = "pystdlib"  # windows of 128 bytes: 127 predicted bytes each
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)
    c.model_name = "byte_lm"  # aejax.byte_lm.ByteLM (beside the autoencoder registry)
    c.model = ml_collections.ConfigDict(dict(context=128, d_model=128, n_layers=3, n_heads=4, d_mlp=512))
    c.objective = "lm"

    c.batch_size = 32
    c.num_epochs = 0
    c.num_train_steps = 600
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=3e-3,
            schedule="warmup_cosine",
            warmup_steps=60,
            weight_decay=0.0,  # adamw's own decay stays at optax's default; kernels-only decay is off
            grad_clip_norm=1.0,
        )
    )
    c.log_every = 50
    c.eval_every = 600  # one evaluation, at the end: the test split is ~4,800 windows (~40 s here)
    c.eval_batch_size = 256
    c.checkpoint_every = 100
    c.keep_checkpoints = 1
    c.steps_per_call = 0  # auto: 25 steps per jitted call
    c.lm = ml_collections.ConfigDict(
        dict(
            prompt="def ",  # the sample written to sample.txt after training
            sample_length=400,
            temperature=0.8,  # 0: greedy
        )
    )

    if "wide" in variants:
        c.model.update(d_model=256, n_layers=4, n_heads=8, d_mlp=1024)
    if "runlocal" in variants:
        c.dataset = "pystdlib/tiny"
        c.model.update(context=128, d_model=32, n_layers=2, n_heads=2, d_mlp=64)
        c.batch_size = 8
        c.num_train_steps = 20
        c.optimizer.warmup_steps = 5
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
        c.lm.sample_length = 40
    return c.lock()
