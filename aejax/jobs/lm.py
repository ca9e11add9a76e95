"""The byte-level language model job "lm" (`config.trainer = "lm"`, configs/lm.py): trains `aejax.byte_lm.ByteLM`
on byte windows (`pystdlib`) through the one loop (checkpoints in the workdir, resumable), then writes
results.json with the test cross-entropy (nats and bits per predicted byte) beside the unigram and bigram byte
models fitted by counting on the training windows (`aejax.analysis.ngram`), the corpus's Python version and
sha256, the parameter count, and sample.txt (text sampled from `config.lm.prompt`) as a cheap sanity check.

    run = lm.load_lm("runs/lm")                       # model, variables, config: the SAE pipeline's source
    h = run.model.apply(run.variables, tokens, "block_1", method="residual")   # [B, T, d_model]
"""

import functools
import json
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import build, byte_lm, checkpoint, loop, objectives, optim, plots, runs, sharding
from aejax.analysis import ngram
from aejax.data import datasets
from aejax.data.builders import pystdlib
from aejax.jobs import JOBS, Job
from aejax.metric_writer import read_metrics
from aejax.objectives import BITS_PER_BYTE, NATS_PER_BYTE

SAMPLE_FILE = "sample.txt"


def load_data(config: ml_collections.ConfigDict) -> tuple[datasets.Split, datasets.Split]:
    """The train and test byte windows of `config.dataset`, as stored (uint8 [N, T]; no transforms).

    Raises:
      ValueError: if the dataset does not hold text windows, or the model's context is shorter than T - 1.
      KeyError / FileNotFoundError: see `datasets.load_split`.
    """
    if config.get("transforms"):
        raise ValueError("config.transforms does not apply to the 'lm' job (it reads bytes as they are stored).")
    load = dict(data_dir=config.data_dir, manual_dir=config.manual_dir)
    train, test = (datasets.load_split(config.dataset, s, **load) for s in ("train", "test"))
    if train.kind != "text":
        raise ValueError(
            f"The 'lm' job needs a text dataset (byte windows), got {config.dataset!r} ({train.kind})."
        )
    if config.model.context < train.x.shape[1] - 1:
        raise ValueError(
            f"config.model.context={config.model.context} is shorter than the T - 1 = {train.x.shape[1] - 1} "
            f"positions the model reads of each {config.dataset!r} window."
        )
    return train, test


def build_lm(config: ml_collections.ConfigDict, train_split: datasets.Split) -> build.Built:
    """Model (`ByteLM(**config.model)`), objective "lm", optimizer, loop settings and loader of `config`, as
    `build.build` assembles an autoencoder's (likelihood None: the model's softmax is its own).

    Raises:
      ValueError / KeyError: for bad model sizes, step counts or optimizer settings (naming the field), or an
        option the objective cannot honour.
    """
    if config.objective != "lm":
        raise ValueError(f"The 'lm' job trains the 'lm' objective, got config.objective={config.objective!r}.")
    loader = build.make_loader(config, train_split, seed=config.seed)
    settings = loop.LoopSettings.from_config(config, loader.steps_per_epoch)
    model = byte_lm.ByteLM(**config.model)
    objective = objectives.from_config(config, model, None)
    tx = optim.make_optimizer(config.optimizer, settings.num_steps)
    return build.Built(model, None, objective, tx, settings, loader)


def init_fn(config, b: build.Built, window: int, mesh):
    """() -> a fresh TrainState of the LM (initialised on int32 tokens [1, T - 1])."""
    return build.make_init_fn(
        b.model, b.tx, (window - 1,), mesh, jax.random.key(config.seed), input_dtype=jnp.int32
    )


@functools.partial(jax.jit, static_argnames=("model", "temperature"))
def _next_byte(model, variables, window, pos, key, temperature: float):
    logits = model.apply(variables, window[None])[0, pos]  # [256]
    if temperature == 0:
        return jnp.argmax(logits)
    return jax.random.categorical(key, logits / temperature)


def sample(
    model: byte_lm.ByteLM, variables, prompt: bytes, length: int, *, temperature: float, seed: int
) -> bytes:
    """`prompt` followed by `length` bytes drawn one at a time from the model (temperature 0: the argmax), each
    from the last `context` bytes. One compilation per model: the window is always [1, context], right-padded
    while the text is shorter (causal attention makes the padding invisible to the position read).

    Raises:
      ValueError: for an empty prompt or a negative temperature.
    """
    if not prompt or temperature < 0:
        raise ValueError(f"sample needs a non-empty prompt and temperature >= 0, got {prompt!r}, {temperature}.")
    n, text, key = model.context, list(prompt), jax.random.key(seed)
    for i in range(length):
        tail = text[-n:]
        window = np.zeros(n, np.int32)
        window[: len(tail)] = tail
        key_i = jax.random.fold_in(key, i)
        text.append(int(_next_byte(model, variables, window, len(tail) - 1, key_i, float(temperature))))
    return bytes(text)


def _corpus_info(config) -> dict:
    base, _, cfg = config.dataset.partition("/")
    if base != "pystdlib":
        return {}
    info = pystdlib.corpus_info(cfg or "full", config.data_dir)
    return {f"corpus_{k.removeprefix('corpus_')}": v for k, v in info.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, write_config: bool = True) -> dict:
    """Trains (or resumes) the LM, evaluates it on the test split, fits the n-gram baselines; writes and returns
    results.json.

    Returns:
      {"test_nats_per_byte", "test_bits_per_byte" (the LM's mean over the test windows' predicted bytes),
      "baseline_<unigram|bigram>_nats_per_byte" and "..._bits_per_byte", "corpus_python_version",
      "corpus_sha256", ..., "num_params", "num_steps", "train_time_s", "examples_per_s", "steps_per_s",
      "sample"}.

    Raises:
      ValueError / KeyError: bad data or config, before training (see `load_data`, `build_lm`).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(config.batch_size, mesh)
    train, test = load_data(config)
    b = build_lm(config, train)
    before = build.stored_config(workdir)
    t0 = time.perf_counter()
    try:
        result = loop.run(
            settings=b.settings,
            mesh=mesh,
            objective=b.objective,
            tx=b.tx,
            init_fn=init_fn(config, b, train.x.shape[1], mesh),
            loader=b.loader,
            workdir=workdir,
            eval_data=(test.x, test.labels),
            eval_seed=config.seed,
            meta={"dataset": config.dataset},
            on_start=build.record_config(config, workdir, before) if write_config else None,
        )
    except checkpoint.IncompatibleCheckpointError as e:
        raise build.incompatible_config_error(e, config, before) from e
    variables = jax.device_get({"params": result.state.params})
    baseline = ngram.baseline_nats(train.x, test.x)
    steps = int(jax.device_get(result.state.step))
    results = {
        "dataset": config.dataset,
        **_corpus_info(config),
        "num_train_windows": len(train.x),
        "num_test_windows": len(test.x),
        "window": int(train.x.shape[1]),
        "num_params": byte_lm.param_count(variables["params"]),
        "num_steps": steps,
        **result.last_eval.means(objectives.TEST_PREFIX),
        **{f"baseline_{k}_{NATS_PER_BYTE}": v for k, v in baseline.items()},
        **{f"baseline_{k}_{BITS_PER_BYTE}": v / math.log(2.0) for k, v in baseline.items()},
        "train_time_s": result.train_time_s,
        "examples_per_s": result.examples_per_s,
        "steps_per_s": None if result.examples_per_s is None else result.examples_per_s / config.batch_size,
        "steps_per_call": result.steps_per_call,
    }
    lm = config.lm
    text = sample(
        b.model, variables, lm.prompt.encode(), lm.sample_length, temperature=lm.temperature, seed=config.seed
    )
    results["sample"] = text.decode("utf-8", errors="replace")
    results["total_time_s"] = round(time.perf_counter() - t0, 2)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, SAMPLE_FILE), "wb") as f:
            f.write(text)
        plots.loss_curves(read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-evaluates a finished LM run from its newest checkpoint without training (`launch.py --eval_only`):
    test cross-entropy, baselines and sample, with the run's own config.json; results.json is rewritten.

    Raises:
      FileNotFoundError: without config.json or without checkpoints.
      ValueError: if `reports` are asked for (the LM job has no per-run reports).
    """
    if reports:
        raise ValueError(f"LM runs have no per-run reports (asked for {reports!r}); drop --reports.")
    workdir = os.path.abspath(workdir)
    config = runs.load_config(workdir)
    step = _latest_step(workdir)
    config = ml_collections.ConfigDict(config.to_dict())
    config.num_train_steps = step  # the checkpoint's own step: the loop restores it and trains nothing
    return train_and_evaluate(config.lock(), workdir, write_config=False)


def _latest_step(workdir: str) -> int:
    step = checkpoint.latest_step(workdir)
    if step is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint.")
    return step


class LmRun(NamedTuple):
    """A trained LM: config, model, variables ({"params": host arrays}) and checkpoint step."""

    config: ml_collections.ConfigDict
    model: byte_lm.ByteLM
    variables: dict[str, Any]
    step: int


def load_lm(workdir: str) -> LmRun:
    """The newest readable checkpoint of an LM run (no data is read).

    Raises:
      FileNotFoundError: without config.json or checkpoints; ValueError: if config.json is not an "lm" run or
        the checkpoint does not hold the state its config builds.
    """
    workdir = os.path.abspath(workdir)
    config = runs.load_config(workdir)
    if config.get("trainer") != "lm":
        raise ValueError(f"{workdir} is a {config.get('trainer')!r} run, not an 'lm' one.")
    _latest_step(workdir)
    model = byte_lm.ByteLM(**config.model)
    tx = optim.make_optimizer(config.optimizer, max(config.num_train_steps, 1))
    mesh = sharding.make_mesh()
    window = config.model.context + 1  # the init shape only fixes parameter shapes, not the window length
    init = build.make_init_fn(model, tx, (window - 1,), mesh, jax.random.key(config.seed), input_dtype=jnp.int32)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        state, _ = ckpt.restore_or_init(init)
    finally:
        ckpt.close()
    return LmRun(config, model, jax.device_get({"params": state.params}), int(state.step))


JOB = JOBS.register("lm")(Job(train_and_evaluate, reanalyse))
