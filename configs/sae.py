"""Sparse autoencoders (issue 20): TopK, BatchTopK, JumpReLU, Gated and ReLU + L1 SAEs, and the k-sparse
autoencoder of Makhzani & Frey (2014), on the bundled 5,000 MNIST digits (the language-model activation default
comes with the activation store).

  python launch.py --config=configs/sae.py                         # TopK SAE, 784 -> 1024 latents, k = 32
  python launch.py --config=configs/sae.py:jumprelu                # or batchtopk, gated, relu_l1
  python launch.py --config=configs/sae.py:kmakhzani               # 1,000 linear tied units, k = 25, alpha*k
  python launch.py --config=configs/sae.py:runlocal --workdir=/tmp/sae      # seconds, smoke test
  python launch.py --config=configs/sae.py:gated,runlocal --workdir=/tmp/sae_gated

Variants (comma separated): at most one of "topk" (default), "batchtopk", "jumprelu", "gated", "relu_l1",
"kmakhzani"; optional "runlocal". The SAE options are the model's attributes in `config.model` (see
aejax/models/sae_base.py and the architecture's module), e.g. --config.model.aux_k=0 turns AuxK off, and
--config.model.resample_every=500 --config.model.resample_until=5000 resamples dead latents (Bricken et al. 2023,
aejax/sae_resample.py).
Writes the `sae` report (FVU, L0, dead fraction, feature density, top-activating digits).

The sparsity coefficients below were chosen for this data (inputs normalised to E||x||^2 = d = 784, squared
error summed over the 784 components), not taken from the papers, whose units differ. In 300-step runs (batch
256, 1,024 latents) they gave test L0 / FVU of about: topk 32 / 0.23, batchtopk 34 / 0.22, jumprelu 45 / 0.21,
relu_l1 (l1 = 3) 64 / 0.34, gated l1 = 3: 129 / 0.18 and l1 = 10: 23 / 0.43 (5 is between, not measured).
JumpReLU's threshold moves about one learning rate per step in log space under Adam whatever l0_coeff is (the
L0 gradient dominates and Adam is scale-invariant), so on short schedules threshold_init sets the L0: the
paper's theta = eps = 0.001 left L0 at ~660 here; pre-activations are O(1-10) in these units.
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

ARCHITECTURES = ("topk", "batchtopk", "jumprelu", "gated", "relu_l1", "kmakhzani")
VARIANTS = (*ARCHITECTURES, "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    arch = variants_lib.one_of(variants, ARCHITECTURES, default="topk")

    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.likelihood = "gaussian"  # unused by the loss; its mean (identity) shows reconstructions
    c.objective = "sae"
    shared = dict(
        n_latents=1024,
        tied=False,
        unit_norm_decoder=True,
        encoder_init_transpose=True,
        pre_bias=True,
        b_dec_init="geometric_median",
        normalize_input=True,
        dead_after=20_000,  # 5 epochs of the 4,000 training digits (Gao et al.: 10M tokens)
        aux_k=256,  # about d / 3 (Gao et al.: 512 at d = 768)
        auxk_coeff=1 / 32,
        resample_every=0,  # > 0: resample dead latents every this many steps (Bricken et al. 2023)
        resample_until=0,  # the last step that may resample (0: to the end)
        resample_encoder_scale=0.2,  # Bricken et al.'s 0.2 x the mean alive encoder row norm
    )
    specific = {
        "topk": dict(k=32, relu=True, eval_k_multiplier=1.0),
        "batchtopk": dict(k=32, threshold_decay=0.99),
        "jumprelu": dict(l0_coeff=1.0, bandwidth=0.5, threshold_init=1.0, pre_bias=False, aux_k=0),
        "gated": dict(l1_coeff=5.0, aux_k=0),
        "relu_l1": dict(l1_coeff=3.0, aux_k=0),
        # Makhzani & Frey 2014 on MNIST: 1,000 linear hidden units, tied weights, k = 25, alpha * k at test
        # (they pick alpha >= 1; 3 is our choice); no unit-norm decoder, pre-bias, normalisation or AuxK.
        "kmakhzani": dict(
            n_latents=1000,
            k=25,
            relu=False,
            eval_k_multiplier=3.0,
            tied=True,
            unit_norm_decoder=False,
            pre_bias=False,
            b_dec_init="zeros",
            normalize_input=False,
            aux_k=0,
        ),  # fmt: skip
    }[arch]
    c.model_name = "topk" if arch == "kmakhzani" else arch
    c.model = ml_collections.ConfigDict({**shared, **specific})
    c.batch_size = 256
    c.num_epochs = 50
    c.eval_every = 250
    c.checkpoint_every = 250
    c.analysis.pca_baseline = False  # overcomplete codes have no PCA counterpart
    c.analysis.embedding = "pca"
    c.analysis.reports = "sae"
    if "runlocal" in variants:
        small = dict(n_latents=64, dead_after=256, aux_k=16 if c.model.aux_k else 0)
        if "k" in c.model:
            small["k"] = 8
        c.model.update(small)
        c.batch_size = 64
        c.num_epochs = 0  # num_train_steps = 20 of the runlocal base
    return c.lock()
