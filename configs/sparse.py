"""Sparse autoencoders: an L1 activity penalty or a KL sparsity penalty on a one-layer code.

- "l1": the Keras tutorial model (`Dense(32, activation="relu", activity_regularizer=l1(1e-4))`, 784-32-784,
  sigmoid output, binary cross-entropy), penalty lambda * mean_batch sum_j |h_j| (Goodfellow et al., Deep
  Learning 14.2.1, the Laplace-prior view). Keras averages the cross-entropy over the 784 pixels while aejax sums
  it (nats per image), so Keras' 1e-4 is lambda ~ 0.08 here; on the short CPU schedule (1,550 steps, not Keras'
  ~23,000) that lowered the mean code activation only 4.4 -> 2.3, so we use lambda = 1 (4.4 -> 0.75, the
  tutorial's 0.8). `--config.regularizers.l1_activity.weight=0.08` is the Keras-equivalent strength.
- "kl": one sigmoid layer 784-500, beta * sum_j KL(rho || rho_hat_j) with rho = 0.05, beta = 3 (Ng, CS294A
  "Sparse autoencoder"; the exercise uses rho = 0.01 on 8x8 patches).
- "plain": the same model without the penalty, the reference the regularized one is compared against.

  python launch.py --config=configs/sparse.py:l1                      # 784-32 ReLU code, L1 activity
  python launch.py --config=configs/sparse.py:kl                      # 784-500 sigmoid code, KL sparsity
  python launch.py --config=configs/sparse.py:l1,plain                # the same model unregularized
  python launch.py --config=configs/sparse.py:kl,quick --config.data_dir=/tmp/tfds_dev   # about 1 min CPU
  python launch.py --config=configs/sparse.py:l1,runlocal --workdir=/tmp/sparse     # seconds, smoke test

Variants (comma separated): exactly one of "l1" (default), "kl"; optional "plain", "quick", "runlocal".
Writes the `sparsity` report (code histogram, mean activation, filters) besides the main job's outputs.
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

PENALTIES = ("l1", "kl")
VARIANTS = (*PENALTIES, "plain", "quick", "runlocal")
L1_WEIGHT = 1.0  # ~12x Keras' 1e-4 * 784 pixels: shows the effect within the quick schedule


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    penalty = variants_lib.one_of(variants, PENALTIES, default="l1")

    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.model.hidden = ()  # one code layer: encoder 784 -> K, decoder K -> 784
    c.model.tied = False
    c.num_epochs = 100  # the Keras tutorial's 100 epochs (over 4,000 digits here)
    c.analysis.reports = "sparsity"
    c.analysis.embedding = "pca"
    if penalty == "kl":
        c.model.code_dim = 500
        c.model.code_activation = "sigmoid"
        c.regularizers.kl_sparsity = dict(weight=3.0, rho=0.05)
    else:
        c.model.code_dim = 32
        c.model.code_activation = "relu"
        c.regularizers.l1_activity = dict(weight=L1_WEIGHT)
    if "plain" in variants:
        c.regularizers = ml_collections.ConfigDict()
    if "quick" in variants:
        c.num_epochs = 50
        c.eval_every = 250
        c.checkpoint_every = 1000
    if "runlocal" in variants:
        c.model.code_dim = 16
        c.num_epochs = 0  # num_train_steps of the runlocal base config
    return c.lock()
