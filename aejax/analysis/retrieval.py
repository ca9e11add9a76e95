"""Retrieval with binary codes: Hamming distances, Hamming ranking metrics and a Hamming-ball hash table.

Salakhutdinov & Hinton (2009): a b-bit code is a memory address; items similar to a query are found by probing
every address within a small Hamming radius of the query's address, at a cost that does not grow with the
database. The metrics are those of the hashing literature (Gong & Lazebnik 2011): for each query a ranking of the
database, precision@k, average precision (mean over queries: mAP) and the precision-recall curve; for a
Hamming-ball lookup the precision and recall of the retrieved set. Relevance is given per (query, item) pair,
here "same label".

Bits are [N, b] arrays of 0 and 1 (any numeric or bool dtype). Rankings break ties in distance by database
index (a stable sort), so every metric is a deterministic function of the codes.
"""

import itertools
from collections.abc import Sequence

import numpy as np


def check_bits(bits: np.ndarray, name: str = "bits") -> np.ndarray:
    """Returns `bits` [N, b] as uint8 after checking they are 0/1.

    Raises:
      ValueError: if `bits` is not 2-D or holds a value other than 0 and 1.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"{name} must be [N, b], got shape {bits.shape}.")
    if not np.all((bits == 0) | (bits == 1)):
        raise ValueError(f"{name} must hold only 0 and 1 (threshold real-valued codes first).")
    return bits.astype(np.uint8)


def hamming_distances(query_bits: np.ndarray, db_bits: np.ndarray) -> np.ndarray:
    """[Q, N] int32 Hamming distances: XOR of the bit-packed codes and a population count.

    Args:
      query_bits: [Q, b] 0/1; db_bits: [N, b] 0/1, the same b.

    Raises:
      ValueError: for non-binary codes or different numbers of bits.
    """
    q, d = check_bits(query_bits, "query_bits"), check_bits(db_bits, "db_bits")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"Queries have {q.shape[1]} bits, the database {d.shape[1]}.")
    qp, dp = np.packbits(q, axis=1), np.packbits(d, axis=1)  # [Q, ceil(b / 8)], [N, ceil(b / 8)] uint8
    out = np.zeros((len(q), len(d)), np.int32)
    for j in range(qp.shape[1]):  # one byte column at a time keeps the [Q, N] temporaries uint8
        out += np.bitwise_count(qp[:, j, None] ^ dp[None, :, j])
    return out


def ranking(distances: np.ndarray) -> np.ndarray:
    """[Q, N] database indices of each query's items, nearest first (ties by index: a stable sort)."""
    return np.argsort(distances, axis=1, kind="stable")


def relevance(order: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """[Q, N] bool: whether the item at each rank of each query's ranking `order` [Q, N] has the query's label."""
    return np.asarray(db_labels)[order] == np.asarray(query_labels)[:, None]


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """[Q] fraction of relevant items among the first k of each ranking; `relevant` [Q, N] bool in rank order.

    Raises:
      ValueError: unless 1 <= k <= N.
    """
    if not 1 <= k <= relevant.shape[1]:
        raise ValueError(f"k must be in [1, {relevant.shape[1]}], got {k}.")
    return relevant[:, :k].mean(axis=1)


def average_precision(relevant: np.ndarray) -> np.ndarray:
    """[Q] average precision of each ranking: the mean, over the ranks of its relevant items, of the precision
    at that rank (0 for a query with no relevant item). Its mean over queries is mAP."""
    rel = relevant.astype(np.float64)
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    total = rel.sum(axis=1)
    return np.where(total > 0, (precision * rel).sum(axis=1) / np.maximum(total, 1), 0.0)


def precision_recall_curve(relevant: np.ndarray, num_points: int = 60) -> tuple[np.ndarray, ...]:
    """The mean precision and recall over queries of the first n items, at n on a log grid from 1 to N.

    Returns:
      (cutoffs [C] int, precision [C], recall [C]).
    """
    n = relevant.shape[1]
    cutoffs = np.unique(np.geomspace(1, n, num_points).round().astype(int))
    hits = np.cumsum(relevant, axis=1)[:, cutoffs - 1]  # [Q, C]
    total = np.maximum(relevant.sum(axis=1, keepdims=True), 1)
    return cutoffs, (hits / cutoffs).mean(axis=0), (hits / total).mean(axis=0)


def ranking_metrics(
    distances: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, ks: Sequence[int] = (10, 100)
) -> tuple[dict[str, float], tuple[np.ndarray, ...]]:
    """Precision@k for each k and mAP of the rankings by `distances` [Q, N], and the precision-recall curve.

    Returns:
      ({"p@k": ..., "map": ...}, (cutoffs, precision, recall)).
    """
    rel = relevance(ranking(distances), query_labels, db_labels)
    out = {f"p@{k}": float(precision_at_k(rel, k).mean()) for k in ks}
    out["map"] = float(average_precision(rel).mean())
    return out, precision_recall_curve(rel)


def addresses(bits: np.ndarray) -> np.ndarray:
    """[N] uint64 address of each code: bit j of the address is bit j of the code.

    Raises:
      ValueError: for non-binary codes or more than 64 bits.
    """
    bits = check_bits(bits)
    if bits.shape[1] > 64:
        raise ValueError(f"Addresses hold at most 64 bits, got {bits.shape[1]}.")
    weights = np.left_shift(np.uint64(1), np.arange(bits.shape[1], dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def flip_masks(num_bits: int, radius: int) -> np.ndarray:
    """[M] uint64 XOR masks of every address within Hamming distance `radius`: M = sum_{i <= r} C(b, i)."""
    masks = [
        sum((1 << j for j in flips), 0)
        for r in range(radius + 1)
        for flips in itertools.combinations(range(num_bits), r)
    ]
    return np.array(masks, np.uint64)


class HashTable:
    """A hash table from b-bit address to the database items stored there (b <= 64).

    The buckets are the sorted distinct addresses (`keys`) with their items in CSR form (`items[starts[i]:
    starts[i + 1]]` is bucket i), so probing M addresses for Q queries is one vectorised `searchsorted`.
    """

    def __init__(self, db_bits: np.ndarray):
        """db_bits: [N, b] 0/1 codes of the database; item i is row i."""
        db_bits = check_bits(db_bits, "db_bits")
        self.num_bits = db_bits.shape[1]
        addr = addresses(db_bits)
        self.items = np.argsort(addr, kind="stable")  # [N] item indices grouped by address, ascending
        self.keys, counts = np.unique(addr[self.items], return_counts=True)
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def probe(self, query_bits: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """The buckets every query hits: (query index [H], bucket index [H]) of the H non-empty probed addresses.

        Raises:
          ValueError: for a negative radius or codes with another number of bits.
        """
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}.")
        query_bits = check_bits(query_bits, "query_bits")
        if query_bits.shape[1] != self.num_bits:
            raise ValueError(f"Queries have {query_bits.shape[1]} bits, the table {self.num_bits}.")
        probes = addresses(query_bits)[:, None] ^ flip_masks(self.num_bits, radius)[None, :]  # [Q, M]
        pos = np.minimum(np.searchsorted(self.keys, probes), len(self.keys) - 1)
        query, slot = np.nonzero(self.keys[pos] == probes)
        return query, pos[query, slot]

    def lookup(self, query_bits: np.ndarray, radius: int) -> list[np.ndarray]:
        """For each query [Q, b], the sorted indices of every database item within Hamming distance `radius`."""
        query, bucket = self.probe(query_bits, radius)
        found = [[] for _ in range(len(query_bits))]
        for q, bk in zip(query.tolist(), bucket.tolist(), strict=True):
            found[q].append(self.items[self.starts[bk] : self.starts[bk + 1]])
        return [np.sort(np.concatenate(f)) if f else np.zeros(0, np.int64) for f in found]


def set_metrics(retrieved: list[np.ndarray], query_labels: np.ndarray, db_labels: np.ndarray) -> dict[str, float]:
    """Precision and recall of retrieved sets (relevant = same label).

    Returns:
      {"precision": mean over the queries that retrieved anything, "recall": mean over all queries,
       "fraction_answered": fraction of queries with a non-empty set, "mean_retrieved": mean set size}.
    """
    db_labels = np.asarray(db_labels)
    sizes = np.array([len(r) for r in retrieved])
    hits = np.array([np.sum(db_labels[r] == y) for r, y in zip(retrieved, query_labels, strict=True)])
    num_relevant = np.array([np.sum(db_labels == y) for y in query_labels])
    answered = sizes > 0
    return {
        "precision": float((hits[answered] / sizes[answered]).mean()) if answered.any() else float("nan"),
        "recall": float((hits / np.maximum(num_relevant, 1)).mean()),
        "fraction_answered": float(answered.mean()),
        "mean_retrieved": float(sizes.mean()),
    }
