"""Configs of the compression curve: a deep and a linear autoencoder with a K-dimensional code on mnist5k.

  python launch.py --config=experiments/salakhutdinov_hinton_2009/config.py:deep,k8 --workdir=/tmp/sh09/deep_k8
  python launch.py --config=experiments/salakhutdinov_hinton_2009/config.py:linear,k8 --workdir=/tmp/sh09/lin_k8
  python launch.py --config=experiments/salakhutdinov_hinton_2009/config.py:linear,k8,runlocal --workdir=/tmp/x

"deep" is the main job (configs/mnist_ae.py: 784-1000-500-250-K, ReLU, linear code, Bernoulli decoder, 60
epochs) at code size K. "linear" is the `mlp` model with no hidden layer and a linear code, x -> W2 (W1 x + b1)
+ b2, trained on squared error (the Gaussian likelihood with unit variance: squared error / 2 + a constant), the
setting of Baldi & Hornik (1989) in which the optimum spans the top-K principal subspace. It needs a larger step
size and more steps than the deep net: the last principal directions have small eigengaps and are learned last
(full-batch gradient descent converges at a rate set by the gaps). The argument is "deep" or "linear", a code
size "k<K" (K in 2, 4, 8, 16, 32, 64) and optionally "runlocal".
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

KS = (2, 4, 8, 16, 32, 64)
MODELS = ("deep", "linear")


def get_config(arg: str = "deep,k8") -> ml_collections.ConfigDict:
    known = (*MODELS, *(f"k{k}" for k in KS), "runlocal")
    chosen = variants_lib.parse(arg, known)
    kind = variants_lib.one_of(chosen, MODELS)
    size = variants_lib.one_of(chosen, [f"k{k}" for k in KS])
    if kind is None or size is None:
        raise ValueError(
            f"Expected one of {', '.join(MODELS)} and one of k{', k'.join(map(str, KS))}, got {arg!r}."
        )
    runlocal = "runlocal" in chosen
    c = mnist_ae.get_config("runlocal" if runlocal else "")
    c.unlock()
    c.model.code_dim = int(size[1:])
    c.analysis.embedding = "pca"  # t-SNE of every run is not what this experiment is about
    if kind == "linear":
        c.model.hidden = ()
        c.likelihood = "gaussian"
        c.batch_size = 500
        c.num_epochs = 0
        c.num_train_steps = 20 if runlocal else 6000
        c.optimizer.learning_rate = 1e-2
        c.optimizer.warmup_steps = 0 if runlocal else 200
        c.log_every = 5 if runlocal else 500
        c.eval_every = 10 if runlocal else 3000
        c.checkpoint_every = 10 if runlocal else 3000
    return c.lock()
