"""Extract a trained network's activations at a named layer into an activation store
(`aejax.data.activation_store`), so an SAE config reads them with `config.dataset = "activations:<dir>"`.

    python -m aejax.activations --workdir=runs/mnist_ae --layer=encoder_1 --out=/abs/acts [--splits=train,test]
        [--max_rows=N] [--batch_size=256] [--dtype=float32] [--shard_rows=65536]
    python -m aejax.activations --workdir=runs/mnist_ae         # no --layer: lists the layers and their shapes

The run is loaded from its workdir as `aejax.runs.load_run` does (its config.json, the newest readable checkpoint,
its data with the config's transforms and `train_classes`). The model is applied in evaluation mode
(`train=False`) with Flax's `capture_intermediates` filtered to the one submodule whose path (names joined by "/",
e.g. "encoder_1", "block_1", "encoder/Dense_0") is `layer`; the value kept is what that submodule's `__call__`
returns:
- [B, d] (a vector model's layer): one row per example, position -1;
- [B, T, d] (a sequence model's layer, e.g. a transformer block's residual stream): one row per valid token,
  example-major then position, i.e. rows [B*T, d] with their (example, position); where the split has a mask
  (`Split.mask`, 1 on the valid steps) only the valid positions are kept.
`example` is the row's index in the split as the run loads it. `max_rows` caps each split's rows, taking whole
examples in order (deterministic). The capture is jitted once per batch shape (the last batch is padded).

Resumable: the store's `source` records the run, its checkpoint step, the layer, the dataset and max_rows; a
re-run with the same arguments continues after the last whole shard on disk (at most one shard's work is lost) and
returns at once on a complete store; a re-run with other arguments is refused, naming what differs.
"""

import functools
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from aejax.data import activation_store
from aejax.data.batch import Split

# The `source` fields that decide the rows; a store whose fields differ is another store (batch size, shard size
# and the aejax commit do not change the rows).
IDENTITY = ("run", "step", "layer", "dataset", "train_classes", "max_rows")
_PROBE_BATCH = 3  # eval_shape batch size: an output whose first axis is not this is not per-example


def _call_kwargs(mask) -> dict:
    # Models trained on masked series take the mask as the sequence objective passes it.
    return {} if mask is None else {"mask": mask}


def layer_shapes(model: nn.Module, variables, x: np.ndarray, mask: np.ndarray | None = None) -> dict[str, tuple]:
    """{path: per-example output shape} of the capturable submodules, from an abstract trace (no compute).

    Capturable: a submodule (not the root) whose `__call__` runs once per forward pass and returns one array of
    shape [B, d] or [B, T, d]. Paths join the Flax module names with "/", e.g. "encoder_0", "block_1".

    Args:
      model: the Flax module. variables: its variables ({"params": ...}, other collections).
      x: [N, ...] inputs (only the shape and dtype of one row are used). mask: optional [N, T] validity.
    """
    probe = jax.ShapeDtypeStruct((_PROBE_BATCH, *np.shape(x)[1:]), np.asarray(x[:1]).dtype)
    probe_mask = None if mask is None else jax.ShapeDtypeStruct((_PROBE_BATCH, *np.shape(mask)[1:]), mask.dtype)

    def trace(v, xb, mb):
        return model.apply(v, xb, capture_intermediates=True, mutable=["intermediates"], **_call_kwargs(mb))[1]

    tree = jax.eval_shape(trace, variables, probe, probe_mask)["intermediates"]
    out = {}

    def walk(node, path):
        for name, child in node.items():
            if name == "__call__":
                if path and len(child) == 1 and isinstance(child[0], jax.ShapeDtypeStruct):
                    shape = child[0].shape
                    if len(shape) in (2, 3) and shape[0] == _PROBE_BATCH:
                        out["/".join(path)] = tuple(shape[1:])
            elif isinstance(child, dict):
                walk(child, (*path, name))

    walk(tree, ())
    return out


def layer_names(model: nn.Module, variables, x: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
    """The capturable submodule paths of `model` on inputs like x, sorted (see `layer_shapes`)."""
    return sorted(layer_shapes(model, variables, x, mask))


def _check_layer(shapes: dict[str, tuple], layer: str) -> tuple:
    if layer not in shapes:
        known = ", ".join(f"{k} {list(v)}" for k, v in sorted(shapes.items()))
        raise KeyError(
            f"Unknown layer {layer!r}. Capturable layers (path [per-example shape]): {known or 'none'}."
        )
    return shapes[layer]


@functools.lru_cache(maxsize=16)  # Flax modules hash by their fields: every split reuses one compiled capture
def make_capture(model: nn.Module, layer: str):
    """A jitted (variables, x [B, ...], mask [B, T] or None) -> the output of submodule `layer`, [B, d] or
    [B, T, d], through `capture_intermediates` filtered to that submodule's `__call__`."""
    target = tuple(layer.split("/"))

    def keep(module: nn.Module, method: str) -> bool:
        return method == "__call__" and module.path == target

    def capture(variables, x, mask):
        _, state = model.apply(variables, x, capture_intermediates=keep, mutable=["intermediates"],
                               **_call_kwargs(mask))  # fmt: skip
        node = state["intermediates"]
        for name in target:
            node = node[name]
        return node["__call__"][0]

    return jax.jit(capture)


def _rows_per_example(split: Split, shape: tuple) -> np.ndarray:
    """[N] rows each example contributes: 1 for [d] outputs, T (or its valid length) for [T, d]."""
    n = len(split.x)
    if len(shape) == 1:
        return np.ones(n, np.int64)
    if split.mask is None:
        return np.full(n, shape[0], np.int64)
    if split.mask.shape[1] != shape[0]:
        raise ValueError(
            f"The layer's output has T = {shape[0]} steps but the split's mask has {split.mask.shape[1]}."
        )
    return (split.mask > 0).sum(axis=1).astype(np.int64)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return a if len(a) == size else np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)])


def extract_split(
    model: nn.Module,
    variables,
    layer: str,
    data: Split,
    writer: activation_store.ActivationWriter,
    split: str,
    *,
    max_rows: int | None = None,
    batch_size: int = 256,
    desc: str = "",
) -> int:
    """Writes the activations of `layer` on `data` as `split` of the writer's store, resuming after its last whole
    shard; a split the store already completed is left as it is.

    Args:
      model, variables: the Flax model and its variables. layer: a path of `layer_names`.
      data: the split (x [N, ...], mask [N, T] or None). writer: the store. split: its split name.
      max_rows: cap on the rows, in whole examples (None: all). batch_size: examples per jitted call.

    Returns:
      The split's rows in the store.

    Raises:
      KeyError: for an unknown layer (listing the capturable ones), before any compute.
      ValueError: for batch_size or max_rows < 1, max_rows smaller than one example's rows, a layer width that
        differs from the store's, or a store that holds more rows than this split gives.
    """
    if batch_size < 1 or (max_rows is not None and max_rows < 1):
        raise ValueError(f"batch_size and max_rows must be >= 1, got {batch_size}, {max_rows}.")
    shape = _check_layer(layer_shapes(model, variables, data.x, data.mask), layer)
    if shape[-1] != writer.manifest["d"]:
        raise ValueError(
            f"Layer {layer!r} is {shape[-1]} wide; the store {writer.path} holds d = {writer.manifest['d']}."
        )
    ends = np.cumsum(_rows_per_example(data, shape))  # [N] rows up to and including example n
    n = len(ends) if max_rows is None else int(np.searchsorted(ends, max_rows, side="right"))
    if n == 0:
        raise ValueError(f"max_rows={max_rows} is less than the first example's {ends[0]} rows.")
    total, done = int(ends[n - 1]), writer.rows_written(split)
    if done > total or (writer.is_complete(split) and done != total):
        raise ValueError(f"{writer.path}: split {split!r} holds {done} rows, this extraction gives {total}.")
    if writer.is_complete(split):
        return total
    first = int(np.searchsorted(ends, done, side="right"))  # the example holding row `done`
    skip = done - (int(ends[first - 1]) if first else 0)  # its rows already on disk
    capture = make_capture(model, layer)
    with tqdm(total=total, initial=done, unit="rows", desc=desc or f"{layer} {split}") as bar:
        for start in range(first, n, batch_size):
            stop = min(start + batch_size, n)
            mask = None if data.mask is None else _pad(data.mask[start:stop], batch_size)
            out = np.asarray(capture(variables, _pad(data.x[start:stop], batch_size), mask))[: stop - start]
            out = out.astype(np.float32)
            example = np.arange(start, stop, dtype=np.int64)
            if out.ndim == 2:
                vectors, position = out, np.full(stop - start, -1, np.int32)
            else:
                t = out.shape[1]
                valid = np.ones(out.shape[:2], bool) if data.mask is None else data.mask[start:stop] > 0
                vectors = out[valid]  # [rows, d], example-major
                example = np.repeat(example, valid.sum(axis=1))
                position = np.broadcast_to(np.arange(t, dtype=np.int32), valid.shape)[valid]
            if start == first and skip:
                vectors, example, position = vectors[skip:], example[skip:], position[skip:]
            writer.append(split, vectors, example, position)
            bar.update(len(vectors))
    writer.finish(split)
    return total


def _commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _row_caps(max_rows: int | Mapping[str, int | None] | None) -> dict[str, int | None]:
    # One cap for both splits, or one per split: a test split is usually capped lower than train.
    if isinstance(max_rows, Mapping):
        if unknown := set(max_rows) - {"train", "test"}:
            raise KeyError(f"max_rows names unknown split(s) {sorted(unknown)}; a run has the splits train, test.")
        return {s: max_rows.get(s) for s in ("train", "test")}
    return {s: max_rows for s in ("train", "test")}


def _identity(workdir: str, config, step: int, layer: str, max_rows: dict[str, int | None]) -> dict[str, Any]:
    return dict(run=workdir, step=step, layer=layer, dataset=config.dataset,
                train_classes=config.get("train_classes", ""), max_rows=max_rows)  # fmt: skip


def _existing(out_dir: str, identity: dict, splits: Sequence[str], dtype: str) -> dict | None:
    """The manifest of a store in out_dir made with these arguments if it is complete for `splits`, else None;
    checked from config.json and the checkpoint's step alone, before the run is loaded.

    Raises:
      ValueError: if out_dir holds a store made with other arguments, naming each differing field.
    """
    try:
        manifest = activation_store.read_manifest(out_dir)
    except FileNotFoundError:
        return None
    old = {"dtype": manifest["dtype"], **{k: manifest["source"].get(k) for k in identity}}
    if diff := [
        f"{k}: {old[k]!r} (stored) vs {v!r}" for k, v in {"dtype": dtype, **identity}.items() if old[k] != v
    ]:
        raise ValueError(
            f"{out_dir} holds another activation store ({'; '.join(diff)}). Use another directory, or delete this "
            "one to start afresh."
        )
    done = manifest["splits"]
    return manifest if all(done.get(s, {}).get("complete", False) for s in splits) else None


class Source(NamedTuple):
    """What extraction reads of a finished run: its model, variables (host arrays), data splits as the model
    sees them, and checkpoint step."""

    model: nn.Module
    variables: dict[str, Any]
    train_split: Split
    test_split: Split
    step: int


def load_source(workdir: str) -> Source:
    """The run in `workdir` as a `Source`: an autoencoder run through `aejax.runs.load_run`, a language-model run
    ("lm" job) through `aejax.jobs.lm.load_lm` and its byte windows.

    Raises:
      FileNotFoundError / ValueError: as those loaders (no config.json or checkpoints, a mismatched checkpoint).
    """
    from aejax import runs

    config = runs.load_config(workdir)
    if config.get("trainer") == "lm":
        from aejax.jobs import lm

        run = lm.load_lm(workdir)
        train, test = lm.load_data(config)
        return Source(run.model, run.variables, train, test, run.step)
    run = runs.load_run(workdir)
    return Source(run.model, run.variables, run.train_split, run.test_split, run.step)


def extract(workdir: str, layer: str, out_dir: str, *, splits: Sequence[str] = ("train", "test"),
            max_rows: int | Mapping[str, int | None] | None = None, batch_size: int = 256,
            dtype: str = "float32", shard_rows: int = 65536) -> dict:  # fmt: skip
    """Extracts the activations of `layer` of the run in `workdir` over its `splits` into the store `out_dir`.

    Args:
      workdir: a finished aejax run. layer: a submodule path (see `layer_names`). out_dir: the store directory.
      splits: of "train", "test". max_rows: cap on each split's rows, whole examples in order (None: all), or
        {split: cap} for a cap per split (e.g. fewer test rows, whose codes an SAE's evaluation holds in memory).
      batch_size: examples per jitted call. dtype: on-disk dtype, "float32" or "float16". shard_rows: rows per
        shard (the work a kill can lose).

    Returns:
      The store's manifest (format, d, dtype, splits, source).

    Raises:
      FileNotFoundError: for a workdir without config.json or checkpoints.
      KeyError: for an unknown split or layer (listing the known ones), before any compute.
      ValueError: if out_dir holds a store made with other arguments (naming the differing fields).
    """
    from aejax import checkpoint, runs  # the trainer's stack is needed only here

    workdir, out_dir = os.path.abspath(workdir), os.path.abspath(out_dir)
    if unknown := [s for s in splits if s not in ("train", "test")]:
        raise KeyError(f"Unknown split(s) {unknown}; a run has the splits train, test.")
    config = runs.load_config(workdir)
    latest = checkpoint.latest_step(workdir)  # None: load_source says what the workdir holds instead
    max_rows = _row_caps(max_rows)
    identity = _identity(workdir, config, latest, layer, max_rows)
    if (done := _existing(out_dir, identity, splits, dtype)) is not None:
        return done
    run = load_source(workdir)
    data = {"train": run.train_split, "test": run.test_split}
    variables = run.variables
    shape = _check_layer(layer_shapes(run.model, variables, run.test_split.x, run.test_split.mask), layer)
    source = dict(framework="jax/flax (aejax)", model_name=config.model_name, output_shape=list(shape),
                  transforms=dict(config.get("transforms") or {}), aejax_commit=_commit(),
                  **_identity(workdir, config, run.step, layer, max_rows))  # fmt: skip
    writer = activation_store.ActivationWriter(
        out_dir, d=shape[-1], dtype=dtype, source=source, shard_rows=shard_rows, identity=IDENTITY
    )
    for split in splits:
        start = time.perf_counter()
        rows = extract_split(run.model, variables, layer, data[split], writer, split, max_rows=max_rows[split],
                             batch_size=batch_size)  # fmt: skip
        tqdm.write(f"{split}: {rows} rows of {layer} in {out_dir} ({time.perf_counter() - start:.1f} s)")
    return writer.manifest


def _define_flags() -> None:
    # Defined when run as a script only, so importing this module never clashes with launch.py's flags.
    flags.DEFINE_string("workdir", None, "a finished aejax run")
    flags.DEFINE_string("layer", None, "submodule path, e.g. encoder_1 or block_1 (omit to list them)")
    flags.DEFINE_string("out", None, "the activation store directory")
    flags.DEFINE_list("splits", ["train", "test"], "splits to extract")
    flags.DEFINE_integer("max_rows", None, "cap on each split's rows (whole examples, in order)")
    flags.DEFINE_integer("batch_size", 256, "examples per jitted call")
    flags.DEFINE_enum("dtype", "float32", list(activation_store.DTYPES), "on-disk dtype")
    flags.DEFINE_integer("shard_rows", 65536, "rows per shard")


def main(argv: Sequence[str]) -> None:
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO, as in launch.py
    if not f.workdir:
        raise app.UsageError("--workdir is required.")
    if not f.layer:
        run = load_source(f.workdir)
        for name, shape in sorted(
            layer_shapes(run.model, run.variables, run.test_split.x, run.test_split.mask).items()
        ):
            print(f"{name}  {list(shape)}")
        return
    if not f.out:
        raise app.UsageError("--out is required.")
    manifest = extract(f.workdir, f.layer, f.out, splits=f.splits, max_rows=f.max_rows, batch_size=f.batch_size,
                       dtype=f.dtype, shard_rows=f.shard_rows)  # fmt: skip
    print({s: sum(x["rows"] for x in v["shards"]) for s, v in manifest["splits"].items()})


if __name__ == "__main__":
    _define_flags()
    app.run(main)
