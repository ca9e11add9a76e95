"""Semantic hashing on the 5,000 real MNIST digits: a deep autoencoder with a b-bit code (Salakhutdinov & Hinton
2009), then retrieval with its bits against LSH, PCA sign, ITQ and real-valued codes (the "retrieval" report).

784-512-256-b, ReLU hidden layers, code = sigmoid(code pre-activation + Gaussian noise of std 4) in training
and the thresholded bits at test time (`aejax/models/hashing.py`), Bernoulli decoder, Adam with warm-up + cosine
decay. Queries are the test digits, the database the training digits, relevant = same label.

  python launch.py --config=configs/hashing.py --workdir=/tmp/hash               # 32 bits
  python launch.py --config=configs/hashing.py:bits16 --workdir=/tmp/hash16      # 16 bits (bits64: 64)
  python launch.py --config=configs/hashing.py:straight_through                  # straight-through bits
  python launch.py --config=configs/hashing.py:runlocal --workdir=/tmp/hash_rl   # seconds, for smoke tests

Variants (comma separated): "bits16", "bits32" (the default), "bits64", "straight_through", "no_noise" (a plain
sigmoid code, only thresholded at test time: the ablation of the noise), "balance" (+ the bit-balance penalty,
aejax/regularizers/bit_balance.py), "decorrelation" (+ the bit-decorrelation penalty, bit_decorrelation.py),
"noise_schedule" (the noise std ramps from 0 to its value over the first half of training), "long" (100
epochs instead of 50), "runlocal". The penalties' weights are config.regularizers.<name>.weight (BALANCE_WEIGHT,
DECORRELATION_WEIGHT below); e.g.

  python launch.py --config=configs/hashing.py:straight_through,balance,decorrelation --workdir=/tmp/hash_bd
"""

import ml_collections

from configs import mnist_ae
from configs import variants as variants_lib

VARIANTS = (
    "bits16",
    "bits32",
    "bits64",
    "straight_through",
    "no_noise",
    "balance",
    "decorrelation",
    "noise_schedule",
    "long",
    "runlocal",
)
# Weights of the balanced / decorrelated-bits penalties (nats of the Bernoulli NLL per unit of penalty).
BALANCE_WEIGHT = 10.0
DECORRELATION_WEIGHT = 10.0


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    bits = variants_lib.one_of(variants, ("bits16", "bits32", "bits64"), default="bits32")
    c = mnist_ae.get_config("runlocal" if "runlocal" in variants else "")
    c.unlock()
    c.model_name = "hashing"
    c.model = ml_collections.ConfigDict(
        dict(
            # Smaller than the main job's 1000-500-250: 3.5x less compute, and on seed 0 at 32 bits (balance +
            # decorrelation) code-space ITQ mAP 0.489 / P@100 0.684 after 50 epochs against 0.489 / 0.665 for
            # 1000-500-250 after 100 epochs; the study's 3 seeds x 10 configs fit the CPU budget.
            hidden=c.model.hidden if "runlocal" in variants else (512, 256),
            code_dim=int(bits[4:]),
            activation="relu",
            noise_std=0.0 if "no_noise" in variants else 4.0,
            estimator="straight_through" if "straight_through" in variants else "noise",
            noise_schedule_steps=0,
            noise_std_initial=0.0,
        )
    )
    c.analysis.embedding = "pca"  # a t-SNE of every run is not what this experiment is about
    if "runlocal" not in variants:
        c.num_epochs = 100 if "long" in variants else 50
    if "balance" in variants:
        c.regularizers.bit_balance = ml_collections.ConfigDict(dict(weight=BALANCE_WEIGHT))
    if "decorrelation" in variants:
        c.regularizers.bit_decorrelation = ml_collections.ConfigDict(dict(weight=DECORRELATION_WEIGHT))
    if "noise_schedule" in variants:
        # Steps of the whole run: mnist5k's 4,000 training digits per epoch (20 steps under runlocal).
        steps = c.num_train_steps or c.num_epochs * (4000 // c.batch_size)
        c.model.noise_schedule_steps = max(steps // 2, 1)
    # Retrieval settings of the "retrieval" report (aejax/analysis/reports/retrieval.py).
    c.retrieval = ml_collections.ConfigDict(
        dict(
            radii=(0, 1, 2),  # Hamming-ball lookups
            ks=(10, 100),  # precision@k of the rankings
            knn_k=100,  # brute-force kNN on real-valued codes, for the speed comparison
            itq_iterations=50,
            seed=0,
            max_queries=0,  # > 0: only the first max_queries test digits (runlocal)
            timing_repeats=5,  # queries/s are the median of this many interleaved repeats
        )
    )
    c.analysis.reports = "retrieval"
    if "runlocal" in variants:
        c.retrieval.max_queries = 200
        c.retrieval.itq_iterations = 5
        c.retrieval.timing_repeats = 1
    return c.lock()
