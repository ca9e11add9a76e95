"""Streamed splits: activation stores larger than memory, read batch by batch from their shards.

`StoreView` is a lazy [N, d] float32 array over one split of an activation store (`aejax.data.activation_store`):
`view[rows]` reads only those rows, with `os.pread` (one call per run of consecutive rows). Memory-mapped pages
that a read touches count in the process's resident set until the kernel reclaims them, which it does not while
memory is free (and a fault maps up to 16 neighbouring pages), so reading random rows of an 8 GB store through a
memmap grew the RSS by 7 GB in 60 batches (benchmarks/bench_streaming.py reads); `pread` copies the rows into
the batch and maps nothing. It was also faster than a memmap whose pages are dropped after each read
(`madvise(MADV_DONTNEED)`): 48 against 69 ms per batch of 4,096 random rows (README, "Streamed datasets"), it
releases the GIL while it waits (the prefetching threads overlap), and a shard truncated after it was opened
gives a named error instead of a SIGBUS.

`StreamingLoader` gives exactly `InMemoryLoader`'s batches (the same `PermutedLoader` order, a pure function of
the step, so the step saved in every checkpoint is the data position and a killed run resumes on the same next
batch) and prefetches the next batches in background threads through grain. `load_data` in `aejax.build`
decides, per split, whether to stream (`should_stream`: config.data_loading, config.max_memory_gb).
"""

import os
import sys
import threading
from collections.abc import Iterator

import grain
import numpy as np

from aejax.data import activation_store
from aejax.data.batch import Batch, Split
from aejax.data.pipeline import PermutedLoader
from aejax.data.transforms import Transforms

MODES = ("auto", "memory", "stream")
_MAX_OPEN_PER_THREAD = 256
PREFETCH_BYTES = 256 * 2**20  # host memory for batches read ahead (d = 128, B = 4,096: 64 batches)
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
        shards = store.vector_shards(split)
        self._files = [(a.filename, a.offset) for a in shards]
        self._disk_dtype = shards[0].dtype if shards else np.dtype(np.float32)
        for a in shards:
            if os.path.getsize(a.filename) < a.offset + a.nbytes:
                raise ValueError(
                    f"{a.filename}: shorter than its header says (truncated shard of split {split!r})."
                )
        self._offsets = np.cumsum([0] + [len(a) for a in shards])
        self.shape = (int(self._offsets[-1]), self.d)
        # Open files per thread (grain's prefetching threads read concurrently), closed with the view or thread.
        self._open = threading.local()

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

    def _file(self, i: int):
        files = self._open.__dict__.setdefault("files", {})
        if i not in files:
            if len(files) >= _MAX_OPEN_PER_THREAD:  # stores of thousands of shards: stay below the fd limit
                for f in files.values():
                    f.close()
                files.clear()
            files[i] = open(self._files[i][0], "rb", buffering=0)  # noqa: SIM115 (kept open for later reads)
        return files[i]

    def _take(self, index: np.ndarray) -> np.ndarray:
        n = len(self)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise IndexError(f"Row indices must be in [0, {n}) for split {self.split!r} of {self.path}.")
        # Sorted reads walk each shard forwards and merge consecutive rows into one read; the order is restored.
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        shard = np.searchsorted(self._offsets, sorted_index, side="right") - 1
        # A run ends where the shard changes or the next row is not the next one on disk.
        ends = np.flatnonzero((np.diff(shard) != 0) | (np.diff(sorted_index) != 1)) + 1
        out = np.empty((len(index), self.d), np.float32)
        row_bytes = self.d * self._disk_dtype.itemsize
        for lo, hi in zip(np.r_[0, ends].tolist(), np.r_[ends, len(index)].tolist(), strict=True):
            if lo == hi:
                continue
            i = int(shard[lo])
            name, header = self._files[i]
            start = header + int(sorted_index[lo] - self._offsets[i]) * row_bytes
            data = os.pread(self._file(i).fileno(), (hi - lo) * row_bytes, start)
            if len(data) != (hi - lo) * row_bytes:
                raise ValueError(
                    f"{name}: truncated shard of split {self.split!r} (a short read at byte {start})."
                )
            out[lo:hi] = np.frombuffer(data, self._disk_dtype).reshape(hi - lo, self.d)
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
      prefetch: batches read ahead of the one the loop consumes (each holds B/P x d float32); None: as many as
        fit in PREFETCH_BYTES, at most 64 (two calls of K = 32 steps, so the next call's batches are read while
        the device runs this one), at least 2.

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
        prefetch: int | None = None,
    ):
        super().__init__(
            x,
            labels,
            global_batch_size=global_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        if prefetch is None:
            batch_bytes = self.local_batch_size * int(np.prod(x.shape[1:])) * 4
            prefetch = max(2, min(64, PREFETCH_BYTES // batch_bytes))
        if num_threads < 1 or prefetch < 1:
            raise ValueError(f"num_threads {num_threads} and prefetch {prefetch} must be >= 1.")
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
