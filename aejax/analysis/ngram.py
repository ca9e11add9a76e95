"""Byte n-gram baselines of a language model, fitted by counting (numpy): the cross-entropy a byte-level LM must
beat.

On windows x [N, T] of bytes, the models predict bytes 1..T-1 of each window (the positions the LM predicts):
- unigram: p(b) = (c(b) + 1) / (n + 256), the byte frequencies of the training windows' predicted positions;
- bigram: p(b | a) = (c(a, b) + 1) / (c(a) + 256), counts of consecutive pairs within the training windows.
Add-one (Laplace) smoothing keeps every byte possible (Jurafsky & Martin, Speech and Language Processing, 3.5).
"""

import numpy as np

VOCAB = 256


def _check(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2 or not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= VOCAB:
        raise ValueError(f"{what} must be [N, T >= 2] integer bytes 0..255, got {x.dtype} {x.shape}.")
    return x.astype(np.int64)


def bigram_log_probs(train: np.ndarray) -> np.ndarray:
    """[256, 256] log p(b | a) (row a: the previous byte), add-one smoothed, from windows train [N, T].

    Raises:
      ValueError: if train is not [N, T >= 2] bytes.
    """
    x = _check(train, "train")
    counts = np.bincount((x[:, :-1] * VOCAB + x[:, 1:]).ravel(), minlength=VOCAB * VOCAB).reshape(VOCAB, VOCAB)
    counts = counts.astype(np.float64) + 1.0
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def unigram_log_probs(train: np.ndarray) -> np.ndarray:
    """[256] log p(b), add-one smoothed, from the predicted positions (1..T-1) of windows train [N, T]."""
    x = _check(train, "train")
    counts = np.bincount(x[:, 1:].ravel(), minlength=VOCAB).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def baseline_nats(train: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """{"unigram": ..., "bigram": ...}: mean cross-entropy on bytes 1..T-1 of the test windows [M, T], nats per
    predicted byte, of the models fitted on train [N, T].

    Raises:
      ValueError: if either is not [N, T >= 2] bytes.
    """
    y = _check(test, "test")
    uni, bi = unigram_log_probs(train), bigram_log_probs(train)
    return {"unigram": float(-uni[y[:, 1:]].mean()), "bigram": float(-bi[y[:, :-1], y[:, 1:]].mean())}
