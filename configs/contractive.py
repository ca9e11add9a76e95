"""Contractive autoencoders: lambda ||J_f(x)||_F^2 on the encoder (Rifai et al., ICML 2011; CAE+H, ECML 2011).

One sigmoid hidden layer 784-1000 with a Bernoulli (cross-entropy) decoder, as in Rifai et al.; the "quick"
variant uses 784-500. The penalty weight is lambda = 1 against the cross-entropy summed over the 784 pixels.
How the Jacobian norm is computed (`aejax.regularizers.contractive`):
- "closed_form": Rifai's sum_i (h_i (1 - h_i))^2 sum_j W_ji^2 (one sigmoid layer only);
- "hutchinson": the unbiased estimate E_v ||J v||^2 with 4 Rademacher probes (any encoder);
- "exact": the exact Jacobian ("auto": jacrev, one VJP per code unit; any encoder). It costs ~H passes per step,
  so this variant uses a 784-200 code (784-100 when "quick");
- "cae_h": "exact" plus the CAE+H term gamma E ||J(x) - J(x + eps)||^2, gamma = 100, eps ~ N(0, 0.1^2 I), 2 copies
  (Rifai et al., ECML 2011), on the same small code;
- "plain": the same network without any penalty, the reference.

  python launch.py --config=configs/contractive.py:closed_form        # 784-1000, closed form
  python launch.py --config=configs/contractive.py:hutchinson         # 784-1000, Hutchinson, 4 probes
  python launch.py --config=configs/contractive.py:exact              # 784-200, exact Jacobian (slow on CPU)
  python launch.py --config=configs/contractive.py:cae_h              # 784-200, CAE+H
  python launch.py --config=configs/contractive.py:closed_form,quick --config.data_dir=/tmp/tfds_dev  # ~1 min
  python launch.py --config=configs/contractive.py:exact,plain,quick  # the plain AE of exact's size
  python launch.py --config=configs/contractive.py:closed_form,runlocal --workdir=/tmp/cae   # seconds

Variants (comma separated): one of "closed_form" (default), "hutchinson", "exact", "cae_h"; optional "plain"
(drops the penalty, keeps the network), "quick", "runlocal". Writes the `contractive` report (mean ||J_f||_F,
saturated fraction, Jacobian spectrum, contraction ratio against radius) besides the main job's outputs.
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

METHODS = ("closed_form", "hutchinson", "exact", "cae_h")
VARIANTS = (*METHODS, "plain", "quick", "runlocal")
LAMBDA = 1.0


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    method = variants_lib.one_of(variants, METHODS, default="closed_form")
    quick = "quick" in variants

    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.model.hidden = ()  # one sigmoid layer: h = sigmoid(x W + b)
    c.model.code_dim = 500 if quick else 1000
    c.model.activation = "sigmoid"
    c.model.code_activation = "sigmoid"
    c.model.tied = False
    c.num_epochs = 100
    c.analysis.reports = "contractive"
    c.analysis.embedding = "pca"
    c.analysis.jacobian_points = 200  # exact Jacobians for ||J_f||_F and the contraction ratio
    c.analysis.spectrum_points = 32  # one eigendecomposition of a [D, D] Gram matrix per point

    if method in ("exact", "cae_h"):
        c.model.code_dim = 100 if quick else 200
        c.regularizers.contractive = dict(weight=LAMBDA, method="auto")
    else:
        probes = dict(num_probes=4, probe="rademacher") if method == "hutchinson" else {}
        c.regularizers.contractive = dict(weight=LAMBDA, method=method, **probes)
    if method == "cae_h":
        # gamma = 100: at sigma = 0.1 the Jacobian difference is ~1e-3 of ||J||^2, so a gamma of order 1 has
        # no measurable effect (measured: gamma = 0.1 gave the exact CAE's numbers to 3 digits).
        c.regularizers.contractive_higher_order = dict(weight=100.0, sigma=0.1, num_corrupted=2, method="auto")
    if "plain" in variants:
        c.regularizers = ml_collections.ConfigDict()
    if quick:
        c.num_epochs = 50
        c.eval_every = 250
        c.checkpoint_every = 1000
        if method in ("exact", "cae_h"):
            c.num_epochs = 5  # ~H Jacobian passes per step; the plain reference gets the same budget
    if "runlocal" in variants:
        c.model.code_dim = 16
        c.num_epochs = 0  # num_train_steps of the runlocal base config
        c.analysis.jacobian_points = 20
        c.analysis.spectrum_points = 4
    return c.lock()
