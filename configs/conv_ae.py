"""The convolutional autoencoder on the 5,000 real MNIST digits: the main job's analogue (K = 30, K = 2) and the
convolutional denoising autoencoder of the seed tutorials.

The seed tutorials' convolutional AE: Conv2D + MaxPooling2D encoder, Conv2D + UpSampling2D decoder (Masci et al.
2011, "Stacked convolutional auto-encoders"); here two 3x3 conv layers (32, 64 channels) each halving the side
(28 -> 14 -> 7), a dense linear code of size K, and the mirrored decoder (`aejax/models/conv.py`). Bernoulli
decoder, Adam with warm-up + cosine decay, 60 epochs of batch 128, as the main job.

  python launch.py --config=configs/conv_ae.py                     # K = 30, compare with PCA-30 and the MLP
  python launch.py --config=configs/conv_ae.py:code2               # K = 2: the codes themselves, by digit
  python launch.py --config=configs/conv_ae.py:denoising           # Gaussian sigma = 0.5 clipped to [0, 1]
  python launch.py --config=configs/conv_ae.py:mlp                 # the MLP 784-128-64-30 of equal size
  python launch.py --config=configs/conv_ae.py:runlocal --workdir=/tmp/conv   # seconds, for smoke tests

Variants (comma separated): "code2", "denoising", "stride" (strided convs / conv-transposes instead of pooling
and upsampling), "batchnorm", "mlp" (the comparison MLP with about as many parameters), "runlocal".
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

VARIANTS = ("code2", "denoising", "stride", "batchnorm", "mlp", "runlocal")
# The MLP of about the conv AE's size at K = 30 (221k vs 229k parameters), for a comparison at equal budget.
MATCHED_MLP_HIDDEN = (128, 64)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.model_name = "conv"
    c.model = ml_collections.ConfigDict(
        dict(
            features=(32, 64),
            kernel_size=3,
            strides=2,
            downsample="pool",
            code_dim=30,
            activation="relu",
            code_activation="linear",
            batch_norm=False,
        )
    )
    if "stride" in variants:
        c.model.downsample = "stride"
    if "batchnorm" in variants:
        c.model.batch_norm = True
    if "mlp" in variants:
        c.model_name = "mlp"
        c.model = ml_collections.ConfigDict(
            dict(hidden=MATCHED_MLP_HIDDEN, code_dim=30, activation="relu", code_activation="linear", tied=False)
        )
    if "code2" in variants:
        c.model.code_dim = 2
    if "denoising" in variants:
        c.corruption.name = "gaussian"
        c.corruption.sigma = 0.5
        c.corruption.clip = True
        c.analysis.reports = "denoising"
    if "runlocal" in variants:
        if "mlp" not in variants:
            c.model.features = (4, 8)
        c.model.code_dim = 2 if "code2" in variants else 8
    return c.lock()
