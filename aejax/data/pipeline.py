"""Input pipelines: exactly resumable training batches and padded evaluation batches.

Training order is a pure function of the global step: epoch e = step // steps_per_epoch is a seeded
permutation of the split (`np.random.default_rng([seed, e])`), global batch i of the epoch is rows
[i*B, (i+1)*B) of it, and host p of P keeps its contiguous B/P rows. So a run resumed at step s
sees exactly the batches an uninterrupted run sees, on any number of hosts, with no iterator state
to checkpoint. Every bundled set fits in memory (`InMemoryLoader`); `GrainLoader` reads a
random-access source (e.g. a TFDS data source) in grain's shuffled order, one batched read per
step, for data that does not.
"""

import abc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import numpy as np

from aejax.data.batch import Batch
from aejax.data.transforms import scale

# transform(x [b, ...], step) -> x: a per-step transform of training inputs (e.g. dynamic binarisation).
StepTransform = Callable[[np.ndarray, int], np.ndarray]


class AbstractLoader(abc.ABC):
    """Step arithmetic shared by the training loaders; subclasses implement `batch(step)`.

    Args:
      num_examples: N, the number of examples in one epoch.
      global_batch_size: B, rows of one global batch (all hosts together).
      seed: seed of the per-epoch shuffle.
      process_index: this host's index p in [0, process_count).
      process_count: number of hosts P; each host yields B / P rows per step.

    Raises:
      ValueError: if B is not positive, larger than N, or not divisible by P, or p is not in
        [0, P).
    """

    def __init__(
        self,
        num_examples: int,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"Bad process_index {process_index} of process_count {process_count}.")
        if global_batch_size < 1 or global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size {global_batch_size} must be a positive multiple of "
                f"process_count {process_count}."
            )
        if global_batch_size > num_examples:
            raise ValueError(f"global_batch_size {global_batch_size} exceeds the {num_examples} examples.")
        self.num_examples = num_examples
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        # The remainder of each epoch is dropped, so every step has a full batch.
        self.steps_per_epoch = num_examples // global_batch_size

    def _locate(self, step: int) -> tuple[int, int]:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        return divmod(step, self.steps_per_epoch)

    @abc.abstractmethod
    def batch(self, step: int) -> Batch:
        """This host's rows of the global batch at `step` (a pure function of `step`)."""

    @property
    def device_resident(self) -> bool:
        """Whether the loop may keep the split in device memory and gather K steps' batches there
        (`loop.resolve_steps_per_call`); False unless a subclass holds the whole split in host memory."""
        return False

    @property
    def can_scan(self) -> bool:
        """Whether the loop may run K > 1 steps per jitted call (a `lax.scan`) on this loader's batches: from a
        device-resident split, or from K host batches sent at once (`StreamingLoader` on one process)."""
        return self.device_resident

    def iterate(self, start_step: int = 0) -> Iterator[Batch]:
        """Yields `batch(start_step)`, `batch(start_step + 1)`, ... forever (the loop's batches when it takes one
        step per call; a streaming loader prefetches them)."""
        step = start_step
        while True:
            yield self.batch(step)
            step += 1

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate(0)

    def state(self, step: int) -> dict[str, int]:
        """Where `step` falls, for logs and checkpoints: {"epoch", "index_in_epoch", "seed"}."""
        epoch, index_in_epoch = self._locate(step)
        return {"epoch": epoch, "index_in_epoch": index_in_epoch, "seed": self.seed}


class PermutedLoader(AbstractLoader):
    """The order of `InMemoryLoader` and `streaming.StreamingLoader`, shared so both give the same batches.

    Epoch e is `np.random.default_rng([seed, e]).permutation(N)`; global batch i of the epoch is its rows
    [i*B, (i+1)*B), and host p keeps rows [p*B/P, (p+1)*B/P) of those, read from x and labels by the
    subclass's `batch`.

    Args:
      x: [N, ...] inputs (in memory, or any array indexable by an index array); labels: [N] int32.
      **kwargs: as `AbstractLoader` (global_batch_size, seed, process_index, process_count).

    Raises:
      ValueError: on mismatched lengths or a bad batch size (see `AbstractLoader`).
    """

    def __init__(self, x, labels: np.ndarray, **kwargs):
        if len(x) != len(labels):
            raise ValueError(f"{len(x)} inputs but {len(labels)} labels.")
        super().__init__(len(x), **kwargs)
        self.x, self.labels = x, labels
        # (epoch, permutation) in one tuple, so prefetching threads never see an epoch with another's order.
        self._cached: tuple[int, np.ndarray] = (-1, np.empty((0,), np.int64))

    def permutation(self, epoch: int) -> np.ndarray:
        """[N] int64 order of epoch `epoch`."""
        # Consecutive steps share an epoch; keep the last permutation instead of redrawing it.
        cached_epoch, perm = self._cached
        if epoch != cached_epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            self._cached = (epoch, perm)
        return perm

    def global_rows(self, step: int) -> np.ndarray:
        """[B] int64 rows of the whole global batch of `step` (every host's; host p's are the p-th B/P of them):
        what a device-resident split is gathered with (`train_step.make_multi_step`)."""
        epoch, index = self._locate(step)
        start = index * self.global_batch_size
        return self.permutation(epoch)[start : start + self.global_batch_size]

    def local_rows(self, step: int) -> np.ndarray:
        """[B/P] int64 rows of this host's part of the global batch of `step`."""
        start = self.process_index * self.local_batch_size
        return self.global_rows(step)[start : start + self.local_batch_size]


class InMemoryLoader(PermutedLoader):
    """Batches arrays held in host memory by a seeded per-epoch permutation (`PermutedLoader`'s order).

    Args:
      x: [N, *input_shape] float32 inputs (e.g. a transformed `Split.x`).
      labels: [N] int32 labels.
      global_batch_size: B; `batch` returns B / process_count rows.
      mask: optional [N, T] float32 step validity of variable-length series (`Split.mask`), batched with x.
      seed: shuffle seed; epoch e uses `np.random.default_rng([seed, e]).permutation(N)`.
      process_index: this host's index (`jax.process_index()`).
      process_count: number of hosts (`jax.process_count()`).
      transform: optional `fn(x, step) -> x` applied to every batch (dynamic binarisation), a pure function of
        the step like the order.

    Raises:
      ValueError: on mismatched lengths or a bad batch size (see `AbstractLoader`).
    """

    def __init__(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        transform: StepTransform | None = None,
        mask: np.ndarray | None = None,
    ):
        _check_mask(x, mask)
        super().__init__(
            x,
            labels,
            global_batch_size=global_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        self.mask = mask
        self.transform = transform

    @property
    def device_resident(self) -> bool:
        # A per-step host transform (dynamic binarisation) cannot run inside the device-side scan.
        return self.transform is None

    def batch(self, step: int) -> Batch:
        """Returns this host's `Batch(x [B/P, ...], label [B/P], mask [B/P, T] or None)` of global step `step`."""
        rows = self.local_rows(step)
        x = self.x[rows]
        if self.transform is not None:
            x = self.transform(x, step)
        return Batch(x=x, label=self.labels[rows], mask=None if self.mask is None else self.mask[rows])


class GrainLoader(AbstractLoader):
    """The `InMemoryLoader` interface over a random-access source, ordered by `grain.MapDataset`.

    grain gives the order: `MapDataset.range(N).seed(seed).shuffle()`, a deterministic shuffle
    reseeded each epoch (not `InMemoryLoader`'s order), batched with `drop_remainder`. Global
    batch i of epoch e is B consecutive shuffled indices; host p reads only its B/P of them, as
    local batch (i*P + p) of the epoch. The records of a batch are read in one call to the
    source's `__getitems__` when it has one (TFDS data sources do: about 1.7x faster here than
    grain's record-by-record `MapDataset.source` reads), else `source[i]` one by one.

    Args:
      source: random-access source of N records, `source[i]` -> dict (e.g.
        `tfds.data_source(...)` or `builder.as_data_source(split)`, or a list of dicts).
      global_batch_size: B.
      seed: shuffle seed, in [0, 2**32).
      process_index: this host's index.
      process_count: number of hosts.
      image_key: record key of the input; integer pixels are scaled as `transforms.scale(.., "auto")`.
      label_key: record key of the label, or None (labels are then -1).

    Raises:
      ValueError: on a bad batch size (see `AbstractLoader`).
    """

    def __init__(
        self,
        source: Sequence[dict[str, Any]],
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        image_key: str = "image",
        label_key: str | None = "label",
    ):
        super().__init__(
            len(source),
            global_batch_size=global_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        self.source = source
        self.image_key = image_key
        self.label_key = label_key
        order = grain.MapDataset.range(self.num_examples).seed(seed).shuffle()
        self._index_batches = order.batch(self.local_batch_size, drop_remainder=True)

    def _read(self, indices: list[int]) -> list[dict[str, Any]]:
        # The batched-read protocol of TFDS data sources (and torch datasets) is optional.
        read_many = getattr(self.source, "__getitems__", None)
        if read_many is not None:
            return read_many(indices)
        return [self.source[i] for i in indices]

    def indices(self, step: int) -> np.ndarray:
        """[B/P] int64 source indices of this host's rows at global step `step`."""
        epoch, index = self._locate(step)
        local = index * self.process_count + self.process_index
        # Indices past one epoch make grain reshuffle with the next epoch's seed.
        return self._index_batches[epoch * len(self._index_batches) + local]

    def batch(self, step: int) -> Batch:
        """Returns this host's `Batch(x [B/P, ...], label [B/P])` of global step `step`."""
        records = self._read([int(i) for i in self.indices(step)])
        x = scale(np.stack([np.asarray(r[self.image_key]) for r in records]), "auto")
        if self.label_key is None:
            label = np.full((len(records),), -1, np.int32)
        else:
            label = np.asarray([r[self.label_key] for r in records], np.int32)
        return Batch(x=x, label=label)


def _check_mask(x: np.ndarray, mask: np.ndarray | None) -> None:
    if mask is not None and (x.ndim < 2 or mask.shape != x.shape[:2]):
        raise ValueError(f"mask must be [N, T] = {x.shape[:2]} of inputs {x.shape}, got {mask.shape}.")


def eval_batches(
    x: np.ndarray, labels: np.ndarray, *, batch_size: int, multiple_of: int, mask: np.ndarray | None = None
) -> Iterator[tuple[Batch, int]]:
    """Yields the split in order in full batches; the last one padded by repeating its last row.

    Args:
      x: [N, *input_shape] inputs.
      labels: [N] labels.
      batch_size: requested rows per batch; rounded up to a multiple of `multiple_of`.
      multiple_of: the number of devices the batch is sharded over.
      mask: optional [N, T] step validity (`Split.mask`), batched with x.

    Yields:
      (Batch(x [b, ...], label [b], mask [b, T] or None), num_valid): b the rounded batch size, rows
      [num_valid:] are padding to be masked out of metrics.

    Raises:
      ValueError: if `batch_size` or `multiple_of` is not positive, lengths differ, or the mask is not [N, T].
    """
    if batch_size < 1 or multiple_of < 1:
        raise ValueError(f"batch_size {batch_size} and multiple_of {multiple_of} must be >= 1.")
    if len(x) != len(labels):
        raise ValueError(f"{len(x)} inputs but {len(labels)} labels.")
    _check_mask(x, mask)
    size = -(-batch_size // multiple_of) * multiple_of
    n = len(x)
    for start in range(0, n, size):
        num_valid = min(size, n - start)
        rows = np.minimum(np.arange(start, start + size), n - 1)
        yield Batch(x=x[rows], label=labels[rows], mask=None if mask is None else mask[rows]), num_valid
