"""Predictive sparse decomposition on 12x12 contrast-normalised natural image patches (Kavukcuoglu et al. 2008).

The paper learns 256 atoms on 12x12 patches of Berkeley images by SGD; this is a
CPU-scale analogue on the 20,000 bundled patches (`natural_patches/12x12`) with Adam and a fixed number of FISTA
steps per batch. The shared trainer runs it (`c.objective = "psd"` infers the codes; its `project` keeps D's
columns at unit norm); the "filters" report draws the dictionary and encoder filters and scores their
orientation selectivity.

  python launch.py --config=configs/psd.py --workdir=/tmp/psd                  # ~10 min on 2 CPU cores
  python launch.py --config=configs/psd.py:quick --workdir=/tmp/psd_quick      # ~2 min, 64 atoms
  python launch.py --config=configs/psd.py:runlocal --workdir=/tmp/psd_local   # seconds, for smoke tests
  python launch.py --config=configs/psd.py:8x8,quick --config.psd.lam=0.3

Variants (comma separated): "" (default), "quick", "runlocal", "8x8" (8x8 patches), "whitened" (ZCA patches).
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

VARIANTS = ("quick", "runlocal", "8x8", "whitened")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)

    c = mnist_ae.get_config("")
    c.unlock()
    size = 8 if "8x8" in variants else 12
    c.dataset = f"natural_patches/{size}x{size}" + ("_whitened" if "whitened" in variants else "")
    c.model_name = "psd"
    c.model = ml_collections.ConfigDict(dict(code_dim=256, gain_init=1.0))
    c.likelihood = "gaussian"  # only used for the reconstructions figure: its mean is D f(x)
    c.objective = "psd"
    # E = ||x - D h||^2 + lam |h|_1 + gamma ||h - f(x)||^2 (units of x squared; LCN pixels have unit variance).
    c.psd = ml_collections.ConfigDict(dict(lam=3.0, gamma=1.0, fista_steps=30, eval_fista_steps=100))

    c.batch_size = 128
    c.num_epochs = 0
    c.num_train_steps = 6000
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 100
    c.log_every = 100
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.analysis.embedding = "pca"  # t-SNE of 2,000 patch codes says little and takes a minute
    c.analysis.reports = "filters"

    if "quick" in variants:
        c.model.code_dim = 64
        c.num_train_steps = 2000
        c.eval_every = 500
        c.checkpoint_every = 500
    if "runlocal" in variants:
        c.model.code_dim = 32
        c.psd.fista_steps = 10
        c.psd.eval_fista_steps = 20
        c.num_train_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
    return c.lock()
