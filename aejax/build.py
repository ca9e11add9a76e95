"""One place assembles a run: config -> data (transforms applied), loader, model, likelihood, objective, optimizer,
loop settings and the init function, plus the checks of a workdir's stored config.

The default job (`aejax.train`), every registered job (`aejax.jobs`), `aejax.runs.load_run` and the analyses
that train (`aejax.analysis.score`) build through these functions, so a run reads the same way top to bottom
whichever job launched it.

    workdir, mesh, train_split, test_split = build.setup_run(config, workdir)
    b = build.build(config, train_split)               # model, likelihood, objective, tx, settings, loader
    init_fn = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(config.seed))
"""

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from aejax import checkpoint, loop, objectives, optim, sharding
from aejax import train_step as ts
from aejax.data import classes, datasets, pipeline, streaming, transforms
from aejax.likelihoods import Likelihood, get_likelihood
from aejax.models import AbstractAutoencoder, get_model


def load_data(config: ml_collections.ConfigDict) -> tuple[datasets.Split, datasets.Split]:
    """The train and test splits of `config.dataset`, with the config's transforms applied (a training split
    under dynamic binarisation stays grey; the loader samples it every step). `config.train_classes` ("" all,
    "3", "1,7") keeps only those classes of the train split; the test split is whole (`aejax.data.classes`).

    An activation store's split is streamed (x a lazy `streaming.StoreView`, read batch by batch) when
    `config.data_loading` is "stream", or "auto" and the split is larger than `config.max_memory_gb` GiB
    (`streaming.should_stream`); a streamed split keeps its stored vectors (no transforms).

    Raises:
      KeyError / FileNotFoundError / ValueError: for a dataset that is unknown, missing or unreadable (a missing
        or truncated shard of a store is named), bad transforms (see `datasets.load_split`,
        `transforms.Transforms.from_config`), a train class that is not in the data, a bad data_loading, or
        streaming asked for a dataset that cannot stream or with transforms or train_classes that need the
        whole split.
    """
    t = transforms.Transforms.from_config(config.get("transforms"))
    # .get: runs saved before these fields existed loaded every split into memory, as "auto" does for them.
    mode, budget = config.get("data_loading", "auto"), config.get("max_memory_gb", 8.0)
    analysis = config.get("analysis") or {}
    max_code_rows = analysis.get("max_code_rows", streaming.DEFAULT_MAX_CODE_ROWS)
    load = dict(data_dir=config.data_dir, manual_dir=config.manual_dir)
    train_classes = classes.parse_classes(config.get("train_classes", ""))

    def one(split: str) -> tuple[datasets.Split, bool]:
        if streaming.should_stream(config.dataset, split, mode, budget):
            streaming.check_transforms(t, config.dataset)
            return streaming.open_split(config.dataset, split, max_code_rows=max_code_rows), True
        return datasets.load_split(config.dataset, split, **load), False

    (train_split, train_streamed), (test_split, test_streamed) = one("train"), one("test")
    if train_streamed and train_classes:
        raise ValueError(f"config.train_classes={config.train_classes!r} needs the train split in memory.")
    if not train_streamed:
        train_split = classes.select_classes(train_split, train_classes)
    if not (train_streamed or test_streamed):
        return transforms.apply_splits(train_split, test_split, t)  # z-normalisation statistics from train_split
    # A streamed split is used as stored (check_transforms); an in-memory one is only cast (scale of floats).
    in_memory = {False: lambda s: transforms.apply(s, t, train=True), True: lambda s: s}
    return in_memory[train_streamed](train_split), in_memory[test_streamed](test_split)


def setup_run(config: ml_collections.ConfigDict, workdir: str):
    """The workdir (absolute, created), the mesh and the data of a run, failing early on bad input.

    Returns:
      (absolute workdir, mesh, train Split, test Split).

    Raises:
      ValueError: if `config.mesh` does not fit the devices or the batch size does not divide over its data
        axis; KeyError / FileNotFoundError for a dataset that is unknown or missing (see `datasets.load_split`).
    """
    mesh = sharding.mesh_from_config(config)  # before the workdir: a bad mesh leaves nothing behind
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    sharding.check_batch_size(config.batch_size, mesh)
    train_split, test_split = load_data(config)
    return workdir, mesh, train_split, test_split


def make_loader(
    config, split: datasets.Split, *, seed: int, batch_size: int | None = None
) -> pipeline.PermutedLoader:
    """The training loader of a split: seeded per-epoch order, this host's rows, dynamic binarisation if set;
    global batches of `batch_size` (default config.batch_size). A streamed split (`load_data`) gets a
    `streaming.StreamingLoader` with the same order, otherwise an `InMemoryLoader`."""
    t = transforms.Transforms.from_config(config.get("transforms"))
    common = dict(
        global_batch_size=config.batch_size if batch_size is None else batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if isinstance(split.x, streaming.StoreView):
        return streaming.StreamingLoader(split.x, split.labels, **common)
    return pipeline.InMemoryLoader(
        split.x,
        split.labels,
        transform=transforms.dynamic_binarizer(t, seed, jax.process_index()),
        mask=split.mask,
        **common,
    )


def make_init_fn(
    model: AbstractAutoencoder, tx, input_shape, mesh, rng: jax.Array, init_params=None, *, input_dtype=jnp.float32
):
    """() -> a fresh TrainState on the mesh: the model's variables from split(rng)[0], the state's base key
    split(rng)[1] ("params" replaced by `init_params` when given; other collections such as "batch_stats"
    from the init). The model is initialised on zeros of `input_dtype` (int32 for a byte language model).
    The state is replicated, except the model's `LATENT_AXES` leaves, split over the mesh's "model" axis
    (`sharding.state_shardings`); the loop's steps take the shardings of the state this returns.

    Raises:
      ValueError: if `init_params` does not have the model's parameter shapes; for a mesh "model" axis > 1 when
        the model has no latent axis or its n_latents does not divide over it (before any compute).
    """
    init_rng, state_rng = jax.random.split(rng)

    def init(params):
        variables = model.init(init_rng, jnp.zeros((1, *input_shape), input_dtype))
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return ts.init_state(variables["params"] if params is None else params, tx, state_rng, model_state)

    if init_params is not None:
        want = checkpoint.leaf_shapes(jax.eval_shape(lambda: init(None).params))
        got = checkpoint.leaf_shapes(jax.tree.map(jnp.asarray, init_params))
        if got != want:
            diff = "; ".join(checkpoint.describe_difference(got, want)[:6])
            raise ValueError(f"init_params do not match the model's parameters: {diff}.")
    # Models outside the autoencoder family (the byte LM) declare no per-latent leaves.
    latent_axes = getattr(type(model), "LATENT_AXES", {})
    shardings = sharding.state_shardings(jax.eval_shape(init, init_params), mesh, latent_axes)
    if init_params is None:  # a jitted function of no argument: jax.eval_shape of it keeps the shardings, so a
        return jax.jit(functools.partial(init, None), out_shardings=shardings)  # restore skips the init's arrays
    # init_params is an argument, not a closed-over constant, so large kernels are not baked into the program.
    return functools.partial(jax.jit(init, out_shardings=shardings), init_params)


class Built(NamedTuple):
    """What a config builds: the pieces of a run, before any training."""

    model: AbstractAutoencoder
    likelihood: Likelihood
    objective: objectives.Objective
    tx: Any
    settings: loop.LoopSettings
    loader: pipeline.PermutedLoader


def build(
    config: ml_collections.ConfigDict, train_split: datasets.Split, *, batch_size: int | None = None
) -> Built:
    """Model, likelihood, objective, optimizer, loop settings and loader of `config`; `batch_size` overrides
    config.batch_size (e.g. a one-class subset smaller than the configured batch).

    Raises:
      KeyError: for unknown model, likelihood, objective, corruption, regularizer or optimizer names.
      ValueError: for bad step counts, intervals or optimizer hyperparameters (naming the config field), an
        option the objective cannot honour (e.g. a regularizer under "elbo"), or config.sweep (the "sae" job
        builds a sweep's members, `aejax.jobs.sae_sweep`).
    """
    if config.get("sweep"):  # only the "sae" job trains a sweep; any other would train one model and ignore it
        raise ValueError(
            f"config.sweep={config.sweep!r} is trained by the 'sae' job (config.trainer='sae'), which builds each "
            f"member; config.trainer={config.get('trainer')!r} does not sweep."
        )
    loader = make_loader(config, train_split, seed=config.seed, batch_size=batch_size)
    settings = loop.LoopSettings.from_config(config, loader.steps_per_epoch)
    if batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=batch_size)
    model = get_model(config.model_name, input_shape=tuple(train_split.x.shape[1:]), **config.model)
    likelihood = get_likelihood(config.likelihood)
    objective = objectives.from_config(config, model, likelihood)
    tx = optim.make_optimizer(config.optimizer, settings.num_steps)
    return Built(model, likelihood, objective, tx, settings, loader)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """["model.code_dim: 8 -> 16", ...]: the fields whose values differ between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def stored_config(workdir: str) -> dict | None:
    """The config.json of a workdir as a dict, or None."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `<workdir>/config.json` (process 0 only; the other processes share the file system or not)."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def record_config(config: ml_collections.ConfigDict, workdir: str, before: dict | None) -> Callable[[int], None]:
    """The loop's `on_start`: once the state is restored or initialised, print the config fields that changed
    since `before` (the workdir's config.json before this launch) when resuming, then write config.json; a
    launch that fails before its first step leaves the workdir's record alone."""

    def on_start(start: int) -> None:
        if start and before is not None:
            changed = config_differences(before, json.loads(config.to_json_best_effort()))
            if changed and jax.process_index() == 0:
                print(f"Resuming with changed config fields: {'; '.join(changed)}")
        write_config(config, workdir)

    return on_start


def incompatible_config_error(
    error: checkpoint.IncompatibleCheckpointError, config: ml_collections.ConfigDict, before: dict | None
) -> ValueError:
    """The ValueError to raise when a workdir's checkpoint holds another state structure than `config` builds:
    the checkpoint's message plus the config fields that differ from the workdir's config.json `before`."""
    changed = config_differences(before or {}, json.loads(config.to_json_best_effort()))
    return ValueError(
        f"{error}\nThe config differs from the run's config.json in: {'; '.join(changed) or '(no field)'}. "
        "Use another --workdir for a different model, or relaunch with the run's own config."
    )
