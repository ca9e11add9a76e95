"""The main job: a deep autoencoder on the 5,000 real MNIST digits (4,000 train / 1,000 test).

Hinton & Salakhutdinov (2006): 784-1000-500-250-30 with a linear code layer and a Bernoulli (cross-entropy)
decoder. This is a CPU-scale analogue (4,000 training digits, Adam, no RBM pretraining) of their full-MNIST run.

  python launch.py                                                   # = configs/mnist_ae.py, variant ""
  python launch.py --config=configs/mnist_ae.py:code2                # 784-1000-500-250-2, 2-D codes (Fig 3)
  python launch.py --config=configs/mnist_ae.py:runlocal --workdir=/tmp/ae   # seconds, for smoke tests
  python launch.py --config.dataset=mnist_idx --config.manual_dir=~/mnist    # full MNIST from IDX files

Variants (comma separated): "" (default), "code2", "runlocal", "digits" (sklearn 8x8 digits).
"""

import ml_collections

from configs import variants as variants_lib

VARIANTS = ("code2", "runlocal", "digits")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)

    c = ml_collections.ConfigDict()
    c.trainer = "train"  # a job registered in aejax/jobs ("train": build, loop, analyse; "stacked", ...)
    c.seed = 0
    c.dataset = "mnist5k"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: TFDS default (TFDS_DATA_DIR)
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)  # for mnist_idx
    # Classes of the train split to keep: "" all, "3" or "1,7" (the one-class protocol of anomaly detection,
    # aejax/analysis/reports/anomaly.py); the test split is never filtered.
    c.train_classes = ""
    # How splits are read (aejax/data/streaming.py): "memory" whole into memory; "stream" batch by batch from
    # disk with prefetch (activation stores only); "auto" streams a store's split larger than max_memory_gb GiB.
    c.data_loading = "auto"
    c.max_memory_gb = 8.0
    # Declared input transforms (aejax/data/transforms.py): scale "auto" (uint8 / 255) or "none"; standardize
    # "none", "per_feature" (z-normalisation with train statistics) or "per_series"; binarize "none", "static"
    # (x > threshold) or "dynamic" (a fresh Bernoulli sample of each training batch).
    c.transforms = ml_collections.ConfigDict(
        dict(scale="auto", standardize="none", binarize="none", threshold=0.5)
    )

    c.model_name = "mlp"
    c.model = ml_collections.ConfigDict(
        dict(
            hidden=(1000, 500, 250),
            code_dim=30,
            activation="relu",
            code_activation="linear",
            tied=False,
        )
    )
    c.likelihood = "bernoulli"
    c.objective = "autoencoder"
    # Denoising: name in aejax.corruptions ("gaussian", "masking", "salt_and_pepper") or "none"; the
    # corruption reads the hyperparameters it takes (sigma, nu) from here. Emphasis: Vincent et al. 2010.
    c.corruption = ml_collections.ConfigDict(
        dict(name="none", sigma=0.3, nu=0.25, clip=False, emphasis_alpha=1.0, emphasis_beta=1.0)
    )
    # Penalties: regularizer name -> dict(weight=..., [warmup_steps=...], **hparams); see aejax/regularizers.
    c.regularizers = ml_collections.ConfigDict()

    c.batch_size = 128
    c.num_epochs = 60
    c.num_train_steps = 0  # > 0 overrides num_epochs
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            weight_decay=0.0,
            grad_clip_norm=0.0,
        )
    )

    c.log_every = 50
    c.eval_every = 500
    c.eval_batch_size = 500
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    # Train steps per jitted call (a lax.scan over steps, batches gathered on the device): 1 is one dispatch per
    # step; 0 ("auto") is the largest divisor of the log/eval/checkpoint intervals up to 32 (aejax/loop.py).
    c.steps_per_call = 0
    # The device mesh, data x model (aejax/sharding.py): batches split over "data"; an SAE's latents split over
    # "model" (--config.mesh.model=8 on an 8-GPU host). -1: the devices left. Must fit jax.devices() exactly.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
    # reports: comma-separated modules of aejax/analysis/reports run after training (e.g. "sparsity").
    # max_code_rows: the test codes a streamed evaluation keeps (its first rows) for the embedding and reports.
    c.analysis = ml_collections.ConfigDict(
        dict(pca_baseline=True, embedding="tsne", reports="", max_code_rows=32768)
    )

    if "code2" in variants:
        c.model.code_dim = 2
    if "digits" in variants:
        c.dataset = "digits"
        c.model.hidden = (64, 32)
        c.model.code_dim = 8
        c.num_epochs = 100
    if "runlocal" in variants:
        c.model.hidden = (64, 32)
        c.model.code_dim = 8
        c.num_epochs = 0
        c.num_train_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
        c.analysis.embedding = "pca"
    return c.lock()
