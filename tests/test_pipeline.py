"""Loaders: each example once per epoch, exact resume, host slicing, padded evaluation batches.

Example i carries its own index (in every pixel and as its label), so order and coverage are read
straight off a batch; the expected order is the documented closed form
`np.random.default_rng([seed, epoch]).permutation(N)`.
"""

import itertools

import numpy as np
import pytest

from aejax.data import GrainLoader, InMemoryLoader, eval_batches, load_split, transforms

N = 50


def indexed_arrays(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 2, 2, 1))
    return np.ascontiguousarray(images), np.arange(n, dtype=np.int32)


def indexed_records(n: int = N) -> list[dict[str, np.ndarray]]:
    return [{"image": np.full((2, 2, 1), i, np.uint8), "label": np.int64(i)} for i in range(n)]


def ids(batch) -> np.ndarray:
    return np.asarray(batch.label)


def make_loader(kind: str, **kwargs):
    if kind == "memory":
        return InMemoryLoader(*indexed_arrays(), **kwargs)
    return GrainLoader(indexed_records(), **kwargs)


def test_in_memory_order_is_the_documented_permutation():
    loader = make_loader("memory", global_batch_size=8, seed=3)
    assert loader.steps_per_epoch == 6  # 50 // 8, remainder dropped
    for epoch in (0, 1):
        perm = np.random.default_rng([3, epoch]).permutation(N)
        for i in range(6):
            batch = loader.batch(epoch * 6 + i)
            np.testing.assert_array_equal(ids(batch), perm[i * 8 : (i + 1) * 8])
            np.testing.assert_array_equal(batch.x[:, 0, 0, 0], ids(batch).astype(np.float32))


@pytest.mark.parametrize("kind", ["memory", "grain"])
def test_each_example_once_per_epoch_and_new_order_each_epoch(kind):
    loader = make_loader(kind, global_batch_size=10, seed=0)  # 50 = 5 * 10: all examples
    epochs = [np.concatenate([ids(loader.batch(e * 5 + i)) for i in range(5)]) for e in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(N))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


@pytest.mark.parametrize("kind", ["memory", "grain"])
def test_drop_remainder_never_repeats_within_epoch(kind):
    loader = make_loader(kind, global_batch_size=8, seed=1)
    seen = np.concatenate([ids(loader.batch(s)) for s in range(loader.steps_per_epoch)])
    assert len(seen) == 48 and len(np.unique(seen)) == 48


@pytest.mark.parametrize("kind", ["memory", "grain"])
def test_resume_gives_the_uninterrupted_batches(kind):
    uninterrupted = [ids(b) for b in itertools.islice(make_loader(kind, global_batch_size=8, seed=5), 15)]
    for start in (0, 4, 6, 13):
        resumed = make_loader(kind, global_batch_size=8, seed=5)
        assert resumed.state(start) == {"epoch": start // 6, "index_in_epoch": start % 6, "seed": 5}
        np.testing.assert_array_equal(ids(resumed.batch(start)), uninterrupted[start])
        tail = itertools.islice(resumed.iterate(start), 15 - start)
        for got, want in zip(tail, uninterrupted[start:], strict=True):
            np.testing.assert_array_equal(ids(got), want)
    other_seed = make_loader(kind, global_batch_size=8, seed=6)
    assert not np.array_equal(ids(other_seed.batch(0)), uninterrupted[0])


@pytest.mark.parametrize("kind", ["memory", "grain"])
def test_host_slices_concatenate_to_the_global_batch(kind):
    single = make_loader(kind, global_batch_size=8, seed=2)
    hosts = [make_loader(kind, global_batch_size=8, seed=2, process_index=p, process_count=2) for p in range(2)]
    assert hosts[0].local_batch_size == 4 and hosts[0].steps_per_epoch == single.steps_per_epoch
    for step in (0, 5, 6, 11):
        parts = [host.batch(step) for host in hosts]
        np.testing.assert_array_equal(np.concatenate([ids(p) for p in parts]), ids(single.batch(step)))
        np.testing.assert_array_equal(np.concatenate([p.x for p in parts]), single.batch(step).x)


def test_grain_scales_uint8_and_casts_labels():
    batch = make_loader("grain", global_batch_size=4, seed=0).batch(0)
    assert batch.x.dtype == np.float32 and batch.x.shape == (4, 2, 2, 1)
    assert batch.label.dtype == np.int32
    np.testing.assert_allclose(batch.x[:, 1, 1, 0] * 255.0, batch.label, rtol=1e-6)


@pytest.mark.parametrize("kind", ["memory", "grain"])
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"global_batch_size": 7, "process_count": 2}, "multiple of process_count"),
        ({"global_batch_size": 0}, "positive multiple"),
        ({"global_batch_size": 51}, "exceeds"),
        ({"global_batch_size": 4, "process_index": 2, "process_count": 2}, "process_index"),
    ],
)
def test_bad_batch_sizes_raise(kind, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_loader(kind, seed=0, **kwargs)


def test_negative_step_and_length_mismatch_raise():
    with pytest.raises(ValueError, match="step"):
        make_loader("memory", global_batch_size=4, seed=0).batch(-1)
    images, labels = indexed_arrays()
    with pytest.raises(ValueError, match="labels"):
        InMemoryLoader(images, labels[:-1], global_batch_size=4, seed=0)


def test_eval_batches_pad_to_a_multiple_of_devices():
    images, labels = indexed_arrays(10)
    out = list(eval_batches(images, labels, batch_size=3, multiple_of=4))  # 3 -> 4 rows
    assert [n for _, n in out] == [4, 4, 2]
    assert all(b.x.shape == (4, 2, 2, 1) and b.label.shape == (4,) for b, _ in out)
    valid = np.concatenate([ids(b)[:n] for b, n in out])
    np.testing.assert_array_equal(valid, np.arange(10))  # in order, each once
    np.testing.assert_array_equal(ids(out[-1][0]), [8, 9, 9, 9])  # padded with the last row
    np.testing.assert_array_equal(out[-1][0].x[:, 0, 0, 0], [8.0, 9.0, 9.0, 9.0])
    exact = list(eval_batches(images, labels, batch_size=5, multiple_of=1))
    assert [n for _, n in exact] == [5, 5]
    with pytest.raises(ValueError):
        next(eval_batches(images, labels, batch_size=0, multiple_of=1))


def test_grain_over_a_tfds_data_source(tmp_path):
    import tensorflow_datasets as tfds

    import aejax.data.builders.digits  # noqa: F401  (registers the builder)

    split = load_split("digits", "test", data_dir=str(tmp_path))  # prepares digits
    source = tfds.data_source("digits", split="test", data_dir=str(tmp_path))
    loader = GrainLoader(source, global_batch_size=40, seed=0)
    assert loader.steps_per_epoch == 9  # 360 // 40
    batch = loader.batch(3)
    assert batch.x.shape == (40, 8, 8, 1) and batch.x.dtype == np.float32
    # Every row is a real example of the split (pixels and label), found by exact match.
    scaled = transforms.apply(split, transforms.Transforms(), train=False)  # the grain loader scales uint8 too
    known = {(x.tobytes(), int(y)) for x, y in zip(scaled.x, scaled.labels, strict=True)}
    assert all((x.tobytes(), int(y)) in known for x, y in zip(batch.x, batch.label, strict=True))
