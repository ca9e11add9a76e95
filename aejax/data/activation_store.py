"""Activations as data: a directory of `.npy` shards and a JSON manifest, read memory-mapped.

This layout is the interchange format: `python -m aejax.activations` writes it from a Flax model, and anything
that writes it (PyTorch with numpy alone) is read the same way, so `config.dataset = "activations:/abs/dir"`
trains an SAE on it. A store directory holds `manifest.json`:

    {
      "format": "aejax.activations.v1",        # required, exactly this string
      "d": 128,                                # vector width (int >= 1)
      "dtype": "float32",                      # on-disk dtype of every vectors file: "float32" or "float16"
      "splits": {                              # split name -> its shards, concatenated in the listed order
        "train": {
          "shards": [
            {"rows": 65536,                              # rows of this shard (int >= 1)
             "vectors": "train-00000.vectors.npy",        # [rows, d] of `dtype`; path relative to the directory
             "example": "train-00000.example.npy",        # optional [rows] integer: index of the source example
             "position": "train-00000.position.npy"}      # optional [rows] integer: token position, -1 if none
          ],
          "complete": true                     # optional (default true); false while an extraction is running
        },
        "test": {"shards": [...]}
      },
      "source": {"framework": "pytorch", "model": "gpt2", "layer": "blocks.6.hook_resid_post"}   # free dict
    }

Every file is a plain `.npy` (`np.save`, C order, no pickles). Within a split either every shard has an
`example` (and then a `position`) file or none has. Vectors are always read as float32; `example` as int64 and
`position` as int32. A user writes one from PyTorch with numpy alone:

    import json, os, numpy as np
    os.makedirs(out, exist_ok=True)
    shards = []
    for i, acts in enumerate(batches):                        # acts: torch [rows, d], e.g. a hook's output
        a = acts.detach().float().cpu().numpy()
        np.save(f"{out}/train-{i:05d}.vectors.npy", a)
        shards.append({"rows": len(a), "vectors": f"train-{i:05d}.vectors.npy"})
    manifest = {"format": "aejax.activations.v1", "d": a.shape[1], "dtype": "float32",
                "splits": {"train": {"shards": shards}}, "source": {"framework": "pytorch"}}
    json.dump(manifest, open(f"{out}/manifest.json", "w"))

`ActivationStore` opens a store (every shard memory-mapped with `np.load(mmap_mode="r")` and checked against the
manifest, reading headers only), so a store larger than memory is read by row range or index. `ActivationWriter`
appends batches and writes whole shards atomically (temporary file, then rename; the manifest is rewritten the
same way after each shard), so a killed writer loses at most the shard it was filling and a new writer on the
directory continues after the last listed shard.
"""

import json
import os
import re
from collections.abc import Sequence

import numpy as np

from aejax.data.batch import Split

PREFIX = "activations:"
MANIFEST = "manifest.json"
FORMAT = "aejax.activations.v1"
DTYPES = ("float32", "float16")
_FIELDS = {"vectors": None, "example": np.int64, "position": np.int32}  # file key -> dtype read as
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def is_activations(name: str) -> bool:
    """Whether a dataset name is an activation store ("activations:<dir>")."""
    return name.startswith(PREFIX)


def _root(path: str) -> str:
    return os.path.abspath(path[len(PREFIX) :] if is_activations(path) else path)


def _how_to_make(root: str) -> str:
    return (
        f"An activation store is a directory with {MANIFEST} and .npy shards (layout: aejax/data/"
        f"activation_store.py). Make one with `python -m aejax.activations --workdir=RUN --layer=NAME "
        f"--out={root}`, or write it with numpy as that docstring shows."
    )


def read_manifest(path: str) -> dict:
    """The manifest of the store at `path` (a directory or "activations:<dir>"), checked for its fields.

    Raises:
      FileNotFoundError: if there is no manifest.json (the message says what should be there and how to make it).
      ValueError: naming the path, for another format string, a bad `d`, `dtype`, `splits` or shard entry.
    """
    root = _root(path)
    file = os.path.join(root, MANIFEST)
    if not os.path.exists(file):
        raise FileNotFoundError(f"No {MANIFEST} in {root}. {_how_to_make(root)}")
    with open(file) as f:
        m = json.load(f)
    if m.get("format") != FORMAT:
        raise ValueError(f"{file}: format is {m.get('format')!r}, expected {FORMAT!r}. {_how_to_make(root)}")
    if not isinstance(m.get("d"), int) or m["d"] < 1:
        raise ValueError(f"{file}: d must be a positive integer (the vector width), got {m.get('d')!r}.")
    if m.get("dtype") not in DTYPES:
        raise ValueError(f"{file}: dtype must be one of {', '.join(DTYPES)}, got {m.get('dtype')!r}.")
    if not isinstance(m.get("splits"), dict):
        raise ValueError(f'{file}: "splits" must map split names to {{"shards": [...]}}.')
    for name, split in m["splits"].items():
        shards = split.get("shards") if isinstance(split, dict) else None
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "vectors" in s for s in shards):
            raise ValueError(f'{file}: split {name!r} needs "shards": a list of {{"rows", "vectors", ...}}.')
        for s in shards:
            if not isinstance(s.get("rows"), int) or s["rows"] < 1:
                raise ValueError(
                    f"{file}: split {name!r}: shard {s['vectors']} needs rows >= 1, got {s.get('rows')!r}."
                )
        if len({("example" in s, "position" in s) for s in shards}) > 1:
            raise ValueError(f"{file}: split {name!r}: either every shard has example/position files or none.")
    m.setdefault("source", {})
    return m


def _open_shard(root: str, split: str, shard: dict, d: int, dtype: str) -> dict[str, np.ndarray]:
    out = {}
    for key, read_as in _FIELDS.items():
        if key not in shard:
            continue
        file = os.path.join(root, shard[key])
        if not os.path.exists(file):
            raise FileNotFoundError(f"{file}: missing shard of split {split!r} listed in {root}/{MANIFEST}.")
        try:
            a = np.load(file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{file}: not a readable .npy file (truncated or damaged?): {e}") from e
        want = (shard["rows"], d) if key == "vectors" else (shard["rows"],)
        if a.shape != want:
            raise ValueError(
                f"{file}: holds {key} of shape {a.shape}, the manifest says {want} (rows, width); the shard is "
                "truncated or the manifest is wrong."
            )
        ok = a.dtype == np.dtype(dtype) if read_as is None else np.issubdtype(a.dtype, np.integer)
        if not ok:
            raise ValueError(
                f"{file}: {key} of dtype {a.dtype}, expected {dtype if read_as is None else 'integer'}."
            )
        out[key] = a
    return out


class ActivationStore:
    """A store opened for reading: every shard memory-mapped and checked against the manifest.

    Args:
      path: the store directory, or "activations:<dir>".

    Attributes:
      path: absolute directory. manifest: the parsed manifest. d: vector width. dtype: on-disk dtype.
      source: the manifest's free `source` dict. splits: the split names, sorted.

    Raises:
      FileNotFoundError: for a missing manifest or a missing shard file (naming it).
      ValueError: naming the file, for a bad manifest, or a shard whose row count, width or dtype differs from
        the manifest (a truncated shard).
    """

    def __init__(self, path: str):
        self.path = _root(path)
        self.manifest = read_manifest(self.path)
        self.d, self.dtype = self.manifest["d"], self.manifest["dtype"]
        self.source = self.manifest["source"]
        self.splits = tuple(sorted(self.manifest["splits"]))
        self._shards = {
            name: [_open_shard(self.path, name, s, self.d, self.dtype) for s in split["shards"]]
            for name, split in self.manifest["splits"].items()
        }
        self._offsets = {
            name: np.cumsum([0] + [s["rows"] for s in split["shards"]])
            for name, split in self.manifest["splits"].items()
        }

    def _split(self, split: str) -> list[dict[str, np.ndarray]]:
        if split not in self._shards:
            raise KeyError(
                f"No split {split!r} in the activation store {self.path}. Splits: {', '.join(self.splits)}."
            )
        return self._shards[split]

    def num_rows(self, split: str) -> int:
        """Rows of a split (KeyError listing the splits for an unknown one)."""
        self._split(split)
        return int(self._offsets[split][-1])

    def is_complete(self, split: str) -> bool:
        """False while a writer is still extracting the split (its `complete` flag)."""
        self._split(split)
        return bool(self.manifest["splits"][split].get("complete", True))

    def read(
        self, split: str, start: int = 0, stop: int | None = None, *, key: str = "vectors"
    ) -> np.ndarray | None:
        """Rows [start, stop) of a split, in memory: vectors [rows, d] float32, or `key` "example" [rows] int64 /
        "position" [rows] int32 (None when the store has none)."""
        shards, offsets = self._split(split), self._offsets[split]
        stop = int(offsets[-1]) if stop is None else min(stop, int(offsets[-1]))
        if shards and key not in shards[0]:
            return None
        parts = [
            s[key][max(start - lo, 0) : stop - lo]
            for s, lo, hi in zip(shards, offsets[:-1], offsets[1:], strict=True)
            if lo < stop and hi > start
        ]
        dtype = _FIELDS[key] or np.float32
        empty = np.zeros((0, self.d) if key == "vectors" else (0,), dtype)
        return np.concatenate([np.asarray(p, dtype) for p in parts]) if parts else empty

    def take(self, split: str, index: Sequence[int] | np.ndarray) -> np.ndarray:
        """Vectors [len(index), d] float32 at the given row indices (any order), read from the shards' memmaps.

        Raises:
          IndexError: for an index outside [0, num_rows).
        """
        shards, offsets = self._split(split), self._offsets[split]
        index = np.asarray(index, np.int64)
        if index.size and (index.min() < 0 or index.max() >= offsets[-1]):
            raise IndexError(f"Row indices must be in [0, {offsets[-1]}) for split {split!r} of {self.path}.")
        which = np.searchsorted(offsets, index, side="right") - 1
        out = np.empty((len(index), self.d), np.float32)
        for i in np.unique(which):
            rows = which == i
            out[rows] = shards[i]["vectors"][index[rows] - offsets[i]]
        return out

    def vector_shards(self, split: str) -> list[np.memmap]:
        """The split's vectors shards as opened and checked: [rows_i, d] memmaps (`.filename`, `.offset` say
        where the data lie), in order; `aejax.data.streaming.StoreView` reads through them."""
        return [s["vectors"] for s in self._split(split)]

    def examples(self, split: str) -> np.ndarray | None:
        """[rows] int64 source example of every row, or None."""
        return self.read(split, key="example")

    def positions(self, split: str) -> np.ndarray | None:
        """[rows] int32 token position of every row (-1 for non-sequence data), or None."""
        return self.read(split, key="position")


def check_width(store: ActivationStore, d: int) -> None:
    """Raises ValueError, naming the store's path and both widths, unless its vectors are `d` wide."""
    if store.d != d:
        raise ValueError(f"The activation store {store.path} holds vectors of width d = {store.d}, expected {d}.")


def load(name: str, split: str) -> Split:
    """A whole split in memory as a dataset: Split(x [N, d] float32, labels [N] -1, mask None, kind "vector").

    Raises:
      As `ActivationStore`; KeyError for an unknown split; ValueError if the split is still being extracted.
    """
    store = ActivationStore(name)
    if not store.is_complete(split):
        raise ValueError(
            f"Split {split!r} of the activation store {store.path} is incomplete (an extraction was interrupted): "
            "re-run the same `python -m aejax.activations` command to finish it."
        )
    x = store.read(split)
    return Split(x=x, labels=np.full((len(x),), -1, np.int32), mask=None, kind="vector")


def _save_atomic(path: str, write) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a reader or a resumed writer sees the old file or the whole new one


class ActivationWriter:
    """Appends vectors to a store, one whole shard at a time; resumes a store it (or a killed run) left.

    Args:
      path: the store directory (created if missing).
      d: vector width. dtype: on-disk dtype, one of DTYPES (appended vectors are cast to it).
      source: the free `source` dict of the manifest.
      shard_rows: rows per shard (the last shard of a split may hold fewer).
      identity: the `source` keys that must equal an existing manifest's to resume it (None: all of them).

    Raises:
      ValueError: for a bad d, dtype or shard_rows, or, when `path` already holds a manifest, one whose d, dtype
        or identity fields differ (naming each field, the stored and the new value).
    """

    def __init__(self, path: str, *, d: int, dtype: str = "float32", source: dict | None = None,
                 shard_rows: int = 65536, identity: Sequence[str] | None = None):  # fmt: skip
        if d < 1 or shard_rows < 1 or dtype not in DTYPES:
            raise ValueError(
                f"Need d >= 1, shard_rows >= 1 and dtype in {DTYPES}, got {d}, {shard_rows}, {dtype!r}."
            )
        self.path, self.shard_rows = _root(path), shard_rows
        source = dict(source or {})
        os.makedirs(self.path, exist_ok=True)
        if os.path.exists(os.path.join(self.path, MANIFEST)):
            m = read_manifest(self.path)
            keys = sorted(set(m["source"]) | set(source)) if identity is None else identity
            old = {"d": m["d"], "dtype": m["dtype"], **{k: m["source"].get(k) for k in keys}}
            new = {"d": d, "dtype": dtype, **{k: source.get(k) for k in keys}}
            if diff := [f"{k}: {old[k]!r} (stored) vs {new[k]!r}" for k in old if old[k] != new[k]]:
                raise ValueError(
                    f"{self.path} holds another activation store ({'; '.join(diff)}). Use another directory, or "
                    "delete this one to start afresh."
                )
            m["source"] = source
        else:
            m = {"format": FORMAT, "d": d, "dtype": dtype, "splits": {}, "source": source}
        self.manifest = m
        self._buffers: dict[str, list[dict[str, np.ndarray]]] = {}

    def rows_written(self, split: str) -> int:
        """Rows of a split on disk (in whole shards)."""
        return sum(s["rows"] for s in self.manifest["splits"].get(split, {}).get("shards", []))

    def is_complete(self, split: str) -> bool:
        """Whether `finish(split)` has run (now or in an earlier writer)."""
        splits = self.manifest["splits"]
        return split in splits and bool(splits[split].get("complete", True))

    def append(self, split: str, vectors: np.ndarray, example: np.ndarray | None = None,
               position: np.ndarray | None = None) -> None:  # fmt: skip
        """Buffers rows: vectors [B, d], optional example [B] and position [B] (both or neither, and the same
        choice for a whole split); writes a shard whenever `shard_rows` rows are buffered.

        Raises:
          ValueError: for a bad split name, shapes that do not match, a changed example/position choice, or a
            split already finished.
        """
        if not _SPLIT_NAME.match(split):
            raise ValueError(f"Split names are letters, digits, '_', '.', '-'; got {split!r}.")
        if self.is_complete(split):
            raise ValueError(f"Split {split!r} of {self.path} is already complete.")
        vectors = np.asarray(vectors)
        n = len(vectors)
        if vectors.shape != (n, self.manifest["d"]) or (example is None) != (position is None):
            raise ValueError(
                f"append needs vectors [B, {self.manifest['d']}] and example, position [B] or neither; got "
                f"{vectors.shape}, {None if example is None else np.shape(example)}, "
                f"{None if position is None else np.shape(position)}."
            )
        rows = {"vectors": vectors.astype(self.manifest["dtype"])}
        if example is not None:
            rows["example"], rows["position"] = np.asarray(example, np.int64), np.asarray(position, np.int32)
            if rows["example"].shape != (n,) or rows["position"].shape != (n,):
                raise ValueError(
                    f"example and position must be [{n}], got {np.shape(example)}, {np.shape(position)}."
                )
        shards = self.manifest["splits"].get(split, {}).get("shards", [])
        first = shards[0] if shards else (self._buffers.get(split) or [rows])[0]
        if ("example" in first) != ("example" in rows):
            raise ValueError(f"Split {split!r}: every batch must carry example/position, or none.")
        self._buffers.setdefault(split, []).append(rows)
        while sum(len(b["vectors"]) for b in self._buffers[split]) >= self.shard_rows:
            self._flush(split, self.shard_rows)

    def finish(self, split: str) -> None:
        """Writes the buffered rows as the last shard and marks the split complete."""
        if self._buffers.get(split):
            self._flush(split, sum(len(b["vectors"]) for b in self._buffers[split]))
        self.manifest["splits"].setdefault(split, {"shards": []})["complete"] = True
        self._write_manifest()

    def _flush(self, split: str, rows: int) -> None:
        buf = {k: np.concatenate([b[k] for b in self._buffers[split]]) for k in self._buffers[split][0]}
        self._buffers[split] = [{k: a[rows:] for k, a in buf.items()}] if len(buf["vectors"]) > rows else []
        entry = self.manifest["splits"].setdefault(split, {"shards": [], "complete": False})
        entry["complete"] = False
        shard = {"rows": rows}
        for key, a in buf.items():
            shard[key] = f"{split}-{len(entry['shards']):05d}.{key}.npy"
            _save_atomic(os.path.join(self.path, shard[key]), lambda f, a=a: np.save(f, a[:rows]))
        entry["shards"].append(shard)
        self._write_manifest()

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1).encode()
        _save_atomic(os.path.join(self.path, MANIFEST), lambda f: f.write(text))
