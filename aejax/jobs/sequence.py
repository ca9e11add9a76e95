"""Sequence autoencoders on real time series: the job "sequence" (`config.trainer = "sequence"`).

Tasks (`config.sequence.task`):
- "anomaly" (a long series with per-point labels, `kdd_tsad_135`): z-normalise (`config.transforms.standardize`:
  "per_feature" with the statistics of the normal training prefix, "per_series" each window alone), cut it into
  sliding windows (`window`, `stride`); the last `heldout_fraction` of the prefix gives held-out normal windows
  for the EncDec-AD Gaussian. The points after the prefix are windowed with `score_stride` and scored by
  reconstruction error and by the Mahalanobis distance of the error vector (`aejax.analysis.sequence_anomaly`);
  ROC / PR AUC and aeon's range-based metrics go into results.json, the per-point scores into scores.npz, the
  figure into anomaly_scores.png.
- "classes" (a UCR set, `ucr/<name>`): apply `config.transforms` (z-normalisation with train statistics) and
  train on whole series, their lengths carried as `Batch.mask`. With `one_class` = c >= 0 only class c's
  training series are used (`validation_fraction` of them held out as normal validation series, the same
  split for every seed) and every test series is scored (ROC AUC, positives: the other classes) by its
  reconstruction error per value, for a teacher-forced recurrent model also by its one-step-ahead
  (teacher-forced) error, by the distances of its code to the training codes
  (`sequence_anomaly.code_scores`), and, with validation series, by EncDec-AD's Mahalanobis distance of its
  error vector under the Gaussian of the validation series' errors (scores.npz holds them). Otherwise a
  logistic-regression probe on the codes is compared with one on the raw (transformed, zero-padded) series
  values, which do not include the lengths; latent.png shows the codes.
Both write reconstructions.png, loss_curves.png, results.json; training goes through the one loop
(`aejax.loop.run`, checkpoints in the workdir, resumable).

Early stopping (`config.sequence.early_stopping`, needs held-out normal series: the anomaly task's held-out
windows or a one-class validation split): the loop evaluates the held-out series instead of the test split every
`eval_every` steps, and the parameters of the evaluation with the lowest mean NLL are kept (written to
`early_stopping.msgpack` at each improvement, so a resumed or re-analysed run keeps them) and scored.
"""

import json
import os
import time
from typing import NamedTuple

import flax.serialization
import jax
import ml_collections
import numpy as np

from aejax import build, checkpoint, loop, objectives, plots, runs, sharding
from aejax import train_step as ts
from aejax.analysis import embedding, probe, sequence_anomaly, sequence_plots
from aejax.data import datasets, series, transforms
from aejax.jobs import JOBS, Job
from aejax.metric_writer import read_metrics

TASKS = ("anomaly", "classes")
# The transforms of runs saved before `config.transforms` was declared: per-feature z-normalisation.
DEFAULT_TRANSFORMS = dict(scale="none", standardize="per_feature")
BEST_PARAMS = "early_stopping.msgpack"  # the early-stopped parameters in the workdir
CODE_KNN = 1  # neighbours of the code-space kNN score
VALIDATION_SPLIT_SEED = 0  # the one-class validation split, the same for every model seed


class SequenceData(NamedTuple):
    """Series splits of a run; for "anomaly" also the scored part of the series and its windows.

    Attributes:
      train, test: series `Split`s (x [N, T, C], mask [N, T] or None). heldout: normal windows for the error
        Gaussian.
      values: [T1, C] the scored series, normalised; anomaly: [T1] its labels; starts: [W] its windows' starts;
      offset: index of values[0] in the whole series.
    """

    train: datasets.Split
    test: datasets.Split
    heldout: datasets.Split | None = None
    values: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    starts: np.ndarray | None = None
    offset: int = 0


def anomaly_data(
    prefix,
    rest,
    anomaly,
    *,
    window,
    stride,
    score_stride,
    heldout_fraction,
    offset=0,
    standardize: str = "per_feature",
) -> SequenceData:
    """Windows of a normal prefix [T0, C] (fit + held-out) and of the scored rest [T1, C] with labels [T1].

    `standardize` ("none", "per_feature", "per_series"; `aejax.data.transforms`): "per_feature" z-normalises
    both parts with the prefix's statistics (the returned `values` too), "per_series" each window by its own.

    Raises:
      ValueError: on NaN/inf in either part, a window longer than the fit part, held-out part or the rest, or
        a heldout_fraction outside (0, 1) - all before any training.
    """
    series.check_finite(prefix, what="the training prefix")
    series.check_finite(rest, what="the scored series")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}.")
    if standardize == "per_feature":
        norm = transforms.Standardizer.fit(prefix[None])
        prefix, rest = norm.apply(prefix), norm.apply(rest)
    cut = int(round(len(prefix) * (1.0 - heldout_fraction)))
    fit, _ = series.sliding_windows(prefix[:cut], window, stride)
    held, _ = series.sliding_windows(prefix[cut:], window, stride)
    test, starts = series.sliding_windows(rest, window, score_stride)
    if standardize == "per_series":
        fit, held, test = (transforms.per_series(w) for w in (fit, held, test))
    return SequenceData(
        series.to_split(fit),
        series.to_split(test),
        series.to_split(held),
        rest,
        np.asarray(anomaly),
        starts,
        offset,
    )


def load_sequence_data(config: ml_collections.ConfigDict) -> SequenceData:
    """The data of `config` (task, dataset and windows of `config.sequence`), validated before training.

    Raises:
      KeyError: for an unknown task; ValueError: see `anomaly_data`, `transforms.Transforms.from_config`,
        non-finite values, or a one_class label the training split lacks.
    """
    s = config.sequence
    if s.task not in TASKS:
        raise KeyError(f"Unknown config.sequence.task {s.task!r}. Known: {', '.join(TASKS)}.")
    t = transforms.Transforms.from_config(config.get("transforms", DEFAULT_TRANSFORMS))
    fraction = s.get("validation_fraction", 0.0)
    if not 0.0 <= fraction < 1.0 or (fraction and s.one_class < 0):
        raise ValueError(
            f"config.sequence.validation_fraction={fraction} must be in [0, 1), and > 0 only with one_class >= 0 "
            "(the probe task trains on every class)."
        )
    if s.get("early_stopping", False) and not fraction and s.task != "anomaly":
        raise ValueError(
            "config.sequence.early_stopping needs held-out normal series: set validation_fraction > 0 (with "
            "one_class >= 0), or use the anomaly task."
        )
    if s.task == "anomaly":
        if t.binarize != "none":  # the windows are cut from z-normalised values, never binarised
            raise ValueError(f"config.transforms.binarize={t.binarize!r} does not apply to the anomaly task.")
        train = series.load_anomaly_series(config.dataset, "train", data_dir=config.data_dir)
        whole = series.load_anomaly_series(config.dataset, "test", data_dir=config.data_dir)
        n = len(train.values)
        return anomaly_data(
            train.values,
            whole.values[n:],
            whole.anomaly[n:],
            window=s.window,
            stride=s.stride,
            score_stride=s.score_stride,
            heldout_fraction=s.heldout_fraction,
            offset=n,
            standardize=t.standardize,
        )
    load = dict(data_dir=config.data_dir, manual_dir=config.manual_dir)
    train, test = (datasets.load_split(config.dataset, split, **load) for split in ("train", "test"))
    train, test = transforms.apply_splits(train, test, t)  # z-normalisation statistics from the train split
    for split, name in ((train, "train"), (test, "test")):
        series.check_finite(split.x, what=f"the {name} series of {config.dataset}")
    heldout = None
    if s.one_class >= 0:
        keep = train.labels == s.one_class
        if not keep.any():
            raise ValueError(f"one_class={s.one_class}: no training series of that class in {config.dataset}.")
        train = _rows(train, keep)
        if fraction:
            train, heldout = validation_split(train, fraction)
    return SequenceData(train, test, heldout)


def _rows(split: datasets.Split, rows: np.ndarray) -> datasets.Split:
    return split._replace(
        x=split.x[rows], labels=split.labels[rows], mask=None if split.mask is None else split.mask[rows]
    )


def validation_split(split: datasets.Split, fraction: float) -> tuple[datasets.Split, datasets.Split]:
    """(fit, validation) of a split: round(fraction N) series drawn without replacement (seed
    VALIDATION_SPLIT_SEED) are the validation series, the others fit.

    Raises:
      ValueError: if either part would hold fewer than 2 series (the error Gaussian needs 2).
    """
    n = len(split.x)
    num_val = int(round(fraction * n))
    if num_val < 2 or n - num_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} of {n} series leaves {n - num_val} to fit and {num_val} to validate; "
            "both need at least 2."
        )
    order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(n)
    return _rows(split, np.sort(order[num_val:])), _rows(split, np.sort(order[:num_val]))


def train(config: ml_collections.ConfigDict, data: SequenceData, workdir: str, *, write_config: bool = True):
    """Trains `config.model_name` on data.train through the one loop (resuming from the workdir's newest
    checkpoint; nothing is trained when it already holds the config's steps); returns (model, variables,
    likelihood, objective, loop result, mesh). `write_config=False` leaves the workdir's config.json as it is."""
    mesh = sharding.mesh_from_config(config)  # model > 1 is refused by make_init_fn: no latent axis here
    ndev = mesh.devices.size
    n = len(data.train.x)
    batch = min(config.batch_size, n - n % ndev)  # one-class subsets can be smaller than the batch
    if batch < 1:
        raise ValueError(f"{n} training series cannot fill a batch on {ndev} devices.")
    b = build.build(config, data.train, batch_size=batch)
    model, likelihood, objective, tx = b.model, b.likelihood, b.objective, b.tx
    init_fn = build.make_init_fn(model, tx, data.train.x.shape[1:], mesh, jax.random.key(config.seed))
    if write_config:
        build.write_config(config, workdir)
    test = (data.test.x, data.test.labels, data.test.mask)
    early = config.sequence.get("early_stopping", False)
    if early and data.heldout is None:
        raise ValueError("config.sequence.early_stopping needs held-out normal series (see load_sequence_data).")
    best = EarlyStopping(os.path.join(workdir, BEST_PARAMS)) if early else None
    result = loop.run(
        settings=b.settings,
        mesh=mesh,
        objective=objective,
        tx=tx,
        init_fn=init_fn,
        loader=b.loader,
        workdir=workdir,
        eval_data=(data.heldout.x, data.heldout.labels, data.heldout.mask) if early else test,
        eval_seed=config.seed,
        meta={"dataset": config.dataset},
        on_start=best.on_start if early else None,
        on_eval=best.on_eval if early else None,
    )
    state = result.state
    if early:
        if best.params is None:
            raise FileNotFoundError(f"{best.path} is missing: the early-stopped parameters of this run are lost.")
        state = state.replace(
            params=jax.tree.map(lambda a, ref: jax.device_put(a, ref.sharding), best.params, state.params)
        )
        eval_step = ts.make_eval_step(objective.eval_fn, mesh)
        ev = loop.evaluate(
            state, eval_step, *test[:2], mesh, config.eval_batch_size, seed=config.seed, mask=test[2]
        )
        result = result._replace(state=state, last_eval=ev)
    variables = jax.device_get({"params": state.params, **state.model_state})
    return model, variables, likelihood, objective, result, mesh


class EarlyStopping:
    """The loop's `on_eval` hook of early stopping: keeps the parameters of the evaluation with the lowest mean
    NLL on the held-out series, and the step and loss, in memory and in `path` (msgpack), so a resumed run
    continues from the best of its earlier launches and a finished one re-reads it.

    Attributes:
      step, loss, params: the best evaluation's step, mean NLL (nats per series) and host parameters (None before
        the first evaluation).
    """

    def __init__(self, path: str):
        self.path, self.step, self.loss, self.params = path, None, float("inf"), None

    def on_start(self, start: int) -> None:
        if start == 0 and os.path.exists(self.path):
            os.remove(self.path)  # a fresh run: a stale file of an earlier config would win otherwise
        elif os.path.exists(self.path):
            with open(self.path, "rb") as f:
                saved = flax.serialization.msgpack_restore(f.read())
            self.step, self.loss, self.params = int(saved["step"]), float(saved["loss"]), saved["params"]

    def on_eval(self, step: int, state, ev: loop.EvalResult) -> None:
        loss = float(np.mean(ev.metrics[objectives.NLL]))
        if loss < self.loss:
            self.step, self.loss, self.params = step, loss, jax.device_get(state.params)
            if jax.process_index() == 0:
                record = {"step": step, "loss": loss, "params": self.params}
                with open(self.path, "wb") as f:
                    f.write(flax.serialization.msgpack_serialize(record))


def _anomaly_results(config, data: SequenceData, apply_fn, workdir: str) -> dict:
    s, window = config.sequence, data.test.x.shape[1]
    recon, _ = sequence_anomaly.reconstruct(apply_fn, data.test.x, batch_size=config.eval_batch_size)
    err = sequence_anomaly.step_errors(recon, data.test.x)  # [W, L, C]; windows have no padding
    held_recon, _ = sequence_anomaly.reconstruct(apply_fn, data.heldout.x, batch_size=config.eval_batch_size)
    gaussian = sequence_anomaly.fit_error_gaussian(sequence_anomaly.step_errors(held_recon, data.heldout.x))
    num = len(data.values)
    scores = {
        "recon_error": series.point_scores(np.square(err).mean(axis=-1), data.starts, window, num),
        "encdec_ad": series.point_scores(
            sequence_anomaly.mahalanobis_scores(gaussian, err), data.starts, window, num
        ),
    }
    np.savez(
        os.path.join(workdir, "scores.npz"), anomaly=data.anomaly, values=data.values, offset=data.offset, **scores
    )
    sequence_plots.detector_scores(
        data.values[:, 0],
        data.anomaly,
        scores,
        os.path.join(workdir, "anomaly_scores.png"),
        offset=data.offset,
        title=f"{config.dataset}: {config.model_name}",
    )
    sequence_plots.reconstructions(
        data.test.x, recon, np.full(len(recon), window), os.path.join(workdir, "reconstructions.png")
    )
    out = {}
    for name, sc in scores.items():
        out.update(
            {f"{name}/{k}": v for k, v in sequence_anomaly.detection_metrics(data.anomaly, sc, vus=s.vus).items()}
        )
    return out


def early_stopping_step(workdir: str) -> int:
    """The step of the early-stopped parameters in `workdir`."""
    with open(os.path.join(workdir, BEST_PARAMS), "rb") as f:
        return int(flax.serialization.msgpack_restore(f.read())["step"])


def one_class_scores(config, data: SequenceData, model, variables, recon, test_codes) -> dict[str, np.ndarray]:
    """{score name: [N] test scores, higher = more anomalous} of a one-class run (module docstring): "recon_error"
    (mean squared error per value), "recon_error_teacher" (teacher-forced recurrent models only), the
    `sequence_anomaly.CODE_SCORES` and, with validation series, "encdec_ad"."""
    test, ev = data.test, config.eval_batch_size
    lengths = test.lengths if test.lengths is not None else np.full(len(test.x), test.x.shape[1])
    per_value = lengths * test.x.shape[-1]
    err = sequence_anomaly.step_errors(recon, test.x, test.mask)
    scores = {"recon_error": np.square(err).sum(axis=(1, 2)) / per_value}
    if config.model_name == "seq2seq" and config.model.teacher_forcing:
        teacher = sequence_anomaly.reconstruct_fn(model, variables, teacher_forcing=True)
        recon_t, _ = sequence_anomaly.reconstruct(teacher, test.x, test.mask, batch_size=ev)
        scores["recon_error_teacher"] = (
            np.square(sequence_anomaly.step_errors(recon_t, test.x, test.mask)).sum(axis=(1, 2)) / per_value
        )
    apply_fn = sequence_anomaly.reconstruct_fn(model, variables)
    _, train_codes = sequence_anomaly.reconstruct(apply_fn, data.train.x, data.train.mask, batch_size=ev)
    scores.update(sequence_anomaly.code_scores(train_codes, test_codes, k=CODE_KNN))
    if data.heldout is not None:
        held = data.heldout
        held_recon, _ = sequence_anomaly.reconstruct(apply_fn, held.x, held.mask, batch_size=ev)
        gaussian = sequence_anomaly.fit_error_gaussian(sequence_anomaly.step_errors(held_recon, held.x, held.mask))
        scores["encdec_ad"] = sequence_anomaly.mahalanobis_scores(gaussian, err)
    return scores


def _class_results(config, data: SequenceData, model, variables, workdir: str) -> dict:
    from sklearn.metrics import roc_auc_score

    apply_fn = sequence_anomaly.reconstruct_fn(model, variables)
    test = data.test
    recon, test_codes = sequence_anomaly.reconstruct(
        apply_fn, test.x, test.mask, batch_size=config.eval_batch_size
    )
    lengths = test.lengths if test.lengths is not None else np.full(len(test.x), test.x.shape[1])
    if config.sequence.get("figures", True):
        sequence_plots.reconstructions(
            test.x,
            recon,
            lengths,
            os.path.join(workdir, "reconstructions.png"),
            titles=[f"label {y}" for y in test.labels],
        )
    if config.sequence.one_class >= 0:
        scores = one_class_scores(config, data, model, variables, recon, test_codes)
        positive = test.labels != config.sequence.one_class
        np.savez(os.path.join(workdir, "scores.npz"), labels=test.labels, **scores)
        aucs = {f"one_class_roc_auc/{k}": float(roc_auc_score(positive, v)) for k, v in scores.items()}
        return {"one_class_roc_auc": aucs["one_class_roc_auc/recon_error"], **aucs}
    _, train_codes = sequence_anomaly.reconstruct(
        apply_fn, data.train.x, data.train.mask, batch_size=config.eval_batch_size
    )
    points, how = embedding.embed_2d(test_codes, config.analysis.embedding, seed=config.seed)
    plots.latent_scatter(points, test.labels, os.path.join(workdir, "latent.png"), title=f"{how}, test set")
    out = {}
    raw = {"code": (train_codes, test_codes), "raw": (raw_features(data.train), raw_features(test))}
    for name, (a, b) in raw.items():
        out[f"probe_accuracy/{name}"] = probe.probe_accuracy(a, data.train.labels, b, test.labels, max_iter=2000)
    return out


def raw_features(split: datasets.Split) -> np.ndarray:
    """[N, T C] the series values as the raw probe baseline reads them: zero after each length, and without the
    lengths themselves (the mask is not a feature)."""
    return split.x.reshape(len(split.x), -1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, write_config: bool = True) -> dict:
    """Loads and checks the data, trains, scores; writes and returns results.json.

    Returns:
      {"test_nll", "test_sq_err", "test_mse" (free-running reconstruction of the test series / windows, summed
      over valid steps and channels; mse per value), and for "anomaly" "<score>/<metric>" for score in
      recon_error, encdec_ad; for "classes" "one_class_roc_auc" (of the reconstruction error) and
      "one_class_roc_auc/<score>" for every score of `one_class_scores`, or "probe_accuracy/code" and ".../raw";
      with early stopping "early_stopping_step"}.

    Raises:
      ValueError / KeyError: bad data or config, before training (see `load_sequence_data`).
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    data = load_sequence_data(config)
    t0 = time.perf_counter()
    model, variables, likelihood, objective, result, mesh = train(config, data, workdir, write_config=write_config)
    ev = result.last_eval  # the final state's evaluation (also when a relaunched finished run took no step)
    results = {
        "dataset": config.dataset,
        "model": config.model_name,
        "num_train": len(data.train.x),
        "num_test": len(data.test.x),
        "num_steps": int(jax.device_get(result.state.step)),
        **ev.means(objectives.TEST_PREFIX),
        "train_time_s": result.train_time_s,
        "examples_per_s": result.examples_per_s,
        "steps_per_call": result.steps_per_call,
    }
    if config.sequence.get("early_stopping", False):
        results["early_stopping_step"] = int(early_stopping_step(workdir))
    apply_fn = sequence_anomaly.reconstruct_fn(model, variables)
    if config.sequence.task == "anomaly":
        results.update(_anomaly_results(config, data, apply_fn, workdir))
    else:
        results.update(_class_results(config, data, model, variables, workdir))
    results["total_time_s"] = round(time.perf_counter() - t0, 2)
    if jax.process_index() == 0 and config.sequence.get("figures", True):
        plots.loss_curves(read_metrics(workdir), os.path.join(workdir, "loss_curves.png"))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-scores a sequence run from its newest checkpoint without training (`launch.py --eval_only`): the
    evaluation, the task's scores and figures, with the run's own config.json; results.json is rewritten.

    Raises:
      FileNotFoundError: without config.json or without checkpoints.
      ValueError: if `reports` are asked for (the sequence job's analyses are its task's scores).
    """
    if reports:
        raise ValueError(f"Sequence runs have no per-run reports (asked for {reports!r}); drop --reports.")
    workdir = os.path.abspath(workdir)
    config = runs.load_config(workdir)
    step = checkpoint.latest_step(workdir)
    if step is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint.")
    config = ml_collections.ConfigDict(config.to_dict())
    config.num_train_steps = step  # the checkpoint's own step: the loop restores it and trains nothing
    return train_and_evaluate(config.lock(), workdir, write_config=False)


JOB = JOBS.register("sequence")(Job(train_and_evaluate, reanalyse))
