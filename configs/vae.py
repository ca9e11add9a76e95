"""Variational autoencoders (Kingma & Welling 2014), evaluated by the IWAE bound (Burda et al. 2016).

Default: dynamically binarised mnist5k, a Bernoulli decoder, a 784-512-256 Gaussian encoder, K = 20 latents,
trained on the ELBO; the test split is scored by the ELBO and by IWAE_k with k = 1000 importance samples
(`aejax/objectives/elbo.py`), in nats per example.

  python launch.py --config=configs/vae.py --workdir=/tmp/vae                   # K = 20
  python launch.py --config=configs/vae.py:code2 --workdir=/tmp/vae2            # K = 2
  python launch.py --config=configs/vae.py:conv --workdir=/tmp/vae_conv         # convolutional, K = 20
  python launch.py --config=configs/vae.py:linear --workdir=/tmp/vae_linear     # linear VAE vs PPCA
  python launch.py --config=configs/vae.py:runlocal,code2 --workdir=/tmp/vae_rl # seconds, for smoke tests

Variants (comma separated): "code2", "conv" (the convolutional AE's 32-64 channel stride-2 layers around the
Gaussian latent, 50 epochs), "linear", "digits" (sklearn 8x8 digits, binarised), "runlocal".
"linear" is the PPCA check (Tipping & Bishop 1999; Lucas et al. 2019): sklearn digits in [0, 1], no
binarisation, affine encoder mean and decoder, K = 10, a Gaussian decoder with one learned variance
("gaussian_learned"); the "ppca" report puts the exact PPCA test log-likelihood of the same K next to the
trained model's IWAE bound, which can only approach it from below. Every variant writes the "vae_figures"
report (prior_samples.png; manifold.png for K = 2).
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

VARIANTS = ("code2", "conv", "linear", "digits", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)

    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.transforms.binarize = "dynamic"
    c.model_name = "vae"
    c.model = ml_collections.ConfigDict(
        dict(hidden=(512, 256), code_dim=20, activation="relu", linear=False, decoder_variance="fixed")
    )
    c.likelihood = "bernoulli"
    c.objective = "elbo"
    c.vae = ml_collections.ConfigDict(
        dict(beta=1.0, kl_warmup_steps=0, train_samples=1, eval_samples=1000, eval_chunk=50)
    )
    c.num_epochs = 100
    c.eval_every = 1000  # each evaluation costs eval_samples decoder passes per test example
    c.checkpoint_every = 1000
    c.analysis.embedding = "pca"
    c.analysis.reports = "vae_figures,active_units"  # prior samples; the 2-D manifold when K = 2; Burda's AU

    if "conv" in variants:  # the convolutional autoencoder's layers (aejax/models/conv_vae.py)
        c.model_name = "conv_vae"
        c.model = ml_collections.ConfigDict(
            dict(features=(32, 64), kernel_size=3, strides=2, downsample="stride", code_dim=20, activation="relu",
                 decoder_variance="fixed")
        )  # fmt: skip
        c.num_epochs = 50
        c.eval_every = 100_000  # only the final evaluation: k = 1000 conv decoder passes per test digit
    if "code2" in variants:
        c.model.code_dim = 2
    variants_lib.one_of(variants, ("conv", "linear"))
    if "digits" in variants:
        c.dataset = "digits"
        if "conv" in variants:
            c.model.features = (16, 32)  # 8 -> 4 -> 2
        else:
            c.model.hidden = (64, 32)
        c.model.code_dim = 8
    if "linear" in variants:
        c.dataset = "digits"
        c.transforms.binarize = "none"
        c.model.linear = True
        c.model.code_dim = 10
        c.model.decoder_variance = "scalar"
        c.likelihood = "gaussian_learned"
        c.num_epochs = 0
        c.num_train_steps = 20000
        c.optimizer.learning_rate = 3e-3
        c.eval_every = 5000
        c.checkpoint_every = 5000
        c.analysis.reports = "ppca,vae_figures,active_units"
    if "runlocal" in variants:
        if "conv" in variants:
            c.model.features = (4, 8)
            c.model.code_dim = 2 if "code2" in variants else 8
        elif "linear" not in variants:
            c.model.hidden = (64, 32)
            c.model.code_dim = 2 if "code2" in variants else 8
        c.num_epochs = 0
        c.num_train_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
        c.vae.eval_samples = 100
        c.vae.eval_chunk = 25
    return c.lock()
