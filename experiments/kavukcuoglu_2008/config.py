"""Configs of the Kavukcuoglu et al. (2008) comparison: PSD, a KL-sparse AE and a Gaussian DAE on the same patches.

  python launch.py --config=experiments/kavukcuoglu_2008/config.py:psd --workdir=/tmp/k08/psd
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:kl_sparse --workdir=/tmp/k08/kl_sparse
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:dae --workdir=/tmp/k08/dae
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:kl_sparse,8x8_whitened   # Ng's exact data

The argument is a method ("psd", "kl_sparse", "dae") and optionally a patch set ("12x12" default, "8x8",
"12x12_whitened", "8x8_whitened"), comma separated. All are the CPU "quick" scale: 2,000 steps of batch 128.
"""

import ml_collections

from configs import mnist_ae
from configs import psd as psd_config

METHODS = ("psd", "kl_sparse", "dae")
PATCHES = ("12x12", "8x8", "12x12_whitened", "8x8_whitened")
NUM_STEPS = 2000


def get_config(arg: str = "psd") -> ml_collections.ConfigDict:
    parts = [p for p in arg.split(",") if p]
    methods = [p for p in parts if p in METHODS]
    patches = [p for p in parts if p in PATCHES]
    if len(methods) != 1 or len(patches) > 1 or len(parts) != len(methods) + len(patches):
        raise ValueError(f"Expected one of {METHODS} and at most one of {PATCHES}, got {arg!r}.")
    method, patch_set = methods[0], (patches or ["12x12"])[0]

    if method == "psd":
        c = psd_config.get_config("quick")
        c.unlock()
    else:
        c = mnist_ae.get_config("")
        c.unlock()
        # One sigmoid hidden layer and a linear decoder: squared error (Gaussian NLL) on real-valued patches.
        c.model = ml_collections.ConfigDict(
            dict(hidden=(), code_dim=64, activation="relu", code_activation="sigmoid", tied=False)
        )
        c.likelihood = "gaussian"
        c.num_epochs = 0
        c.analysis.embedding = "pca"
        c.analysis.reports = "filters"
        c.log_every = 100
        c.eval_every = 500
        c.checkpoint_every = 500
    if method == "kl_sparse":
        # Ng's exercise (CS294A): 25 units, rho = 0.01, beta = 3, weight decay lambda = 1e-4.
        c.model.code_dim = 25
        c.regularizers.kl_sparsity = dict(weight=3.0, rho=0.01)
        c.optimizer.weight_decay = 1e-4
    if method == "dae":
        # Vincent et al. 2010: additive Gaussian noise; LCN / ZCA pixels have unit variance, so sigma = 0.5.
        c.corruption.name = "gaussian"
        c.corruption.sigma = 0.5
    c.dataset = f"natural_patches/{patch_set}"
    c.num_train_steps = NUM_STEPS
    return c.lock()
