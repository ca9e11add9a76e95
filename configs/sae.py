"""Sparse autoencoders (issue 20): TopK, BatchTopK, JumpReLU, Gated and ReLU + L1 SAEs on the residual stream of
the bundled byte-level language model (the default), or on the bundled 5,000 MNIST digits, and the k-sparse
autoencoder of Makhzani & Frey (2014).

  python launch.py --config=configs/sae.py                         # TopK on the LM's block_1, 128 -> 2048, k = 32
  python launch.py --config=configs/sae.py:jumprelu                # or batchtopk, gated, relu_l1
  python launch.py --config=configs/sae.py:mnist                   # on digits: 784 -> 1024 latents, k = 32
  python launch.py --config=configs/sae.py:kmakhzani               # digits, 1,000 linear tied units, k = 25
  python launch.py --config=configs/sae.py:store --config.dataset=activations:/abs/store   # your own activations
  python launch.py --config=configs/sae.py:runlocal --workdir=/tmp/sae      # tiny LM and SAE, a smoke test
  python launch.py --config=configs/sae.py:gated,mnist,runlocal --workdir=/tmp/sae_gated
  python launch.py --config=configs/sae.py:sweep --workdir=runs/sae_sweep   # TopK k = 8, 16, 32, 64 in one pass
  python launch.py --config=configs/sae.py:relu_l1,mnist,sweep --config.sweep="l1_coeff=1,3,10" --workdir=...

Variants (comma separated): at most one of "topk" (default), "batchtopk", "jumprelu", "gated", "relu_l1",
"kmakhzani" (implies "mnist"); "mnist" (digits instead of LM activations) or "store" (any activation store,
no LM: --config.dataset=activations:<dir>, e.g. vectors written from PyTorch); optional "runlocal"; optional
"sweep": several SAEs in one vmapped pass (`config.sweep`, aejax/sweep.py): by default the TopK frontier of
experiments/gao_2024 (k = 8, 16, 32, 64; runlocal: 2, 4, 8), the L1 coefficient for relu_l1 / gated
(x 1/3, 1, 3 of the default), l0_coeff for jumprelu; any of k, l1_coeff, l0_coeff, seed with --config.sweep=
"name=v1,v2" (";" joins axes into a grid). Each member ends as its own run in <workdir>/members/<name>/.
The SAE options are the model's attributes in `config.model` (see aejax/models/sae_base.py and the
architecture's module), e.g. --config.model.aux_k=0 turns AuxK off, and --config.model.resample_every=500
--config.model.resample_until=5000 resamples dead latents (Bricken et al. 2023, aejax/sae_resample.py). Writes
the `sae` report.

On LM activations (the job "sae", aejax/jobs/sae.py) the first run trains the language model of configs/lm.py in
`config.activations.lm_workdir` (runs/lm), stores the residual stream after `config.activations.layer` of its
train and test windows in `runs/lm/activations/<layer>` and then trains the SAE; each stage is cached and
resumable, so later runs (other architectures, k, widths) only train the SAE. The `sae` report then also splices
the reconstruction into the LM (delta loss, fraction of loss recovered) and writes the top-activating text spans.

Units: inputs are normalised so that E||x||^2 = d and the squared error is summed over the d components, so the
sparsity coefficients below were chosen for these units, not taken from the papers, whose units differ.
On digits, 300-step runs (batch 256, 1,024 latents) gave test L0 / FVU of about: topk 32 / 0.23, batchtopk 34 /
0.22, jumprelu 45 / 0.21, relu_l1 (l1 = 3) 64 / 0.34, gated l1 = 3: 129 / 0.18 and l1 = 10: 23 / 0.43.
JumpReLU's threshold moves about one learning rate per step in log space under Adam whatever l0_coeff is (the
L0 gradient dominates and Adam is scale-invariant), so on short schedules threshold_init sets the L0: the
paper's theta = eps = 0.001 left L0 at ~660 on digits; pre-activations are O(1-10) in these units. The LM
activations' coefficients come from experiments/gao_2024 (its README has the sweep).
"""

import os

import ml_collections

from configs import lm as lm_configs
from configs import mnist_ae
from configs import variants as variants_lib

ARCHITECTURES = ("topk", "batchtopk", "jumprelu", "gated", "relu_l1", "kmakhzani")
VARIANTS = (*ARCHITECTURES, "mnist", "store", "runlocal", "sweep")
FRONTIER_K = (8, 16, 32, 64)  # experiments/gao_2024's TopK frontier
LM_WORKDIR = os.path.join("runs", "lm")  # shared by every SAE on the LM, so it is trained once
LAYER = "block_1"  # the residual stream after the middle of the LM's three blocks


def _shared() -> dict:
    return dict(
        tied=False,
        unit_norm_decoder=True,
        encoder_init_transpose=True,
        pre_bias=True,
        b_dec_init="geometric_median",
        normalize_input=True,
        auxk_coeff=1 / 32,
        resample_every=0,  # > 0: resample dead latents every this many steps (Bricken et al. 2023)
        resample_until=0,  # the last step that may resample (0: to the end)
        resample_encoder_scale=0.2,  # Bricken et al.'s 0.2 x the mean alive encoder row norm
    )


def _mnist(arch: str) -> dict:
    shared = dict(
        n_latents=1024,
        dead_after=20_000,  # 5 epochs of the 4,000 training digits (Gao et al.: 10M tokens)
        aux_k=256,  # about d / 3 (Gao et al.: 512 at d = 768)
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
    return {**shared, **specific}


def _lm(arch: str) -> dict:
    # d = 128 residual stream, 16x expansion; aux_k = d / 2 as Gao et al. (512 at d = 768 is about 2/3 d).
    # dead_after: a quarter of the 1M training tokens (Gao et al.: 10M of their billions)
    shared = dict(n_latents=2048, dead_after=262_144, aux_k=64)
    specific = {
        "topk": dict(k=32, relu=True, eval_k_multiplier=1.0),
        "batchtopk": dict(k=32, threshold_decay=0.99),
        "jumprelu": dict(l0_coeff=1.0, bandwidth=0.5, threshold_init=0.5, pre_bias=False, aux_k=0),
        "gated": dict(l1_coeff=2.0, aux_k=0),
        "relu_l1": dict(l1_coeff=1.0, aux_k=0),
    }[arch]
    return {**shared, **specific}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    arch = variants_lib.one_of(variants, ARCHITECTURES, default="topk")
    runlocal = "runlocal" in variants
    on_digits = "mnist" in variants or arch == "kmakhzani"
    if on_digits and "store" in variants:
        raise ValueError(f"configs/sae.py: 'store' (activation vectors) and digits ({arg!r}) exclude each other.")

    c = mnist_ae.get_config("runlocal" if runlocal else "")
    c.unlock()
    c.likelihood = "gaussian"  # unused by the loss; its mean (identity) shows reconstructions
    c.objective = "sae"
    c.model_name = "topk" if arch == "kmakhzani" else arch
    c.model = ml_collections.ConfigDict({**_shared(), **(_mnist(arch) if on_digits else _lm(arch))})
    c.analysis.pca_baseline = False  # overcomplete codes have no PCA counterpart
    c.analysis.embedding = "pca"
    c.analysis.reports = "sae"
    if on_digits:
        c.batch_size = 256
        c.num_epochs = 50
        c.eval_every = 250
        c.checkpoint_every = 250
    elif "store" in variants:  # activations written by anything (a PyTorch model, aejax.activations), no LM
        c.dataset = "activations:/path/to/store"  # --config.dataset=activations:<dir>
    else:
        lm = lm_configs.get_config("runlocal" if runlocal else "")
        lm.unlock()
        lm.data_dir = c.get_ref("data_dir")  # the SAE's data_dir is the LM's
        c.trainer = "sae"
        c.activations = ml_collections.ConfigDict(
            dict(
                lm=lm,
                lm_workdir=LM_WORKDIR + ("_runlocal" if runlocal else ""),
                layer=LAYER,
                # rows = tokens; the test codes [rows, n_latents] are held in memory by the evaluation
                max_rows_train=1_048_576,
                max_rows_test=32_768,
            )
        )
        # The store lives in the LM's workdir and follows --config.activations.lm_workdir / .layer.
        ref = c.activations.get_ref
        c.dataset = (
            ml_collections.FieldReference("activations:") + ref("lm_workdir") + "/activations/" + ref("layer")
        )
    if not on_digits:  # activation vectors, from the LM or a store
        c.transforms.scale = "none"
        c.batch_size = 4096
        c.num_epochs = 0
        c.num_train_steps = 256  # one epoch of the LM's 1M stored tokens
        # 1e-2: at 1e-3 the ReLU + L1, Gated and JumpReLU SAEs barely leave their init in a few hundred steps,
        # and TopK reaches a lower FVU at 1e-2 (experiments/gao_2024 --calibrate)
        c.optimizer.learning_rate = 1e-2
        c.optimizer.warmup_steps = 20
        c.log_every = 32
        c.eval_every = 256
        c.eval_batch_size = 4096
        c.checkpoint_every = 128
    c.sweep = ""  # e.g. "k=8,16,32": the "sae" job trains the members in one vmapped pass (aejax/sweep.py)
    if "sweep" in variants:
        c.trainer = "sae"  # the job that trains sweeps (on digits or a store it trains no LM)
        if "k" in c.model:
            ks = (2, 4, 8) if runlocal else FRONTIER_K
            c.sweep = "k=" + ",".join(map(str, ks))
        else:
            name = "l0_coeff" if "l0_coeff" in c.model else "l1_coeff"
            c.sweep = f"{name}=" + ",".join(f"{c.model[name] * f:g}" for f in (1 / 3, 1, 3))
    if runlocal:
        small = dict(n_latents=64, dead_after=256, aux_k=16 if c.model.aux_k else 0)
        if "k" in c.model:
            small["k"] = 8
        c.model.update(small)
        c.batch_size = 64
        c.num_epochs = 0  # num_train_steps = 20 of the runlocal base
        if not on_digits:
            c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 20, 5, 10, 10
            c.eval_batch_size = 512
            if "store" not in variants:
                c.activations.update(max_rows_train=8192, max_rows_test=2048)
    return c.lock()
