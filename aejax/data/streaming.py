"""Streamed splits: activation stores larger than memory, read batch by batch from their shards.

`StoreView` is a lazy [N, d] float32 array over one split of an activation store (`aejax.data.activation_store`):
`view[rows]` reads only those rows. Memory-mapped pages that a read touches count in the process's resident set
until the kernel reclaims them, which it does not while memory is free, so a plain memmap of an 8 GB store grows
the RSS of a long run towards 8 GB. The view therefore drops its pages after each read
(`madvise(MADV_DONTNEED)` on the shard's mapping): the pages stay in the OS page cache, so re-reading is cheap,
but they no longer count in the process's RSS.

`StreamingLoader` gives exactly `InMemoryLoader`'s batches (the same `PermutedLoader` order, a pure function of
the step, so the step saved in every checkpoint is the data position and a killed run resumes on the same next
batch) and prefetches the next batches in background threads through grain. `load_data` in `aejax.build`
decides, per split, whether to stream (`should_stream`: config.data_loading, config.max_memory_gb).
"""

import mmap
import sys
from collections.abc import Iterator

import grain
import numpy as np

from aejax.data import activation_store
from aejax.data.batch import Batch, Split
from aejax.data.pipeline import PermutedLoader
from aejax.data.transforms import Transforms

MODES = ("auto", "memory", "stream")
# Codes a streamed evaluation keeps by default, its first rows (at 2048 latents 256 MiB); metrics cover every row.
DEFAULT_MAX_CODE_ROWS = 32768


class StoreView:
    """Rows of one split of an activation store, read on demand as float32 (a lazy [N, d] array).

    Supports `len`, `shape`, `dtype`, `ndim` and indexing with an int, a slice or an integer index array (any
    order, repeats allowed) -> numpy float32 [..., d]; `np.asarray(view)` reads the whole split.

    Args:
      store: an opened `activation_store.ActivationStore` (its shards are already checked against the
        manifest: a missing or truncated shard raised there, naming the file).
      split: the split name.
      max_code_rows: how many of the split's codes an evaluation keeps (`aejax.loop.evaluate`): the first ones.

    Raises:
      KeyError: for an unknown split (listing the splits).
      ValueError: if the split is still being extracted (its `complete` flag is false), or a shard file is
        shorter than its header says (truncated), naming it.
    """

    def __init__(
        self, store: activation_store.ActivationStore, split: str, *, max_code_rows: int = DEFAULT_MAX_CODE_ROWS
    ):
        if not store.is_complete(split):
            raise ValueError(
                f"Split {split!r} of the activation store {store.path} is incomplete (an extraction was "
                "interrupted): re-run the same `python -m aejax.activations` command to finish it."
            )
        self.path, self.split, self.max_code_rows = store.path, split, int(max_code_rows)
        self.d = store.d
        self._maps, self._arrays = [], []
        for a in store.vector_shards(split):
            with open(a.filename, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the mapping outlives the descriptor
            if len(m) < a.offset + a.nbytes:
                raise ValueError(
                    f"{a.filename}: shorter than its header says (truncated shard of split {split!r})."
                )
            self._maps.append(m)
            self._arrays.append(np.ndarray(a.shape, a.dtype, buffer=m, offset=a.offset))
        self._offsets = np.cumsum([0] + [len(a) for a in self._arrays])
        self.shape = (int(self._offsets[-1]), self.d)

    dtype = np.dtype(np.float32)
    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        del copy  # always a fresh array
        x = self[:]
        return x if dtype is None else x.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            return self._take(np.arange(*key.indices(n)))
        if np.isscalar(key):
            return self._take(np.asarray([key], np.int64) % max(n, 1))[0]
        index = np.asarray(key)
        if not np.issubdtype(index.dtype, np.integer) or index.ndim != 1:
            raise IndexError(
                f"StoreView takes an int, a slice or a 1-D integer array, got {index.dtype} {index.shape}."
            )
        return self._take(index.astype(np.int64))

    def _take(self, index: np.ndarray) -> np.ndarray:
        n = len(self)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise IndexError(f"Row indices must be in [0, {n}) for split {self.split!r} of {self.path}.")
        # Sorted reads walk each shard forwards (readahead, fewer page faults); the order is restored at the end.
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        shard = np.searchsorted(self._offsets, sorted_index, side="right") - 1
        bounds = np.flatnonzero(np.diff(shard)) + 1
        out = np.empty((len(index), self.d), np.float32)
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(index)], strict=True):
            if lo == hi:
                continue
            i = int(shard[lo])
            local = sorted_index[lo:hi] - self._offsets[i]
            if local[-1] - local[0] + 1 == len(local):  # a contiguous run: one slice
                out[lo:hi] = self._arrays[i][local[0] : local[-1] + 1]
            else:
                out[lo:hi] = self._arrays[i][local]
            # Drop the touched pages from this process (they stay in the page cache): see the module docstring.
            self._maps[i].madvise(mmap.MADV_DONTNEED)
        result = np.empty_like(out)
        result[order] = out
        return result


def should_stream(dataset: str, split: str, mode: str, max_memory_gb: float) -> bool:
    """Whether `split` of `dataset` is streamed: mode "stream", or "auto" and the split's float32 vectors
    (rows x d x 4 bytes) exceed `max_memory_gb` GiB; "memory" never streams.

    Raises:
      ValueError: for an unknown mode (listing MODES), a non-positive budget, or "stream" on a dataset that is
        not an activation store (only "activations:<dir>" can stream).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown config.data_loading {mode!r}. Known: {', '.join(MODES)}.")
    if not max_memory_gb > 0:
        raise ValueError(f"config.max_memory_gb must be > 0, got {max_memory_gb}.")
    if not activation_store.is_activations(dataset):
        if mode == "stream":
            raise ValueError(
                f"config.data_loading='stream' works for activation stores ('{activation_store.PREFIX}<dir>') "
                f"only; {dataset!r} is read into memory: use data_loading='auto' or 'memory'."
            )
        return False
    if mode != "auto":
        return mode == "stream"
    store = activation_store.ActivationStore(dataset)
    return store.num_rows(split) * store.d * 4 > max_memory_gb * 2**30


def check_transforms(t: Transforms, dataset: str) -> None:
    """Raises ValueError unless `t` leaves stored vectors as they are (no z-normalisation, which needs the
    whole split's statistics, and no binarisation), naming the dataset and the offending field."""
    if t.standardize != "none" or t.binarize != "none":
        raise ValueError(
            f"{dataset} is streamed (config.data_loading): transforms.standardize={t.standardize!r} and "
            f"binarize={t.binarize!r} must be 'none' (they need the whole split in memory); normalise the "
            "vectors in the model instead (the SAEs' normalize_input), or use data_loading='memory'."
        )


def open_split(dataset: str, split: str, *, max_code_rows: int = DEFAULT_MAX_CODE_ROWS) -> Split:
    """A streamed split: Split(x StoreView [N, d], labels [N] -1 (a broadcast, no memory), mask None, "vector").

    Raises:
      As `activation_store.ActivationStore` (missing or truncated shards, named) and `StoreView`.
    """
    view = StoreView(activation_store.ActivationStore(dataset), split, max_code_rows=max_code_rows)
    return Split(x=view, labels=np.broadcast_to(np.int32(-1), (len(view),)), mask=None, kind="vector")


class StreamingLoader(PermutedLoader):
    """`InMemoryLoader`'s batches read from a lazy split, prefetched in background threads.

    `batch(step)` reads this host's B/P rows of the step (`PermutedLoader` order, so the same rows as an
    `InMemoryLoader` of the same seed) from `x`; `iterate(start)` runs `batch` over start, start + 1, ... in
    `num_threads` grain threads, `prefetch` batches ahead, and yields them in step order.

    Args:
      x: [N, d] lazy inputs (a `StoreView`, or any array indexable by an index array).
      labels: [N] int32 labels.
      global_batch_size, seed, process_index, process_count: as `InMemoryLoader`.
      num_threads: grain threads reading batches.
      prefetch: batches read ahead of the one the loop consumes (each holds B/P x d float32).

    Raises:
      ValueError: on mismatched lengths, a bad batch size (see `AbstractLoader`), or num_threads / prefetch < 1.
    """

    def __init__(
        self,
        x: StoreView,
        labels: np.ndarray,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        num_threads: int = 2,
        prefetch: int = 4,
    ):
        if len(x) != len(labels):
            raise ValueError(f"{len(x)} inputs but {len(labels)} labels.")
        if num_threads < 1 or prefetch < 1:
            raise ValueError(f"num_threads {num_threads} and prefetch {prefetch} must be >= 1.")
        super().__init__(
            len(x),
            global_batch_size=global_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        self.x, self.labels = x, labels
        self.num_threads, self.prefetch = num_threads, prefetch

    @property
    def can_scan(self) -> bool:
        # K steps per call take K host batches in one replicated transfer: the whole global batch must be here.
        return self.process_count == 1

    def batch(self, step: int) -> Batch:
        """Returns this host's `Batch(x [B/P, d], label [B/P])` of global step `step`."""
        rows = self.local_rows(step)
        return Batch(x=self.x[rows], label=np.asarray(self.labels[rows], np.int32))

    def iterate(self, start_step: int = 0) -> Iterator[Batch]:
        """`batch(start_step)`, `batch(start_step + 1)`, ... forever, read ahead in grain threads; closing the
        generator (or dropping it) stops the threads."""
        options = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
        batches = iter(grain.MapDataset.range(start_step, sys.maxsize).map(self.batch).to_iter_dataset(options))
        try:
            yield from batches
        finally:
            batches.close()
