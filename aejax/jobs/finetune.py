"""Supervised fine-tuning: an autoencoder's encoder plus a softmax layer, trained on labels through the loop.

The classifier is p(y | x) = softmax(W f(x) + b) with f the encoder of any aejax autoencoder (`model.encode`: the
MLP and conv codes, a VAE's posterior mean), trained end to end on the cross-entropy of n labelled train examples
per class, either from the autoencoder's trained weights ("pretrained") or from a random init of the same
network ("random"), with the same optimizer, steps and seed of the softmax layer: the comparison of Erhan et al.
(2010), "Why does unsupervised pre-training help deep learning?", and of the supervised columns of Vincent et
al. (2010, Table 3) and Rifai et al. (2011, Table 1). Only the encoder's and the softmax layer's parameters exist
in the classifier; the decoder is dropped. Training goes through `aejax.loop.run` (checkpoints, NaN stop,
metrics, evaluation of the test error every `eval_every` steps, which is logged, never used to stop or select).

    result = finetune.finetune_run("runs/mnist_ae", init="pretrained", labels_per_class=40)
    python launch.py --workdir=runs/mnist_ae --eval_only --reports=finetune     # the "finetune" report
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

from aejax import loop, optim, runs, sharding
from aejax import train_step as ts
from aejax.analysis import probe
from aejax.data import datasets, pipeline
from aejax.data.batch import Batch
from aejax.models.base import AbstractAutoencoder
from aejax.objectives import Objective
from aejax.train_step import EvalOutput

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
            "error": (jnp.argmax(logits, -1) != batch.label).astype(jnp.float32),
            "xent": optax.softmax_cross_entropy_with_integer_labels(logits, batch.label),
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
    ev = result.last_eval
    if ev is None:  # a finished run resumed from its workdir took no step
        step_fn = ts.make_eval_step(make_objective(classifier).eval_fn, mesh)
        ev = loop.evaluate(result.state, step_fn, test.x, test.labels, mesh, loop_settings.eval_batch_size)
    return FinetuneResult(
        init="random" if variables is None else "pretrained",
        test_error=float(ev.metrics["error"].mean()),
        test_xent=float(ev.metrics["xent"].mean()),
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
