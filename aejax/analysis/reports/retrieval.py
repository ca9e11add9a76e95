"""Retrieval report: semantic hashing with the model's bits against LSH, PCA sign, ITQ and real-valued codes.

Salakhutdinov & Hinton (2009): queries are the test split, the database the training split, relevant = same
label (labels are used only here). For every b-bit code (the model's own, and with the same b: random-hyperplane
LSH, PCA sign, ITQ) the report measures the Hamming ranking (precision@k, mAP, precision-recall curve) and the
Hamming-ball lookup of a hash table at each radius r (precision, recall, queries/s). The model's real-valued code
(sigmoid of the code logits for `hashing`, the code itself otherwise) and the pixels are ranked by Euclidean
distance. The model's pre-threshold code (the logits a of `hashing`) is hashed a second way, by code-space ITQ
("ae_itq": an ITQ rotation learned on its database codes, `binary_codes.code_itq`). Brute-force kNN on the
real-valued code (sklearn) is the scan the lookup is timed against.

A model without binary codes (e.g. the main job's linear code) is hashed by thresholding each code unit at its
median over the database. Settings are read from `config.retrieval` (defaults below). Writes retrieval.png (PR
curves and the digits retrieved for a few queries), retrieval_table.md and retrieval_curves.npz.
"""

import os
import time
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from aejax.analysis import binary_codes, retrieval
from aejax.analysis.batched import batched_apply
from aejax.analysis.reports import REPORTS, RunContext
from aejax.models.hashing import CODE_LOGITS, CODE_PROBS

# timing_repeats: timings are the median of interleaved repeats (machines are shared, timings noisy).
DEFAULTS = dict(
    radii=(0, 1, 2), ks=(10, 100), knn_k=100, itq_iterations=50, seed=0, max_queries=0, timing_repeats=5
)
SHOW_QUERIES, SHOW_NEIGHBOURS = 5, 10


class ModelCodes(NamedTuple):
    """A model's codes of N inputs at evaluation.

    Attributes:
      code: [N, K] the code (the bits of a hashing model).
      real: [N, K] the real-valued code: sigmoid(a) of a hashing model (extras[CODE_PROBS]), else the code.
      pre_threshold: [N, K] the code before thresholding: the logits a of a hashing model
        (extras[CODE_LOGITS]), else the code.
    """

    code: np.ndarray
    real: np.ndarray
    pre_threshold: np.ndarray


def model_codes(ctx: RunContext, x: np.ndarray, batch_size: int = 500) -> ModelCodes:
    """The model's codes of x [N, ...] at evaluation, in batches of batch_size."""

    def codes(xb, variables):
        out = ctx.model.apply(variables, xb)
        return out.code, out.extras.get(CODE_PROBS, out.code), out.extras.get(CODE_LOGITS, out.code)

    return ModelCodes(*batched_apply(codes, x, ctx.variables, batch_size=batch_size))


def _median_timing(fns: dict, repeats: int) -> dict[str, float]:
    """{name: median seconds} of each fn, the repeats interleaved across fns."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def compare(binary: dict, real: dict, q_labels, db_labels, settings: dict) -> tuple[dict, dict]:
    """The retrieval table of binary codes {name: (db_bits [N, b], query_bits [Q, b])} and real-valued codes
    {name: (db [N, K], queries [Q, K])}; `settings` as DEFAULTS.

    Returns:
      ({"<method>/<metric>": value}, {"<method>": (cutoffs, precision, recall)} PR curves).
    """
    out, curves, timed = {}, {}, {}
    for name, (db, q) in binary.items():
        metrics, curves[name] = retrieval.ranking_metrics(
            retrieval.hamming_distances(q, db), q_labels, db_labels, settings["ks"]
        )
        table = retrieval.HashTable(db)
        for r in settings["radii"]:
            found = table.lookup(q, r)
            metrics.update({f"r{r}_{k}": v for k, v in retrieval.set_metrics(found, q_labels, db_labels).items()})
            timed[f"{name}/r{r}"] = lambda t=table, q=q, r=r: t.lookup(q, r)
        metrics["occupied_addresses"] = len(table.keys)
        stats = binary_codes.bit_statistics(db)
        metrics.update({k: v for k, v in stats.items() if k != "bit_balance"})
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
        # The linear scan: every Hamming distance, then the knn_k nearest (unordered, as kneighbors' set).
        timed[f"{name}/hamming_scan"] = lambda q=q, db=db: np.argpartition(
            retrieval.hamming_distances(q, db), settings["knn_k"] - 1, axis=1
        )[:, : settings["knn_k"]]
    for name, (db, q) in real.items():
        metrics, curves[name] = retrieval.ranking_metrics(
            pairwise_distances(q, db), q_labels, db_labels, settings["ks"]
        )
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
    # The scan the Hamming ball is compared with: exact kNN on the first real-valued code.
    name, (db, q) = next(iter(real.items()))
    knn = NearestNeighbors(n_neighbors=settings["knn_k"], algorithm="brute").fit(db)
    found = list(knn.kneighbors(q, return_distance=False))
    knn_metrics = retrieval.set_metrics(found, q_labels, db_labels)
    out.update({f"{name}/knn{settings['knn_k']}_{k}": v for k, v in knn_metrics.items()})
    timed[f"{name}/knn{settings['knn_k']}"] = lambda: knn.kneighbors(q, return_distance=False)
    for key, seconds in _median_timing(timed, settings["timing_repeats"]).items():
        out[f"{key}_queries_per_s"] = len(q_labels) / seconds
    # A ball that retrieved nothing for any query has no precision: null in results.json (NaN is not JSON).
    out = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in out.items()}
    return out, curves


def markdown_table(out: dict, binary: list[str], real: list[str], settings: dict) -> str:
    """The retrieval table as markdown: one row per method."""
    ks, radii = settings["ks"], settings["radii"]
    head = [*(f"P@{k}" for k in ks), "mAP", *(f"r={r}: P / R / answered" for r in radii)]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in binary + real:
        cells = [f"{out[f'{name}/p@{k}']:.3f}" for k in ks] + [f"{out[f'{name}/map']:.3f}"]
        for r in radii:
            key = f"{name}/r{r}_"
            if key + "recall" not in out:
                cells.append("-")
                continue
            precision = "-" if out[key + "precision"] is None else f"{out[key + 'precision']:.3f}"
            cells.append(f"{precision} / {out[key + 'recall']:.4f} / {out[key + 'fraction_answered']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    # Speed: queries per second of each lookup, the Hamming scan and exact kNN on the first real-valued code.
    knn = f"{real[0]}/knn{settings['knn_k']}_queries_per_s"
    head = [*(f"ball r={r}" for r in radii), "Hamming scan", f"kNN (k={settings['knn_k']}) on {real[0]}"]
    lines += ["", "| queries / s | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in binary:
        cells = [f"{out[f'{name}/r{r}_queries_per_s']:,.0f}" for r in radii]
        cells += [f"{out[f'{name}/hamming_scan_queries_per_s']:,.0f}", f"{out[knn]:,.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(curves: dict, query_x, db_x, order, relevant, path: str) -> None:
    """PR curves of every method (left) and, per query, its nearest database items by the first method."""
    fig = plt.figure(figsize=(15, 5.5))
    ratios = [8, 0.3, 1, 0.2] + [1] * SHOW_NEIGHBOURS  # PR curves, gap, query, gap, neighbours
    grid = fig.add_gridspec(SHOW_QUERIES, len(ratios), width_ratios=ratios)
    ax = fig.add_subplot(grid[:, 0])
    for name, (_, precision, recall) in curves.items():
        ax.plot(recall, precision, marker=".", ms=3, label=name)
    ax.set(xscale="log", xlabel="recall (first n of the ranking)", ylabel="precision", title="precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    side = int(round(np.sqrt(np.prod(query_x.shape[1:]))))
    for i in range(SHOW_QUERIES):
        for j in range(SHOW_NEIGHBOURS + 1):
            a = fig.add_subplot(grid[i, 2 if j == 0 else 3 + j])
            img = query_x[i] if j == 0 else db_x[order[i, j - 1]]
            a.imshow(np.asarray(img).reshape(side, side), cmap="gray", vmin=0, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            if j > 0 and not relevant[i, j - 1]:
                a.spines[:].set(color="red", linewidth=2)
            if i == 0:
                a.set_title("query" if j == 0 else str(j), fontsize=8)
    fig.suptitle(f"retrieved by {next(iter(curves))} (Hamming ranking; red = other label)", x=0.7, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


@REPORTS.register("retrieval")
def report(ctx: RunContext) -> dict:
    """Writes retrieval.png, retrieval_table.md and retrieval_curves.npz; returns the table's numbers.

    Keys: "<method>/p@k", "/map", "/r<r>_precision", "/r<r>_recall", "/r<r>_fraction_answered",
    "/r<r>_mean_retrieved", "/r<r>_queries_per_s", "/hamming_scan_queries_per_s" and the bit statistics for the
    binary methods "ae_hashing", "ae_itq" (code-space ITQ of the model's pre-threshold code), "lsh", "pca_sign",
    "itq"; "/p@k", "/map" for "ae_real" and "pixels", and
    "ae_real/knn<k>_*" for the brute-force kNN; "num_bits", "saturated_fraction" (the model's code units within
    0.1 of 0 or 1 before thresholding, test split), "itq_loss_first", "itq_loss_last", "ae_itq_loss_start" (the
    centred code's own signs) and "ae_itq_loss_last".
    """
    settings = {**DEFAULTS, **dict(ctx.config.get("retrieval", {}))}
    db_x, db_y = ctx.train_split.x, ctx.train_split.labels
    q_x, q_y = ctx.test_split.x, ctx.test_split.labels
    if settings["max_queries"]:
        q_x, q_y = q_x[: settings["max_queries"]], q_y[: settings["max_queries"]]
    db_code, db_real, db_pre = model_codes(ctx, db_x)
    q_code, q_real, q_pre = model_codes(ctx, q_x)
    is_binary = bool(np.all((db_code == 0) | (db_code == 1)))
    if not is_binary:  # a real-valued code: one bit per unit, its median over the database
        median = np.median(db_code, axis=0)
        db_code, q_code = db_code > median, q_code > median
    b = db_code.shape[1]
    lsh = binary_codes.random_hyperplanes(db_x, b, seed=settings["seed"])
    pca = binary_codes.pca_sign(db_x, b)
    itq, losses = binary_codes.itq(db_x, b, iterations=settings["itq_iterations"], seed=settings["seed"])
    # Code-space ITQ: a rotation of the model's own pre-threshold codes (the logits, which keep the margins that
    # the saturated sigmoid(a) has lost), learned on the database codes.
    ae_itq, ae_itq_losses = binary_codes.code_itq(db_pre, iterations=settings["itq_iterations"])
    binary = {"ae_hashing": (db_code, q_code), "ae_itq": (ae_itq(db_pre), ae_itq(q_pre))}
    binary.update({name: (h(db_x), h(q_x)) for name, h in (("lsh", lsh), ("pca_sign", pca), ("itq", itq))})
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    real = {"ae_real": (db_real, q_real), "pixels": (flat(db_x), flat(q_x))}
    out, curves = compare(binary, real, q_y, db_y, settings)
    out.update(num_bits=b, model_bits_are_binary=is_binary)
    out.update(itq_loss_first=float(losses[0]), itq_loss_last=float(losses[-1]))
    out.update(ae_itq_loss_start=float(ae_itq_losses[0]), ae_itq_loss_last=float(ae_itq_losses[-1]))
    if is_binary:
        out["saturated_fraction"] = binary_codes.bit_statistics(q_code, q_real)["saturated_fraction"]

    with open(os.path.join(ctx.workdir, "retrieval_table.md"), "w") as f:
        f.write(markdown_table(out, list(binary), list(real), settings))
    np.savez(
        os.path.join(ctx.workdir, "retrieval_curves.npz"),
        **{
            f"{name}_{part}": arr
            for name, c in curves.items()
            for part, arr in zip(("cutoffs", "p", "r"), c, strict=True)
        },
        ae_bit_balance=binary_codes.bit_statistics(db_code)["bit_balance"],
        itq_losses=losses,
    )
    order = retrieval.ranking(retrieval.hamming_distances(q_code[:SHOW_QUERIES], db_code))
    relevant = retrieval.relevance(order, q_y[:SHOW_QUERIES], db_y)
    plot(curves, q_x, db_x, order, relevant, os.path.join(ctx.workdir, "retrieval.png"))
    return out
