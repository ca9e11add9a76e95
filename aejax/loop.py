"""The one training loop: every trainer (the main job, greedy layer-wise pretraining, DAE score training) runs
through `run`; a job differs in what it builds (model, objective, data), never in how it steps.

`run` initialises or resumes (state, optimizer, RNG, data position and the training time so far from the newest
checkpoint, skipping unreadable ones), steps the jitted train step over the loader's batches (one step per call,
or K per call as a `lax.scan` over a split kept in device memory), checks every logged value for NaN/inf before
anything that follows it is saved, logs means to TensorBoard and metrics.jsonl, evaluates every metric of the
objective's eval on a split, writes orbax checkpoints, shows a progress bar, and measures examples/s.
"""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from aejax import checkpoint, sharding
from aejax import train_step as ts
from aejax.data import pipeline, streaming
from aejax.metric_writer import MetricWriter
from aejax.objectives import Objective


class NonFiniteLossError(FloatingPointError):
    """A train step produced a non-finite value; the last good checkpoint is kept."""


def check_finite(step0: int, window: list[dict]) -> None:
    """Raises NonFiniteLossError naming the first step (0-based, as `state.step`) and its non-finite terms."""
    for i, metrics in enumerate(window):
        bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(v)}
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise NonFiniteLossError(
                f"Non-finite value in train step {step0 + i}: {terms}. Stopping; the last good checkpoint is "
                "kept (lower the learning rate or a penalty weight and relaunch to resume from it)."
            )


def check_finite_params(state: ts.TrainState, done: int) -> None:
    """Raises NonFiniteLossError if the parameters after `done` steps are not finite. The losses checked by
    `check_finite` are those before each update, and the parameter norm is only computed every log interval, so
    a checkpoint checks the parameters it is about to save (one pass over them per save)."""
    if not np.isfinite(float(_global_norm(state.params))):
        raise NonFiniteLossError(
            f"Non-finite parameters after train step {done - 1}. Stopping; the last good checkpoint is kept."
        )


_global_norm = jax.jit(optax.global_norm)  # one compilation per parameter structure, not one per operation

INTERVALS = ("log_every", "eval_every", "checkpoint_every")
MAX_AUTO_STEPS_PER_CALL = 32


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _per_step(window: list[dict]) -> list[dict]:
    """Host metrics of the calls of a window -> one dict per step (a K-step call returns [K] arrays)."""
    out = []
    for metrics in window:
        if np.ndim(next(iter(metrics.values()))) == 0:
            out.append(metrics)
        else:
            out += [{name: v[i] for name, v in metrics.items()} for i in range(len(next(iter(metrics.values()))))]
    return out


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How the loop steps, logs, evaluates and saves.

    Attributes:
      num_steps: total number of updates of the run (a resumed run continues up to it).
      batch_size: global batch size B (for examples/s).
      log_every, eval_every, checkpoint_every: in steps; the last step always logs, evaluates and saves.
      keep_checkpoints: how many of the newest checkpoints orbax keeps.
      eval_batch_size: rows per evaluation batch (rounded up to a multiple of the mesh's "data" axis).
      steps_per_call: K train steps per jitted call (a `lax.scan` over steps, batches gathered on the device
        from the split in device memory); 1 is one dispatch per step; 0 chooses K (`resolve_steps_per_call`).
        A call ends early at the next log, eval or checkpoint step, which therefore happen at the configured
        steps for any K (intervals that are multiples of K keep every call K steps long; each other call
        length compiles once more).

    Raises:
      ValueError: if a field is not a positive integer (steps_per_call: >= 0), naming the `config.` field.
    """

    num_steps: int
    batch_size: int
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_batch_size: int = 500
    steps_per_call: int = 1

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low = 0 if field.name == "steps_per_call" else 1
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"config.{field.name}={value!r} must be an integer >= {low}.")

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, steps_per_epoch: int, *, num_train_steps=None, num_epochs=None
    ) -> "LoopSettings":
        """The settings of `config` (log_every, eval_every, checkpoint_every, keep_checkpoints, batch_size,
        eval_batch_size); num_steps = num_train_steps if > 0, else num_epochs * steps_per_epoch (both taken
        from `config` unless given, e.g. the per-layer budget of stacked pretraining).

        Raises:
          ValueError: for a negative num_train_steps or num_epochs, no steps at all, or a bad field.
        """
        steps = config.num_train_steps if num_train_steps is None else num_train_steps
        epochs = config.num_epochs if num_epochs is None else num_epochs
        if steps < 0:
            raise ValueError(f"config.num_train_steps={steps} must be >= 0 (0: use num_epochs).")
        if epochs < 0:
            raise ValueError(f"config.num_epochs={epochs} must be >= 0.")
        total = steps or epochs * steps_per_epoch
        if total < 1:
            raise ValueError(f"No training steps: num_train_steps={steps} and num_epochs={epochs}; set either.")
        return cls(
            num_steps=int(total),
            batch_size=int(config.batch_size),
            log_every=int(config.log_every),
            eval_every=int(config.eval_every),
            checkpoint_every=int(config.checkpoint_every),
            keep_checkpoints=int(config.keep_checkpoints),
            eval_batch_size=int(config.eval_batch_size),
            steps_per_call=int(config.get("steps_per_call", 1)),
        )


def resolve_steps_per_call(
    settings: LoopSettings, loader: pipeline.AbstractLoader, slow_in_scan: set[str] | frozenset = frozenset()
) -> tuple[int, str]:
    """The K the loop uses and why: settings.steps_per_call, or for 0 ("auto") the largest divisor of the log,
    eval and checkpoint intervals up to MAX_AUTO_STEPS_PER_CALL (e.g. 25 for intervals 50 / 500 / 500) when the
    loader can feed a multi-step scan (`loader.can_scan`: a split in device memory, or a streamed split on one
    process, whose K batches go to the devices in one transfer per call) and the step has no primitive that the
    backend runs slowly inside a scan (`slow_in_scan`, from `train_step.slow_in_scan`: convolutions on CPU), else
    1. A function of the config, the model's primitives and the backend, so a resumed run uses the K of the run it
    continues.

    Returns:
      (K, a sentence saying why, for the log).

    Raises:
      ValueError: for K > 1 with a loader that cannot feed a scan (a per-step host transform such as dynamic
        binarisation, or a streamed split over several processes).
    """
    on_device = loader.can_scan
    k = settings.steps_per_call
    if k == 0:
        if not on_device:
            return 1, "auto: the batches are made on the host each step"
        if slow_in_scan:
            return 1, (
                f"auto: the step has {', '.join(sorted(slow_in_scan))}, which {jax.default_backend()} runs "
                "several times slower inside a multi-step scan (benchmarks/bench_scan_unroll.py)"
            )
        g = math.gcd(*(getattr(settings, name) for name in INTERVALS))
        k = max(d for d in range(1, min(g, MAX_AUTO_STEPS_PER_CALL) + 1) if g % d == 0)
        return k, "auto: the largest divisor of the log, eval and checkpoint intervals up to 32"
    if k > 1 and not on_device:
        raise ValueError(
            f"config.steps_per_call={k} needs batches without a per-step host transform (dynamic binarisation "
            "samples on the host each step) and, for a streamed split, one process; use steps_per_call=1."
        )
    if k > 1 and slow_in_scan:
        return k, (
            f"as configured, although the step has {', '.join(sorted(slow_in_scan))}, which "
            f"{jax.default_backend()} runs several times slower inside a multi-step scan: steps_per_call=0 "
            "(auto) or 1 is faster here"
        )
    return k, "as configured"


class EvalResult(NamedTuple):
    """Per-example evaluation of a whole split, host arrays in split order.

    Attributes:
      metrics: {name: [N]} the objective's per-example metrics.
      code: [N, K] the codes; of a streamed split (`streaming.StoreView`), only its first `x.max_code_rows` rows
        ([min(N, max_code_rows), K]), so a split larger than memory is evaluated in chunks.
      time_s: wall-clock seconds the evaluation took (every batch to host; it includes compiling the eval step
        when this is the step's first use), e.g. the cost of a VAE's k-sample importance bound.
    """

    metrics: dict[str, np.ndarray]
    code: np.ndarray
    time_s: float = 0.0

    def means(self, prefix: str = "") -> dict[str, float]:
        """{prefix + name: mean over the split}."""
        return {prefix + k: float(np.mean(v)) for k, v in self.metrics.items()}


def evaluate(
    state: ts.TrainState,
    eval_step,
    x: np.ndarray,
    labels: np.ndarray,
    mesh: Mesh,
    batch_size: int,
    *,
    seed=0,
    mask: np.ndarray | None = None,
) -> EvalResult:
    """The objective's eval over a whole split, in order; batch i draws from fold_in(key(seed), i).

    Args:
      state: the TrainState (its params and model_state are read).
      eval_step: `train_step.make_eval_step(objective.eval_fn, mesh)`.
      x: [N, *input_shape] inputs, in memory or a streamed split (`streaming.StoreView`, read batch by batch;
        then only the first `x.max_code_rows` codes are kept); labels: [N].
      mesh: the mesh; batch_size: rows per batch (padded to a multiple of its "data" axis).
      seed: seed of the evaluation randomness (stochastic bounds, sampled scores), fixed so evaluation repeats.
      mask: optional [N, T] step validity of variable-length series (`Split.mask`), carried on each batch.
    """
    t0 = time.perf_counter()
    rng = jax.random.key(seed)
    n = len(x)
    keep_codes = min(n, x.max_code_rows) if isinstance(x, streaming.StoreView) else n
    metrics, code, row = {}, None, 0
    for i, (batch, num_valid) in enumerate(
        pipeline.eval_batches(x, labels, batch_size=batch_size, multiple_of=sharding.data_size(mesh), mask=mask)
    ):
        global_batch = sharding.to_global(sharding.host_rows(batch), mesh)
        out = eval_step(state.params, state.model_state, global_batch, jax.random.fold_in(rng, i))
        # Batch-sharded outputs span every process's devices: gather them whole onto each host.
        out = (
            multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
        )
        if code is None:  # sized by the first batch and filled in place: no second copy of the codes
            metrics = {k: np.empty((n, *np.shape(v)[1:]), np.asarray(v).dtype) for k, v in out.metrics.items()}
            code = np.empty((keep_codes, *np.shape(out.code)[1:]), np.asarray(out.code).dtype)
        for k, v in out.metrics.items():
            metrics[k][row : row + num_valid] = np.asarray(v)[:num_valid]
        if (c := min(num_valid, keep_codes - row)) > 0:
            code[row : row + c] = np.asarray(out.code)[:c]
        row += num_valid
    return EvalResult(metrics=metrics, code=code, time_s=time.perf_counter() - t0)


class LoopResult(NamedTuple):
    """What a run of the loop leaves.

    Attributes:
      state: the final TrainState (replicated on the mesh).
      start_step: the step this launch started from (0, or the resumed checkpoint's).
      train_time_s: seconds spent training, over every launch of the run (from the checkpoints' records).
      examples_per_s: median over this launch's log windows (the first, with compilation, excluded), or None.
      meta: the restored checkpoint's record (None for a fresh start).
      last_metrics: the means of the last logged window ({} if this launch took no step).
      steps_per_call: the K the loop used (`resolve_steps_per_call`).
      last_eval: the evaluation of the final state on `eval_data` (None only without eval_data): the final
        step's evaluation, or, when this launch took no step (a relaunched finished run), one evaluation of the
        restored state, so no caller evaluates again.
    """

    state: ts.TrainState
    start_step: int
    train_time_s: float
    examples_per_s: float | None
    meta: dict | None
    last_metrics: dict[str, float]
    steps_per_call: int
    last_eval: EvalResult | None = None


def run(
    *,
    settings: LoopSettings,
    mesh: Mesh,
    objective: Objective,
    tx: optax.GradientTransformation,
    init_fn: Callable[[], ts.TrainState],
    loader: pipeline.AbstractLoader,
    workdir: str | None,
    eval_data: tuple[np.ndarray, ...] | None = None,
    eval_seed: int = 0,
    meta: dict[str, Any] | None = None,
    desc: str = "train",
    on_start: Callable[[int], None] | None = None,
    on_eval: Callable[[int, ts.TrainState, EvalResult], None] | None = None,
) -> LoopResult:
    """Trains from the newest checkpoint in `workdir` (or `init_fn()`) up to `settings.num_steps`.

    Args:
      settings: steps and intervals.
      mesh: the mesh; batches are sharded on "data", the state as `init_fn` places it (replicated, or the
        latent axis split over "model").
      objective: loss, eval and projection (`aejax.objectives.Objective`).
      tx: the optax optimizer.
      init_fn: () -> a fresh TrainState placed on the mesh (`build.make_init_fn`); the steps use its shardings.
      loader: the training batches, a pure function of the step.
      workdir: where `checkpoints/`, `metrics.jsonl` and `tb/` go; None keeps nothing on disk (a run that
        cannot resume, e.g. the many small DAEs of a score sweep).
      eval_data: (x [N, ...], labels [N]) or (x, labels, mask [N, T] or None) evaluated every `eval_every`
        steps and at the end, logged as "eval/<metric>" means; None skips evaluation.
      eval_seed: seed of `evaluate`.
      meta: extra JSON-able facts stored with every checkpoint (e.g. the dataset or the layer).
      desc: the progress bar's label.
      on_start: called with the start step once the state is restored or initialised, before the first step
        (the trainer writes config.json there, so a run that never started leaves the workdir's record alone).
      on_eval: called as on_eval(step, state, evaluation) after each evaluation of `eval_data` during training
        (e.g. early stopping keeps the parameters of the best validation loss).

    Returns:
      LoopResult, whose `last_eval` is the evaluation of the final state whenever `eval_data` is given.

    Raises:
      NonFiniteLossError: if a step produced a non-finite loss term, gradient or parameter norm; the newest
        checkpoint is then one whose values were all finite.
      checkpoint.IncompatibleCheckpointError: if `workdir` holds a checkpoint of another state structure.
      checkpoint.NoReadableCheckpointError: if `workdir` holds checkpoints and none can be read (an unreadable
        newest one is skipped, reported and moved aside, and the newest readable one is used).
    """
    ckpt = (
        None
        if workdir is None
        else checkpoint.Checkpointer(f"{workdir}/checkpoints", max_to_keep=settings.keep_checkpoints)
    )
    state, restored = ckpt.restore_or_init(init_fn) if ckpt else (init_fn(), None)
    if ckpt is not None and ckpt.skipped:
        moved = ckpt.quarantine() if jax.process_index() == 0 else []
        for step, why in sorted(ckpt.skipped.items(), reverse=True):
            tqdm.write(f"Skipped the checkpoint at step {step} in {workdir}: it cannot be read ({why}).")
        if moved:
            tqdm.write(f"Moved the unreadable checkpoints to {', '.join(moved)} (nothing deleted).")
    start = int(state.step)
    if start and jax.process_index() == 0:
        tqdm.write(f"Resuming {desc} from the checkpoint at step {start} of {settings.num_steps} in {workdir}")
    previous_time = float((restored or {}).get("train_time_s", 0.0))
    if on_start is not None:
        on_start(start)

    slow = set()
    if settings.steps_per_call != 1 and loader.can_scan:
        slow = ts.slow_in_scan(objective.loss_fn, tx, state, loader.batch(start), jax.default_backend())
    k, why = resolve_steps_per_call(settings, loader, slow)
    if jax.process_index() == 0 and (k > 1 or slow):
        tqdm.write(f"{desc}: {k} step{'s' if k > 1 else ''} per jitted call ({why})")
    hooks = dict(project=objective.project, after_update=objective.after_update, norms_every=settings.log_every)
    state_sharding = sharding.TreeShardings.of(state)  # init_fn's (a restored state is placed like it)
    hooks["state_sharding"] = state_sharding
    if k == 1:
        train_step = ts.make_train_step(objective.loss_fn, tx, mesh, **hooks)
    else:
        multi_step = ts.make_multi_step(objective.loss_fn, tx, mesh, **hooks)
        if loader.device_resident:  # once; batches are gathered on device
            device_split = sharding.replicate((loader.x, loader.labels, loader.mask), mesh)
    eval_step = ts.make_eval_step(objective.eval_fn, mesh, state_sharding) if eval_data is not None else None
    writer = MetricWriter(workdir) if workdir is not None else None
    window, window_start, last, ev = [], start, {}, None
    train_time, t_window, paused, rates = 0.0, time.perf_counter(), 0.0, []

    def flush(done: int) -> dict[str, float]:
        nonlocal window, window_start, t_window, paused, train_time, last
        if not window:
            return {}
        host = _per_step(jax.device_get(window))
        check_finite(window_start, host)
        elapsed = time.perf_counter() - t_window - paused
        train_time += elapsed
        rate = len(host) * settings.batch_size / elapsed
        if window_start > start:  # the first window includes compilation
            rates.append(rate)
        means = ts.window_means(host)
        means["examples_per_s"] = rate
        if writer:
            writer.write(done, means)
        window, window_start, last = [], done, means
        return means

    def run_eval(state: ts.TrainState) -> EvalResult:
        x_eval, labels_eval, mask_eval = (*eval_data, None)[:3]  # the mask is optional
        return evaluate(
            state, eval_step, x_eval, labels_eval, mesh, settings.eval_batch_size, seed=eval_seed, mask=mask_eval
        )

    steps = settings.num_steps
    step = start
    # Batches made on the host come in order from `start` (a streaming loader reads ahead in threads).
    batches = None if k > 1 and loader.device_resident else loader.iterate(start)
    try:
        with tqdm(total=steps, initial=start, desc=desc, disable=jax.process_index() != 0, leave=False) as bar:
            while step < steps:
                if k == 1:
                    state, metrics = train_step(state, sharding.to_global(next(batches), mesh))
                    done = step + 1
                else:  # K steps, ending early at the next log / eval / checkpoint step and at the end
                    done = min(steps, step + k, *(_next_multiple(step, getattr(settings, n)) for n in INTERVALS))
                    if loader.device_resident:
                        rows = np.stack([loader.global_rows(s) for s in range(step, done)]).astype(np.int32)
                        state, metrics = multi_step(state, *device_split, rows)
                    else:  # the next K host batches, sent in one transfer; step t of the scan takes rows t*B...
                        chunk = [next(batches) for _ in range(step, done)]
                        host = (
                            np.concatenate([b.x for b in chunk]),
                            np.concatenate([b.label for b in chunk]),
                            None,
                        )
                        rows = np.arange(len(host[0]), dtype=np.int32).reshape(done - step, -1)
                        state, metrics = multi_step(state, *sharding.replicate(host, mesh), rows)
                window.append(metrics)
                bar.update(done - step)
                step = done
                final = done == steps
                if done % settings.log_every == 0 or final:
                    m = flush(done)
                    bar.set_postfix(loss=f"{m['loss']:.4g}", ex_per_s=f"{m['examples_per_s']:.0f}")
                if eval_step is not None and (done % settings.eval_every == 0 or final):
                    t_eval = time.perf_counter()
                    ev = run_eval(state)
                    if writer:
                        writer.write(done, ev.means("eval/"))
                    if on_eval is not None:
                        on_eval(done, state, ev)
                    paused += time.perf_counter() - t_eval  # not training time
                if ckpt is not None and (done % settings.checkpoint_every == 0 or final):
                    flush(done)  # never save a state that followed a non-finite step
                    check_finite_params(state, done)
                    record = {"step": done, "data": loader.state(done), "train_time_s": previous_time + train_time}
                    ckpt.save(done, state, {**record, **(meta or {})})
                if not window:  # examples/s and train time measure training, not evaluation or checkpointing
                    t_window, paused = time.perf_counter(), 0.0
    finally:
        if batches is not None:
            batches.close()  # stops a streaming loader's reading threads
        if ckpt is not None:
            ckpt.wait()  # an interrupted run still finishes writing its last good checkpoint
            ckpt.close()
        if writer:
            writer.close()
    if eval_step is not None and ev is None:  # this launch took no step: evaluate the restored state
        ev = run_eval(state)
    return LoopResult(
        state=state,
        start_step=start,
        train_time_s=round(previous_time + train_time, 2),
        examples_per_s=float(np.median(rates)) if rates else None,
        meta=restored,
        last_metrics=last,
        steps_per_call=k,
        last_eval=ev,
    )
