"""Tied-weights MLP autoencoder: decoder W'_l = W_l^T, only the decoder biases are its own (Vincent et al.
2010; Rifai et al. 2011). Same network and training as configs/mnist_ae.py otherwise: 784-1000-500-250-30, ReLU,
linear code, Bernoulli decoder, on the 5,000 real MNIST digits; about half the parameters.

  python launch.py --config=configs/tied.py                          # tied 784-1000-500-250-30
  python launch.py --config=configs/tied.py:code2                    # 2-D codes
  python launch.py --config=configs/tied.py:runlocal --workdir=/tmp/tied   # seconds, for smoke tests

Variants: those of configs/mnist_ae.py ("code2", "runlocal", "digits"), comma separated.
"""

import ml_collections

from configs import mnist_ae


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = mnist_ae.get_config(arg)
    c.unlock()
    c.model.tied = True
    return c.lock()
