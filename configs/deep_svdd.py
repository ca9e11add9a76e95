"""Deep SVDD (Ruff et al., ICML 2018): a bias-free autoencoder pre-trained on the normal class, then its encoder
trained to pull the normal codes into a small hypersphere (`aejax/jobs/deep_svdd.py`).

The pre-training is an ordinary aejax run of `config.pretrain` (an autoencoder config; trained into
<workdir>/pretrain unless `deep_svdd.pretrained_workdir` names a finished run, which is then reused). Default:
Ruff et al.'s LeNet-type MNIST encoder in `aejax/models/conv.py` terms -- two 5x5 convolutions of 8 and 4
channels, each with BatchNorm without affine parameters, leaky ReLU and 2x2 max pooling, a dense 32-D code, no
bias anywhere -- with the mirrored decoder and a Bernoulli likelihood, on the normal digit of mnist5k.

  python launch.py --config=configs/deep_svdd.py --config.train_classes=3 --workdir=/tmp/svdd3
  python launch.py --config=configs/deep_svdd.py:soft --config.train_classes=3 --workdir=/tmp/svdd3s
  python launch.py --config=configs/deep_svdd.py:mlp --config.train_classes=3 --workdir=/tmp/svdd3m
  python launch.py --config=configs/deep_svdd.py:runlocal --config.train_classes=3 --workdir=/tmp/s  # seconds
  python launch.py --workdir=/tmp/svdd3 --eval_only                 # re-evaluate and re-run the anomaly report

Variants (comma separated): "soft" (the soft-boundary objective, nu = 0.1), "mlp" (a bias-free MLP encoder
784-512-256-32 with leaky ReLU instead of the conv one), "digits" (sklearn 8x8 digits), "runlocal".
"""

import ml_collections

from configs import conv_ae
from configs import variants as variants_lib

VARIANTS = ("soft", "mlp", "digits", "runlocal")
CODE_DIM = 32  # Ruff et al.'s MNIST code size


def pretrain_config(variants) -> ml_collections.ConfigDict:
    """The autoencoder of the pre-training: an ordinary config of the default job, without bias terms."""
    c = conv_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    if "mlp" in variants:
        c.model_name = "mlp"
        c.model = ml_collections.ConfigDict(
            dict(hidden=(512, 256), code_dim=CODE_DIM, activation="leaky_relu", code_activation="linear",
                 tied=False, use_bias=False)
        )  # fmt: skip
    else:
        c.model = ml_collections.ConfigDict(
            dict(features=(8, 4), kernel_size=5, strides=2, downsample="pool", code_dim=CODE_DIM,
                 activation="leaky_relu", code_activation="linear", batch_norm=True, use_bias=False)
        )  # fmt: skip
    c.num_epochs = 0
    c.num_train_steps = 600  # ~190 epochs of a one-class split of ~400 digits
    c.eval_every = c.checkpoint_every = 600
    c.optimizer.learning_rate = 3e-3 if "mlp" not in variants else 1e-3
    c.analysis.pca_baseline = False
    c.analysis.embedding = "pca"
    if "digits" in variants:
        c.dataset = "digits"
        if "mlp" in variants:
            c.model.hidden = (32, 16)
        else:  # 8 -> 4 -> 2
            c.model.kernel_size = 3
        c.model.code_dim = 8
    if "runlocal" in variants:
        c.num_train_steps = 20
        c.eval_every = c.checkpoint_every = 20
        c.log_every = 10
        if "mlp" in variants:
            c.model.hidden = (32, 16)
        c.model.code_dim = 8
    return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    c = ml_collections.ConfigDict()
    c.trainer = "deep_svdd"
    c.seed = 0
    # The normal classes and the data location, shared with the pre-training run (one field to set).
    c.train_classes = "0"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.pretrain = pretrain_config(variants)
    c.pretrain.seed = c.get_ref("seed")
    c.pretrain.train_classes = c.get_ref("train_classes")
    c.pretrain.data_dir = c.get_ref("data_dir")
    c.deep_svdd = ml_collections.ConfigDict(
        dict(
            objective="soft_boundary" if "soft" in variants else "one_class",  # aejax/objectives/deep_svdd.KINDS
            nu=0.1,  # soft-boundary: at most a fraction nu of the training points outside the sphere
            eps=0.1,  # centre coordinates with |c_j| < eps are moved to +-eps
            radius_every=30,  # soft-boundary: R from all training distances every this many steps (~10 epochs)
            warmup_steps=150,  # ... from this step on (Ruff et al.: after a warm-up of 10 epochs)
            pretrained_workdir="",  # "": <workdir>/pretrain, trained there first if not finished
        )
    )
    c.batch_size = 128
    c.num_epochs = 0
    c.num_train_steps = 600
    # Ruff et al.: Adam, lr 1e-4 (then 1e-5), weight decay 0.5e-6 (their lambda); here a constant rate.
    c.optimizer = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=1e-4, schedule="constant", warmup_steps=0, weight_decay=5e-7,
             grad_clip_norm=0.0)
    )  # fmt: skip
    c.log_every = 50
    c.eval_every = 600
    c.eval_batch_size = 500
    c.checkpoint_every = 600
    c.keep_checkpoints = 2
    c.steps_per_call = 0
    # anomaly_baselines: the report's sklearn baselines (an experiment that computes them once per class turns
    # them off); figures: the report's ROC curve and extreme digits.
    c.analysis = ml_collections.ConfigDict(dict(reports="anomaly", anomaly_baselines=True, figures=True))
    if "digits" in variants:
        c.train_classes = "0"
    if "runlocal" in variants:
        c.num_train_steps = 20
        c.log_every = 10
        c.eval_every = c.checkpoint_every = 20
        c.deep_svdd.radius_every, c.deep_svdd.warmup_steps = 5, 10
    return c.lock()
