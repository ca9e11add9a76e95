"""Datasets from numpy arrays on disk, without a TFDS builder: `config.dataset = "arrays:/abs/path/to/dir"`.

The directory holds, for each split S ("train", "test"), one of:
- `S.npz` with the arrays `x` [N, ...], optional `labels` [N] (integers; -1 everywhere when absent) and, for
  variable-length series, optional `mask` [N, T] (0/1, ones first) or `lengths` [N];
- `S_x.npy`, with optional `S_labels.npy` and `S_mask.npy` or `S_lengths.npy` beside it;
- shards listed in a `manifest.json`, concatenated in the listed order (paths relative to the directory):

      {"kind": "series", "splits": {"train": ["train-0.npz", "train-1.npz"], "test": ["test.npz"]}}

The kind is the manifest's "kind" when declared, else inferred from x: [N, D] "vector", [N, T, C] "series",
[N, H, W, C] "image" (a declared kind must have that rank). Integer images are scaled by the config's
transforms like the bundled digits (`aejax.data.transforms`). Every file is checked before any training: a
missing file, a missing `x`, labels or a mask whose shape does not match x, shards or splits whose examples
differ in shape, all raise naming the file.
"""

import json
import os
import zipfile

import numpy as np

from aejax.data.batch import KINDS, Split, mask_from_lengths

PREFIX = "arrays:"
MANIFEST = "manifest.json"
_RANK = {"vector": 2, "series": 3, "image": 4}
_KIND_OF_RANK = {rank: kind for kind, rank in _RANK.items()}


def is_arrays(name: str) -> bool:
    """Whether a dataset name is an array directory ("arrays:<dir>")."""
    return name.startswith(PREFIX)


def _manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        manifest = json.load(f)
    kind = manifest.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{path}: unknown kind {kind!r}. Known: {', '.join(KINDS)}.")
    if not isinstance(manifest.get("splits", {}), dict):
        raise ValueError(f'{path}: "splits" must map split names to lists of shard files.')
    return manifest


def _files(root: str, split: str, manifest: dict) -> list[str]:
    """The shard files of a split ([] when it has none)."""
    if split in manifest.get("splits", {}):
        shards = manifest["splits"][split]
        return [os.path.join(root, s) for s in ([shards] if isinstance(shards, str) else shards)]
    for path in (os.path.join(root, f"{split}.npz"), os.path.join(root, f"{split}_x.npy")):
        if os.path.exists(path):
            return [path]
    return []


def _read(path: str) -> dict[str, np.ndarray]:
    """{"x", and "labels", "mask", "lengths" when present} of one shard (.npz, or S_x.npy and its siblings)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Missing array file {path}.")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "x" not in arrays:
            raise ValueError(f"{path} holds no array 'x' (it holds {sorted(arrays) or 'nothing'}).")
        return arrays
    if not path.endswith("_x.npy"):
        raise ValueError(f"{path}: a shard must be a .npz file or an <S>_x.npy file.")
    arrays = {"x": np.load(path, allow_pickle=False)}
    for key in ("labels", "mask", "lengths"):
        sibling = path[: -len("x.npy")] + f"{key}.npy"
        if os.path.exists(sibling):
            arrays[key] = np.load(sibling, allow_pickle=False)
    return arrays


def _check_shard(path: str, a: dict[str, np.ndarray]) -> None:
    x = a["x"]
    if x.ndim not in _KIND_OF_RANK or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(
            f"{path}: x must be a numeric [N, D], [N, T, C] or [N, H, W, C] array, got {x.dtype} {x.shape}."
        )
    n = len(x)
    if "labels" in a and (a["labels"].shape != (n,) or not np.issubdtype(a["labels"].dtype, np.integer)):
        got = f"{a['labels'].dtype} {a['labels'].shape}"
        raise ValueError(f"{path}: labels must be [N={n}] integers like x {x.shape}, got {got}.")
    if "mask" in a and "lengths" in a:
        raise ValueError(f"{path}: give a mask or lengths, not both.")
    if "lengths" in a:
        try:
            a["mask"] = mask_from_lengths(a.pop("lengths"), x.shape[1])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    if "mask" in a:
        mask = a["mask"]
        if x.ndim != 3 or mask.shape != x.shape[:2]:
            raise ValueError(
                f"{path}: a mask must be [N, T] of series x [N, T, C], got mask {mask.shape}, x {x.shape}."
            )
        valid = mask > 0
        lengths = valid.sum(axis=1)
        if not np.array_equal(valid, np.arange(x.shape[1])[None, :] < lengths[:, None]) or lengths.min() < 1:
            raise ValueError(f"{path}: every mask row must be ones (at least one) then zeros: a valid prefix.")
        a["mask"] = valid.astype(np.float32)


def load(name: str, split: str) -> Split:
    """One split of an array directory (module docstring), whole, in memory.

    Args:
      name: "arrays:<dir>"; an absolute directory is best (a relative one is read from the working directory,
        and `runs.load_run` re-reads it from the config).
      split: a split name of the directory, e.g. "train", "test" (no TFDS slicing).

    Returns:
      Split(x as stored, labels [N] int32, mask [N, T] float32 or None, kind).

    Raises:
      FileNotFoundError: for a missing directory, a split without files (the message lists the expected names
        and the splits present), or a missing shard.
      ValueError: naming the file, for a shard without x, labels or a mask that does not match x, shards or
        splits whose examples differ in shape, or a declared kind that x's rank contradicts.
    """
    root = os.path.abspath(name[len(PREFIX) :] if is_arrays(name) else name)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Array dataset directory {root} does not exist (config.dataset={name!r}).")
    manifest = _manifest(root)
    files = _files(root, split, manifest)
    if not files:
        present = sorted(
            set(manifest.get("splits", {}))
            | {f[: -len(".npz")] for f in os.listdir(root) if f.endswith(".npz")}
            | {f[: -len("_x.npy")] for f in os.listdir(root) if f.endswith("_x.npy")}
        )
        raise FileNotFoundError(
            f"No split {split!r} in {root}: expected {split}.npz, {split}_x.npy or a {MANIFEST} entry "
            f"(splits present: {', '.join(present) or 'none'})."
        )
    shards = []
    for path in files:
        a = _read(path)
        _check_shard(path, a)
        if shards and (a["x"].shape[1:], "mask" in a) != (shards[0][1]["x"].shape[1:], "mask" in shards[0][1]):
            first, b = shards[0]
            raise ValueError(
                f"{path}: examples {a['x'].shape[1:]} (mask: {'mask' in a}) differ from the split's first shard "
                f"{first}: {b['x'].shape[1:]} (mask: {'mask' in b})."
            )
        shards.append((path, a))
    x = np.concatenate([a["x"] for _, a in shards])
    kind = manifest.get("kind") or _KIND_OF_RANK[x.ndim]
    if x.ndim != _RANK[kind]:
        want = {"vector": "[N, D]", "series": "[N, T, C]", "image": "[N, H, W, C]"}[kind]
        raise ValueError(f"{files[0]}: the declared kind {kind!r} needs x {want}, got {x.shape}.")
    labels = [a.get("labels", np.full((len(a["x"]),), -1)) for _, a in shards]
    mask = np.concatenate([a["mask"] for _, a in shards]) if "mask" in shards[0][1] else None
    _check_against_train(root, split, manifest, files[0], x.shape[1:])
    return Split(x=x, labels=np.concatenate(labels).astype(np.int32), mask=mask, kind=kind)


def _example_shape(path: str) -> tuple[int, ...]:
    """The example shape of a shard's x, read from the .npy header only."""
    if path.endswith(".npz"):
        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:  # format 3.0 (utf-8 field names): read the array itself
                return tuple(_read(path)["x"].shape[1:])
            shape = read[version](f)[0]
    else:
        shape = np.load(path, mmap_mode="r").shape
    return tuple(shape[1:])


def _check_against_train(root: str, split: str, manifest: dict, path: str, shape: tuple[int, ...]) -> None:
    # A test split whose examples differ from the training examples would only fail inside the model.
    train = _files(root, "train", manifest) if split != "train" else []
    if train and os.path.exists(train[0]) and (want := _example_shape(train[0])) != tuple(shape):
        raise ValueError(f"{path}: examples {tuple(shape)} differ from the train split's {want} ({train[0]}).")
