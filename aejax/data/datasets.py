"""Whole splits as in-memory arrays: the bundled TFDS builders, or any prepared TFDS catalog set.

Every bundled set fits in memory, so a split is read once into numpy (the loaders in
`aejax.data.pipeline` batch it); nothing is cached here besides what TFDS writes to `data_dir`. The reader
returns what the builder stores: the input under "image", "series", "features" or "tokens" (byte windows of a
text, `pystdlib`), or the dataset's supervised input key; the labels, and a "length" feature when there is one
(as `Split.mask`).
"""

import fcntl
import functools
import importlib
import os
import pkgutil

import numpy as np
import tensorflow_datasets as tfds

from aejax.data import activation_store, arrays, builders
from aejax.data.batch import Split, mask_from_lengths

_CHUNK = 1024


# Record keys of the model input, by kind of data; the kind decides which analyses apply (image rows, filters).
INPUT_KEYS = {"image": "image", "series": "series", "features": "vector", "tokens": "text"}


def _discover_bundled() -> tuple[str, ...]:
    # One module per dataset in `aejax.data.builders`; `_`-prefixed modules are helpers.
    names = (m.name for m in pkgutil.iter_modules(builders.__path__))
    return tuple(sorted(n for n in names if not n.startswith("_")))


BUNDLED: tuple[str, ...] = _discover_bundled()


def prepare(make_builder, **kwargs):
    """`make_builder().download_and_prepare(**kwargs)` under an exclusive file lock beside the builder's data
    folder; returns the prepared builder. Processes that share a data_dir (parallel experiments, a sweep's
    launches) then prepare a dataset once instead of racing to rename the same folder into place (TFDS raises
    FileExistsError in the loser). The builder is made again once the lock is held: one made before reads the
    folder's state from before another process prepared it."""
    path = make_builder().data_dir
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = make_builder()
        builder.download_and_prepare(**kwargs)
    return builder


def _bundled_source(name: str, split: str, data_dir: str | None, manual_dir: str | None):
    # Importing the module registers its builder with TFDS under `name`.
    base, _, config = name.partition("/")  # "natural_patches/12x12": a builder config
    importlib.import_module(f"{builders.__name__}.{base}")
    kwargs = {"config": config} if config else {}
    make = functools.partial(tfds.builder_cls(base), data_dir=data_dir, file_format="array_record", **kwargs)
    builder = prepare(make, download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder.as_data_source(split=split)


def _catalog_source(name: str, base: str, split: str, data_dir: str | None):
    how = (
        f"Bundled datasets (no download): {', '.join(BUNDLED)}. Other names are TFDS catalog "
        "datasets and must be prepared in data_dir first (e.g. with TensorFlow and internet: "
        "`tfds build mnist --file_format=array_record`)."
    )
    if base not in tfds.list_builders(with_community_datasets=False):
        raise KeyError(f"Unknown dataset {name!r}. {how}")
    try:
        # Random access needs array_record; TFDS only defaults to it when data_dir is None.
        return tfds.data_source(
            name, split=split, data_dir=data_dir, builder_kwargs={"file_format": "array_record"}
        )
    except Exception as e:  # TFDS raises many types (ImportError without TF, network errors, ...)
        raise ValueError(f"Could not prepare or read TFDS dataset {name!r}: {e}\n{how}") from e


def _input_key(info) -> str:
    if info.supervised_keys:
        return info.supervised_keys[0]
    for key in INPUT_KEYS:
        if key in info.features:
            return key
    raise ValueError(f"{info.name!r} has no input feature among {sorted(INPUT_KEYS)} and no supervised_keys.")


def _read_all(source) -> Split:
    info = source.dataset_info
    input_key = _input_key(info)
    label_key = (
        info.supervised_keys[1] if info.supervised_keys else ("label" if "label" in info.features else None)
    )
    has_length = "length" in info.features
    n = len(source)
    if n == 0:
        raise ValueError(f"Split {source.split!r} of {info.name!r} is empty.")
    xs, labels, lengths = [], [], []
    # __getitems__ reads a chunk of records at once, much faster than source[i] one by one.
    for start in range(0, n, _CHUNK):
        records = source.__getitems__(list(range(start, min(start + _CHUNK, n))))
        xs.append(np.stack([r[input_key] for r in records]))
        if label_key is not None:
            labels.append(np.asarray([r[label_key] for r in records]))
        if has_length:
            lengths.append(np.asarray([r["length"] for r in records]))
    y = np.concatenate(labels).astype(np.int32) if labels else np.full((n,), -1, np.int32)
    return Split(
        x=np.concatenate(xs),
        labels=y,
        mask=mask_from_lengths(np.concatenate(lengths), xs[0].shape[1]) if has_length else None,
        kind=INPUT_KEYS.get(input_key, "vector"),
    )


def load_split(name: str, split: str, *, data_dir: str | None = None, manual_dir: str | None = None) -> Split:
    """Loads a whole split into memory, preparing a bundled dataset on first use.

    Bundled names (`BUNDLED`: every module of `aejax/data/builders`) are built with their TFDS builder
    into `data_dir` as array_record (once; later calls only read). Any other name goes to the TFDS
    catalog through `tfds.data_source` (needs the dataset prepared in `data_dir`, or TensorFlow and
    internet to prepare it). "arrays:<dir>" reads .npy / .npz arrays without a builder (`aejax.data.arrays`);
    "activations:<dir>" reads a network's stored activations (`aejax.data.activation_store`).

    Args:
      name: dataset name, e.g. "mnist5k", "natural_patches/12x12" (bundled, with a builder config), a
        TFDS catalog name such as "mnist", "arrays:/abs/dir" (numpy arrays) or "activations:/abs/dir" (an
        activation store: x [N, d] float32, labels -1, kind "vector").
      split: TFDS split, e.g. "train", "test", "train[:10%]".
      data_dir: TFDS data directory; None -> TFDS default (`TFDS_DATA_DIR` or
        `~/tensorflow_datasets`).
      manual_dir: directory of manually downloaded files (`mnist_idx` reads its IDX files there);
        None -> `<data_dir>/downloads/manual/`.

    Returns:
      `Split(x, labels [N] int32, mask, kind)` with x as the builder stores it (e.g. uint8 pixels 0..255);
      the config's transforms (`aejax.data.transforms`) scale or binarise it.

    Raises:
      KeyError: if `name` is neither bundled nor in the TFDS catalog (the message lists `BUNDLED`).
      ValueError: if a catalog dataset cannot be prepared or read, or the split is empty.
      FileNotFoundError: if `mnist_idx`'s IDX files are missing (the message says where to put
        them), or an array file is (see `arrays.load`, which also raises ValueError naming a bad file).
    """
    if arrays.is_arrays(name):
        return arrays.load(name, split)
    if activation_store.is_activations(name):
        return activation_store.load(name, split)
    if name.split("/")[0] in BUNDLED:
        return _read_all(_bundled_source(name, split, data_dir, manual_dir))
    base = name.split(":")[0].split("/")[0]  # "mnist:3.0.1", "mnist/config" -> "mnist"
    return _read_all(_catalog_source(name, base, split, data_dir))
