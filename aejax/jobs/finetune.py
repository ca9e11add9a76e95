"""Supervised fine-tuning: an autoencoder's encoder plus a softmax layer, trained on labels through the loop.

The classifier is p(y | x) = softmax(W f(x) + b) with f the encoder of any aejax autoencoder (`model.encode`: the
MLP and conv codes, a VAE's posterior mean), trained end to end on the cross-entropy of n labelled train examples
per class, either from the autoencoder's trained weights ("pretrained") or from a random init of the same
network ("random"), with the same optimizer, steps and seed of the softmax layer: the comparison of Erhan et al.
(2010), "Why does unsupervised pre-training help deep learning?", and of the supervised columns of Vincent et
al. (2010, Table 3) and Rifai et al. (2011, Table 1). Only the encoder's and the softmax layer's parameters exist
in the classifier; the decoder is dropped. Training goes through `aejax.loop.run` (checkpoints, NaN stop,
metrics, evaluation of the test error every `eval_every` steps, which is logged, never used to stop or select).

Registered as the job "finetune" (`config.trainer = "finetune"`, configs/finetune.py names the pretrained run):

    python launch.py --config=configs/finetune.py --config.finetune.pretrained_workdir=runs/mnist_ae \
        --workdir=runs/mnist_ae_finetune
    python launch.py --workdir=runs/mnist_ae --eval_only --reports=finetune     # the "finetune" report runs it
    result = finetune.finetune_run("runs/mnist_ae", init="pretrained", labels_per_class=40)   # in a script
"""

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from aejax import build, loop, optim, runs, sharding
from aejax import train_step as ts
from aejax.analysis import probe
from aejax.data import datasets, pipeline
from aejax.data.batch import Batch
from aejax.jobs import JOBS, Job
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import ERROR, XENT, EvalOutput, Objective

INITS = ("pretrained", "random")
ENCODER = "autoencoder"  # the classifier's submodule that holds the encoder


def default_settings() -> ml_collections.ConfigDict:
    """The fine-tuning budget: Adam with warm-up + cosine decay over `num_steps` steps of batch `batch_size`
    (capped at the labelled set's size); log, eval and checkpoint intervals in steps."""
    return ml_collections.ConfigDict(
        dict(
            num_steps=1000,
            batch_size=100,
            optimizer=dict(
                name="adam",
                learning_rate=1e-3,
                schedule="warmup_cosine",
                warmup_steps=50,
                weight_decay=0.0,
                grad_clip_norm=0.0,
            ),
            log_every=50,
            eval_every=250,
            seed=0,
        )
    )


class Classifier(nn.Module):
    """softmax(W f(x) + b): the encoder f of `autoencoder` and a Dense "head" of `num_classes` logits.

    Returns (logits [B, num_classes], code [B, K]).
    """

    autoencoder: AbstractAutoencoder
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        code = self.autoencoder.encode(x, train=train)  # [B, K]
        return nn.Dense(self.num_classes, name="head")(code), code


def make_objective(classifier: Classifier) -> Objective:
    """The classification objective of the loop's contracts.

    loss: mean softmax cross-entropy of the batch, nats per example; metrics "loss/xent", "train_error".
    eval: per-example "error" (1 if argmax of the logits is not the label, else 0) and "xent" (nats); code = the
    encoder's code [B, K].
    """

    def loss_fn(params, model_state, batch: Batch, rng, step):
        del step
        variables = {"params": params, **model_state}
        kw = dict(train=True, rngs={"dropout": rng})
        if model_state:  # BatchNorm statistics are updated from the batch
            (logits, _), new_state = classifier.apply(variables, batch.x, mutable=list(model_state), **kw)
        else:
            (logits, _), new_state = classifier.apply(variables, batch.x, **kw), model_state
        xent = optax.softmax_cross_entropy_with_integer_labels(logits, batch.label).mean()
        error = jnp.mean((jnp.argmax(logits, -1) != batch.label).astype(jnp.float32))
        return xent, ({"loss/xent": xent, "train_error": error}, new_state)

    def eval_fn(params, model_state, batch: Batch, rng) -> EvalOutput:
        del rng
        logits, code = classifier.apply({"params": params, **model_state}, batch.x)
        metrics = {
            ERROR: (jnp.argmax(logits, -1) != batch.label).astype(jnp.float32),
            XENT: optax.softmax_cross_entropy_with_integer_labels(logits, batch.label),
        }
        return EvalOutput(metrics=metrics, code=code)

    return Objective(loss_fn, eval_fn)


def transplant(init_variables: Mapping[str, Any], pretrained: Mapping[str, Any]) -> dict[str, Any]:
    """The classifier's variables with every leaf under "autoencoder" taken from the autoencoder's `pretrained`
    variables ({"params": ..., "batch_stats": ...}) at the same path; the head keeps its init.

    Raises:
      ValueError: if an encoder leaf is missing from `pretrained` or has another shape.
    """
    out = {}
    for collection, tree in init_variables.items():
        flat = traverse_util.flatten_dict(dict(tree))
        source = traverse_util.flatten_dict(dict(pretrained.get(collection, {})))
        for path, leaf in flat.items():
            if path[0] != ENCODER:
                continue
            if path[1:] not in source or np.shape(source[path[1:]]) != np.shape(leaf):
                got = np.shape(source[path[1:]]) if path[1:] in source else "missing"
                raise ValueError(
                    f"The pretrained {collection} do not fit the encoder at {'/'.join(path[1:])}: "
                    f"want {np.shape(leaf)}, got {got}."
                )
            flat[path] = jnp.asarray(source[path[1:]])
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


class FinetuneResult(NamedTuple):
    """One fine-tuned classifier: test error (fraction misclassified, whole test split), test cross-entropy
    (nats per example), the number of labelled train examples, the steps and training seconds."""

    init: str
    test_error: float
    test_xent: float
    num_labels: int
    num_steps: int
    train_time_s: float

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


def finetune(
    model: AbstractAutoencoder,
    variables: Mapping[str, Any] | None,
    train: datasets.Split,
    test: datasets.Split,
    *,
    labels_per_class: int | str,
    subset_seed: int = 0,
    settings: ml_collections.ConfigDict | None = None,
    workdir: str | None = None,
) -> FinetuneResult:
    """Trains Classifier(encoder of `model`) on n labelled examples per class of `train` through `loop.run`.

    Args:
      model: the autoencoder whose encoder is fine-tuned.
      variables: its trained variables ({"params", ...}) to start from, or None for a random init of the same
        network (the head is initialised from `settings.seed` either way, so both starts share it).
      train, test: splits, x [N, ...] as the model sees them, labels [N].
      labels_per_class: n, or "all"; the subset is `probe.labelled_subset(train.labels, n, subset_seed)`.
      settings: `default_settings()` or a config of its fields.
      workdir: where the loop keeps checkpoints and metrics (resumed if it holds a checkpoint); None: nothing.

    Returns:
      FinetuneResult.

    Raises:
      ValueError: for missing labels, too many labels per class, or pretrained variables of another network.
    """
    s = settings or default_settings()
    if np.any(train.labels < 0) or np.any(test.labels < 0):
        raise ValueError("Fine-tuning needs labelled splits (labels >= 0).")
    rows = probe.labelled_subset(train.labels, labels_per_class, subset_seed)
    x, y = train.x[rows], train.labels[rows]
    mesh = sharding.make_mesh()
    devices = mesh.devices.size
    batch_size = min(int(s.batch_size), len(rows) // devices * devices)
    classifier = Classifier(model, num_classes=int(max(train.labels.max(), test.labels.max())) + 1)
    loader = pipeline.InMemoryLoader(x, y, global_batch_size=batch_size, seed=int(s.seed))
    num_steps = int(s.num_steps)
    every = dict(log_every=min(int(s.log_every), num_steps), eval_every=min(int(s.eval_every), num_steps))
    loop_settings = loop.LoopSettings(
        num_steps=num_steps, batch_size=batch_size, checkpoint_every=num_steps, steps_per_call=0, **every
    )
    tx = optim.make_optimizer(s.optimizer, num_steps, where="finetune.optimizer")
    rng = jax.random.key(int(s.seed))
    head_rng, encoder_rng, state_rng = jax.random.split(rng, 3)
    dummy = jnp.zeros((1, *x.shape[1:]), jnp.float32)
    # The head from head_rng in both starts; a random start draws the encoder from another key than the head.
    init_vars = classifier.init(head_rng, dummy)
    if variables is not None:
        init_vars = transplant(init_vars, variables)
    else:
        fresh = classifier.init(encoder_rng, dummy)
        init_vars = {c: {**fresh[c], **({"head": v["head"]} if "head" in v else {})} for c, v in init_vars.items()}
    params = init_vars["params"]
    model_state = {k: v for k, v in init_vars.items() if k != "params"}

    # The arrays are arguments of the jitted init, not constants baked into its program.
    place = jax.jit(lambda p, ms: ts.init_state(p, tx, state_rng, ms), out_shardings=sharding.replicated(mesh))
    result = loop.run(
        settings=loop_settings,
        mesh=mesh,
        objective=make_objective(classifier),
        tx=tx,
        init_fn=lambda: place(params, model_state),
        loader=loader,
        workdir=workdir,
        eval_data=(test.x, test.labels),
        meta={"labels_per_class": str(labels_per_class), "init": "random" if variables is None else "pretrained"},
        desc=f"fine-tune ({'random' if variables is None else 'pretrained'}, n={labels_per_class})",
    )
    ev = result.last_eval  # the final state's evaluation (also when a finished run resumed took no step)
    return FinetuneResult(
        init="random" if variables is None else "pretrained",
        test_error=float(ev.metrics[ERROR].mean()),
        test_xent=float(ev.metrics[XENT].mean()),
        num_labels=len(rows),
        num_steps=num_steps,
        train_time_s=result.train_time_s,
    )


def finetune_run(
    workdir: str,
    *,
    init: str,
    labels_per_class: int | str,
    subset_seed: int = 0,
    settings: ml_collections.ConfigDict | None = None,
    out_dir: str | None = None,
) -> FinetuneResult:
    """`finetune` on a finished run of `aejax.train` (`aejax.runs.load_run(workdir)`), from its trained encoder
    (`init="pretrained"`) or from a random init of the same network (`init="random"`).

    Raises:
      ValueError: for an unknown `init`, listing the known ones; see `finetune`.
    """
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}; known: {', '.join(INITS)}.")
    run = runs.load_run(workdir)
    train = run.train_split._replace(x=probe.fixed_train_inputs(run.config, run.train_split.x))
    return finetune(
        run.model,
        run.variables if init == "pretrained" else None,
        train,
        run.test_split,
        labels_per_class=labels_per_class,
        subset_seed=subset_seed,
        settings=settings,
        workdir=out_dir,
    )


def compare_starts(
    workdir: str,
    out_dir: str,
    *,
    labels_per_class: tuple = (40, probe.ALL),
    starts: tuple[str, ...] = INITS,
    seeds: int = 1,
    settings: ml_collections.ConfigDict | None = None,
) -> dict[str, dict]:
    """`finetune_run` of a finished run for every start, n and seed s in 0..seeds-1 (s seeds the labelled subset,
    the head, a random encoder init and the batch order), each in `<out_dir>/<start>_n<n>_seed<s>/`, whose
    `finetune.json` is reused when it exists (an experiment's script re-run does not retrain).

    Returns:
      {f"{start}/n{n}": {"test_error_mean", "test_error_std" (over seeds, ddof 0), "runs": [FinetuneResult
      dicts]}}.
    """
    base = settings or default_settings()
    out = {}
    for n in labels_per_class:
        for start in starts:
            runs_ = []
            for seed in range(seeds):
                run_dir = os.path.join(out_dir, f"{start}_n{n}_seed{seed}")
                path = os.path.join(run_dir, "finetune.json")
                if os.path.exists(path):
                    with open(path) as f:
                        runs_.append(json.load(f))
                    continue
                s = ml_collections.ConfigDict(base.to_dict())
                s.seed = seed
                res = finetune_run(
                    workdir, init=start, labels_per_class=n, subset_seed=seed, settings=s, out_dir=run_dir
                )
                runs_.append(res.as_dict())
                with open(path, "w") as f:
                    json.dump(res.as_dict(), f, indent=2)
            errors = [r["test_error"] for r in runs_]
            out[f"{start}/n{n}"] = {
                "test_error_mean": float(np.mean(errors)),
                "test_error_std": float(np.std(errors)),
                "runs": runs_,
            }
    return out


def default_config() -> ml_collections.ConfigDict:
    """The job's config (unlocked): `finetune.pretrained_workdir` (a finished run whose encoder is fine-tuned),
    `finetune.init` ("pretrained" or "random"), `finetune.labels_per_class` (n or "all"), `finetune.subset_seed`;
    the budget of `default_settings()` as the usual top-level fields (num_train_steps, batch_size, optimizer,
    log_every, eval_every, seed)."""
    s = default_settings()
    c = ml_collections.ConfigDict()
    c.trainer = "finetune"
    c.seed = s.seed
    c.finetune = ml_collections.ConfigDict(
        dict(pretrained_workdir="", init="pretrained", labels_per_class="40", subset_seed=0)
    )
    c.num_train_steps = s.num_steps
    c.batch_size = s.batch_size
    c.optimizer = s.optimizer
    c.log_every = s.log_every
    c.eval_every = s.eval_every
    return c


def _settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    s = default_settings()
    s.num_steps = int(config.num_train_steps)
    s.batch_size = int(config.batch_size)
    s.optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
    s.log_every, s.eval_every, s.seed = int(config.log_every), int(config.eval_every), int(config.seed)
    return s


def _labels_per_class(spec) -> int | str:
    values = probe.parse_labels_per_class(str(spec))
    if len(values) != 1:
        raise ValueError(f"config.finetune.labels_per_class={spec!r} must be one n or 'all'.")
    return values[0]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Fine-tunes the encoder of the finished run `config.finetune.pretrained_workdir` (`finetune_run`) in
    `workdir` (resuming from its checkpoint) and writes config.json and results.json.

    Returns:
      `FinetuneResult.as_dict()` plus "pretrained_workdir": test_error (fraction of the test split
      misclassified), test_xent (nats per example), num_labels, num_steps, train_time_s, init.

    Raises:
      ValueError: for a missing pretrained_workdir, an unknown init, a bad labels_per_class, bad budget fields
        or optimizer (before any training); FileNotFoundError: if the pretrained run has no checkpoints.
    """
    f = config.finetune
    if not f.pretrained_workdir:
        raise ValueError("config.finetune.pretrained_workdir is empty: name the finished run to fine-tune.")
    if f.init not in INITS:
        raise ValueError(f"Unknown config.finetune.init {f.init!r}; known: {', '.join(INITS)}.")
    labels_per_class = _labels_per_class(f.labels_per_class)
    settings = _settings(config)
    loop.LoopSettings(num_steps=settings.num_steps, batch_size=settings.batch_size)  # checks the budget
    optim.make_optimizer(settings.optimizer, settings.num_steps)  # checks the optimizer before loading anything
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    build.write_config(config, workdir)
    result = finetune_run(
        f.pretrained_workdir,
        init=f.init,
        labels_per_class=labels_per_class,
        subset_seed=int(f.subset_seed),
        settings=settings,
        out_dir=workdir,
    )
    results = {**result.as_dict(), "pretrained_workdir": os.path.abspath(f.pretrained_workdir)}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as fh:
            json.dump(results, fh, indent=2)
    return results


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-evaluates a finished fine-tuning run from its checkpoint and its own config.json (the loop restores
    the final step, takes none and evaluates once); results.json is rewritten.

    Raises:
      ValueError: if `reports` are asked for (a classifier has no per-run reports).
      FileNotFoundError: without config.json.
    """
    if reports:
        raise ValueError(f"Fine-tuning runs have no per-run reports (asked for {reports!r}); drop --reports.")
    return train_and_evaluate(runs.load_config(workdir), workdir)


JOB = JOBS.register("finetune")(Job(train_and_evaluate, reanalyse))
