"""Configs of the Kavukcuoglu et al. (2008) comparison: PSD, a KL-sparse AE and a Gaussian DAE on natural patches.

  python launch.py --config=experiments/kavukcuoglu_2008/config.py:psd --workdir=/tmp/k08/psd
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:kl_sparse --workdir=/tmp/k08/kl_sparse
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:dae --workdir=/tmp/k08/dae
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:dae,12x12   # the DAE on LCN patches
  python launch.py --config=experiments/kavukcuoglu_2008/config.py:psd,runlocal --workdir=/tmp/k08_local

The argument is a method ("psd", "kl_sparse", "dae") and optionally a patch set ("12x12", "8x8",
"12x12_whitened", "8x8_whitened"), comma separated. Without a patch set each method gets the data it learns
edge filters on at this scale (`DEFAULT_PATCHES`): PSD contrast-normalised 12x12 patches, the two sigmoid
autoencoders ZCA-whitened 8x8 patches (Ng's exercise; on LCN patches and with the settings of Ng's L-BFGS run
taken over unchanged they learn noise-like filters, see README.md). All are CPU "quick" runs (under a minute each
for the autoencoders, a few minutes for PSD); an optional "runlocal" cuts any of them to 20 steps (smoke tests).
"""

import ml_collections

from configs import mnist_ae
from configs import psd as psd_config
from configs import variants as variants_lib

METHODS = ("psd", "kl_sparse", "dae")
PATCHES = ("12x12", "8x8", "12x12_whitened", "8x8_whitened")
DEFAULT_PATCHES = {"psd": "12x12", "kl_sparse": "8x8_whitened", "dae": "8x8_whitened"}


def get_config(arg: str = "psd") -> ml_collections.ConfigDict:
    chosen = variants_lib.parse(arg, (*METHODS, *PATCHES, "runlocal"))
    method = variants_lib.one_of(chosen, METHODS)
    if method is None:
        raise ValueError(
            f"Expected one of {', '.join(METHODS)} (and at most one of {', '.join(PATCHES)}), got {arg!r}."
        )
    patch_set = variants_lib.one_of(chosen, PATCHES, default=DEFAULT_PATCHES[method])

    if method == "psd":
        c = psd_config.get_config("quick")  # 64 atoms, 2,000 Adam steps of batch 128
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
        # Large batches: a better batch estimate of the mean activation rho_hat (Ng uses all 10,000 patches).
        c.batch_size = 512
        c.analysis.embedding = "pca"
        c.analysis.reports = "filters"
        c.log_every = 500
        c.eval_every = 5000
        c.checkpoint_every = 5000
    if method == "kl_sparse":
        # Ng's exercise (CS294A): 25 units, rho = 0.01, weight decay lambda = 1e-4. His patches have pixel std
        # ~0.13, ours ~1, so the squared error is ~60x larger: beta = 3 no longer binds (dense, tiny activations
        # and noise filters). beta = 10 with tied weights W' = W^T (so the decoder cannot scale small
        # activations up) gives sparse codes and localised edge filters.
        c.model.code_dim = 25
        c.model.tied = True
        c.regularizers.kl_sparsity = dict(weight=10.0, rho=0.01)
        c.optimizer.weight_decay = 1e-4
        # Adam moves each parameter by ~lr per step: the biases must reach ~-4.6 (sigmoid^-1(0.01)).
        c.optimizer.learning_rate = 1e-2
        c.num_train_steps = 20000
    if method == "dae":
        # Vincent et al. 2010 (Sec. 7.2): overcomplete sigmoid layer, additive Gaussian noise. Whitened pixels
        # have unit variance; sigma = 1.5 (noise above the signal) is what makes the units sparse and the
        # filters oriented here (sigma = 0.5 and 1: noise-like filters, units near 0.5 on average).
        c.model.code_dim = 100
        c.corruption.name = "gaussian"
        c.corruption.sigma = 1.5
        c.optimizer.learning_rate = 2e-2
        c.num_train_steps = 30000
    c.dataset = f"natural_patches/{patch_set}"
    if "runlocal" in chosen:
        if method == "psd":
            c.psd.fista_steps, c.psd.eval_fista_steps = 10, 20  # those of configs/psd.py:runlocal
        c.num_train_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
    return c.lock()
