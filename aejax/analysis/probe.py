"""Linear probes: how much a frozen code helps a linear classifier that sees only a few labels.

The protocol of the pre-training papers' few-label tables (Vincent et al. 2010, Table 3; Rifai et al. 2011,
Table 1; Erhan et al. 2010), with a linear read-out instead of fine-tuning: from the train split, n labelled
examples per class (n in {1, 10, 100, all}; several seeds of the subset for small n), a multinomial logistic
regression (scikit-learn) on the codes of those examples, accuracy on the whole test split. Every
representation is probed on the same labelled subsets, so their curves differ only by the representation.

Features are centred on the mean of the *whole* train split's representation and divided by one number, the root
mean variance of its features (`Scaling`), which uses no labels (the autoencoder saw the same unlabelled images):
the regulariser C then means the same for every representation, and a representation's geometry is kept, so an
L2-regularised probe on all principal components equals the probe on the pixels (a rotation; tested). Per-feature
standardisation would instead blow the low-variance principal components, mostly noise, up to unit variance
(measured: PCA-500 of mnist5k, 400 labels, 44% error standardised). The labels enter only here, never the
autoencoder's training.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import matplotlib
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from aejax.analysis.batched import batched_apply
from aejax.data import transforms

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt  # noqa: E402

ALL = "all"  # n = every labelled train example (one subset, no seeds)
DEFAULT_LABELS_PER_CLASS = (1, 10, 100, ALL)
FIXED_TRAIN_BINARIZE_SEED = 54321  # one fixed binarisation of a grey train split (dynamic binarisation)


def parse_labels_per_class(spec: str | Sequence) -> tuple:
    """ "1,10,100,all" (or a sequence) -> (1, 10, 100, "all").

    Raises:
      ValueError: for an entry that is neither a positive integer nor "all".
    """
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if str(item).lower() == ALL:
            out.append(ALL)
            continue
        try:
            n = int(item)
        except (TypeError, ValueError):
            n = 0
        if n < 1 or str(n) != str(item).strip():
            raise ValueError(f"Labels per class must be positive integers or {ALL!r}, got {item!r}.")
        out.append(n)
    if not out:
        raise ValueError("No labels per class given (e.g. '1,10,100,all').")
    return tuple(out)


def labelled_subset(labels: np.ndarray, n: int | str, seed: int) -> np.ndarray:
    """Indices of n examples of each class, drawn without replacement, a pure function of (labels, n, seed).

    Args:
      labels: [N] int class labels of the train split.
      n: examples per class, or "all" for every index.
      seed: which subset; class c draws from `np.random.default_rng([seed, n, c])`, so the subset of a class
        does not depend on the other classes.

    Returns:
      [n * num_classes] int64 indices, sorted (all N for "all").

    Raises:
      ValueError: if n < 1, or a class has fewer than n examples (naming it and its count).
    """
    labels = np.asarray(labels)
    if n == ALL:
        return np.arange(len(labels))
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer or {ALL!r}, got {n!r}.")
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < n:
            raise ValueError(f"Class {c} has only {len(rows)} examples, fewer than n={n} per class.")
        picked.append(np.random.default_rng([seed, int(n), int(c)]).choice(rows, size=n, replace=False))
    return np.sort(np.concatenate(picked))


class Scaling(NamedTuple):
    """x -> (x - mean) / scale: mean [K] per feature, scale [] the root mean variance over the K features."""

    mean: np.ndarray
    scale: float

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaling":
        """From the unlabelled features x [N, K] (a constant representation gets scale 1)."""
        x = np.asarray(x, np.float64)
        scale = float(np.sqrt(np.mean(x.var(axis=0))))
        return cls(x.mean(axis=0), scale if scale > 0 else 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) / self.scale


def probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    scaler: Scaling | None = None,
    c: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Test accuracy of a multinomial logistic regression (L2, inverse strength `c`) fit on (train_x, train_y).

    Args:
      train_x: [n, K] features of the labelled examples; train_y: [n] their labels.
      test_x: [M, K] features of the test examples; test_y: [M] their labels.
      scaler: a fitted `Scaling` applied to both (default: none).
      c: sklearn's C, the inverse L2 weight, the same for every representation.
      max_iter: lbfgs iterations.

    Returns:
      The fraction of test examples classified correctly, in [0, 1].

    Raises:
      ValueError: if the labelled examples hold fewer than two classes.
    """
    if len(np.unique(train_y)) < 2:
        raise ValueError("A probe needs labelled examples of at least two classes.")
    if scaler is not None:
        train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    clf = LogisticRegression(C=c, max_iter=max_iter).fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


class Representation(NamedTuple):
    """One representation of both splits: train [N, K] (all train examples) and test [M, K]."""

    train: np.ndarray
    test: np.ndarray


def probe_curves(
    representations: Mapping[str, Representation],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    labels_per_class: Sequence = DEFAULT_LABELS_PER_CLASS,
    seeds: int = 5,
    c: float = 1.0,
) -> dict[str, dict]:
    """Probe accuracy of every representation on the same labelled subsets.

    Args:
      representations: name -> Representation(train [N, K], test [M, K]).
      train_labels: [N]; test_labels: [M].
      labels_per_class: the n to probe ("all" is one subset, the whole train split).
      seeds: subsets per n (seeds 0..seeds-1) for every integer n.
      c: sklearn's C.

    Returns:
      {name: {n: {"mean": accuracy, "std": over seeds (0 for one subset), "accuracies": [per seed]}}}.
    """
    scalers = {name: Scaling.fit(r.train) for name, r in representations.items()}
    out = {name: {} for name in representations}
    with threadpool_limits(limits=1, user_api="blas"):
        _fill_curves(out, representations, scalers, train_labels, test_labels, labels_per_class, seeds, c)
    return out


def _fill_curves(out, representations, scalers, train_labels, test_labels, labels_per_class, seeds, c) -> None:
    # Single-threaded BLAS: lbfgs on these small matrices ran ~30x slower with OpenBLAS's 2 threads on this
    # shared 2-core machine (measured 4.3 s -> 0.13 s for 100 per class on pixels); threads only contend here.
    for n in labels_per_class:
        accs = {name: [] for name in representations}
        for seed in range(1 if n == ALL else seeds):
            rows = labelled_subset(train_labels, n, seed)
            for name, r in representations.items():
                acc = probe_accuracy(
                    np.asarray(r.train, np.float64)[rows],
                    train_labels[rows],
                    np.asarray(r.test, np.float64),
                    test_labels,
                    scaler=scalers[name],
                    c=c,
                )
                accs[name].append(acc)
        for name, a in accs.items():
            out[name][n] = {"mean": float(np.mean(a)), "std": float(np.std(a)), "accuracies": a}


def encode_split(encode: Callable[..., jax.Array], x: np.ndarray, *args, batch_size: int = 500) -> np.ndarray:
    """[N, *input_shape] -> [N, K] codes of an encoder `encode(xb, *args)`, by `batched.batched_apply`."""
    return batched_apply(encode, x, *args, batch_size=batch_size)


def pca_codes(train_x: np.ndarray, test_x: np.ndarray, k: int) -> Representation:
    """The k principal-component scores of both splits, PCA fit on the whole (unlabelled) train split."""
    a = train_x.reshape(len(train_x), -1).astype(np.float64)
    b = test_x.reshape(len(test_x), -1).astype(np.float64)
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(a)
    return Representation(pca.transform(a), pca.transform(b))


def fixed_train_inputs(config, x: np.ndarray) -> np.ndarray:
    """The train split's inputs as a probe or classifier should see them: under dynamic binarisation the split
    stays grey for the loader's per-step samples, so it is binarised once with a fixed seed, as the test split is
    (`aejax.data.transforms.apply`); otherwise unchanged."""
    t = transforms.Transforms.from_config(config.get("transforms"))
    if t.binarize != "dynamic":
        return x
    return transforms.bernoulli_sample(x, np.random.default_rng(FIXED_TRAIN_BINARIZE_SEED))


def plot_curves(curves: dict[str, dict], num_all: float, path: str, *, title: str = "") -> None:
    """Test accuracy against labelled examples per class (log axis), one line per representation, error bars of
    one standard deviation over subsets; "all" is drawn at the train split's mean class size `num_all`."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, by_n in curves.items():
        ns = list(by_n)
        xs = [num_all if n == ALL else n for n in ns]
        ax.errorbar(
            xs,
            [by_n[n]["mean"] for n in ns],
            yerr=[by_n[n]["std"] for n in ns],
            marker="o",
            ms=4,
            capsize=3,
            label=name,
        )
    ticks = sorted({num_all if n == ALL else n for by_n in curves.values() for n in by_n})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"all ({num_all:.0f})" if t == num_all else str(t) for t in ticks])
    ax.set(xlabel="labelled train examples per class", ylabel="test accuracy", ylim=(0, 1))
    ax.set_title(title or "linear probe (logistic regression)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
