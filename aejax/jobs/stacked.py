"""Stacked (denoising) autoencoder: greedy layer-wise pretraining, then end-to-end fine-tuning.

For a deep MLP autoencoder with widths D -> d_1 -> ... -> d_L (`config.model.hidden + (code_dim,)`), layer
l = 0..L-1 is a one-hidden-layer autoencoder d_l -> d_{l+1} -> d_l trained on the clean codes h_l of the layers
below (h_0 = x): a plain AE, or a DAE whose corruption q(h~_l | h_l) touches only its own input, never the layers
below (Vincent et al. 2010, JMLR, Sec. 3.5 and Fig. 3; Hinton & Salakhutdinov 2006 stack RBMs the same way). The
layers' weights then initialise the deep autoencoder (encoder_l <- layer l's encoder, decoder_{L-1-l} <- layer l's
decoder), which the default job (`aejax.train.train_and_evaluate`) fine-tunes end to end. The same network
trained from random init with the same fine-tuning budget is the baseline.

Workdir layout: `pretrain/layer_<l>/` (metrics, checkpoints), `finetune/` and `random_init/` (complete runs of
the default job with their own results and figures), `stacked_curves.png`, `results.json`. Registered as the
job "stacked" (`config.trainer = "stacked"`).
"""

import json
import os
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

from aejax import build, loop, optim
from aejax import train as default_job
from aejax import train_step as ts
from aejax.data import datasets
from aejax.jobs import JOBS, Job
from aejax.likelihoods import get_likelihood, squared_error
from aejax.metric_writer import read_metrics
from aejax.models import AbstractAutoencoder, get_model
from aejax.models.mlp import FIRST_ENCODER, decoder_bias, decoder_layer, encoder_layer
from aejax.objectives import NLL, SQ_ERR, Objective, autoencoder, eval_key, test_key

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class LayerResult(NamedTuple):
    """One pretrained layer: params {"encoder_0", "decoder_0" | "decoder_bias_0"}, the clean codes
    h_{l+1} of the train / test split ([N, d_{l+1}]), and its summary numbers."""

    params: dict
    train_codes: np.ndarray
    test_codes: np.ndarray
    summary: dict


def widths(config: ml_collections.ConfigDict) -> list[int]:
    """[d_1, ..., d_L]: the code widths of the L stacked layers."""
    return [*config.model.hidden, config.model.code_dim]


def layer_model(config: ml_collections.ConfigDict, layer: int, input_shape: Sequence[int]) -> AbstractAutoencoder:
    """The one-hidden-layer autoencoder of layer `layer`: input_shape -> d_{layer+1} -> input_shape.

    Its code uses the deep model's hidden activation, except the top layer, which uses its code activation.
    """
    last = layer == len(widths(config)) - 1
    return get_model(
        "mlp",
        input_shape=tuple(input_shape),
        hidden=(),
        code_dim=widths(config)[layer],
        activation=config.model.activation,
        code_activation=config.model.code_activation if last else config.model.activation,
        tied=config.model.tied,
    )


def layer_likelihood(config: ml_collections.ConfigDict, layer: int) -> str:
    """Decoder likelihood of layer `layer`: `config.likelihood` on the pixels; for deeper layers
    `config.stacked.hidden_likelihood`, where "auto" is Bernoulli cross-entropy for sigmoid codes in [0, 1]
    (Vincent et al. 2010) and Gaussian (squared error) otherwise."""
    if layer == 0:
        return config.likelihood
    name = config.stacked.hidden_likelihood
    if name == "auto":
        name = "bernoulli" if config.model.activation == "sigmoid" else "gaussian"
    return name


def stack_params(layer_params: Sequence[dict]) -> dict:
    """The deep `mlp.Model` params from L layer params: encoder_l <- layer l's encoder_0 and
    decoder_{L-1-l} (or decoder_bias_{L-1-l} when tied) <- layer l's decoder_0 (decoder_bias_0)."""
    num = len(layer_params)
    params = {}
    for layer, p in enumerate(layer_params):
        params[encoder_layer(layer)] = p[FIRST_ENCODER]
        for name in (decoder_layer, decoder_bias):
            if name(0) in p:
                params[name(num - 1 - layer)] = p[name(0)]
    return params


def layer_objective(config: ml_collections.ConfigDict, model: AbstractAutoencoder, likelihood) -> Objective:
    """The layer's (denoising) autoencoder objective; `config.stacked.corruption` corrupts the layer's own
    input and `config.stacked.regularizers` are its penalties."""
    loss_fn = autoencoder.make_loss_fn(
        model,
        likelihood,
        corrupt=autoencoder.corruption_from_config(config.stacked.corruption),
        penalty=autoencoder.penalty_from_config(config.stacked.regularizers),
    )
    return Objective(loss_fn, autoencoder.make_eval_fn(model, likelihood))


def pretrain_layer(
    config: ml_collections.ConfigDict,
    layer: int,
    train: datasets.Split,
    test: datasets.Split,
    mesh,
    workdir: str,
    on_start=None,
) -> LayerResult:
    """Trains layer `layer` on the clean codes `train.x` [N, *d_l] through the shared loop (resuming from
    `workdir`'s checkpoint) and returns its params and the clean codes of both splits, the next layer's inputs.
    `on_start(step)` is passed to `loop.run`.

    Raises:
      loop.NonFiniteLossError: if a step produced a non-finite loss, gradient or parameter norm.
    """
    os.makedirs(workdir, exist_ok=True)
    model = layer_model(config, layer, train.x.shape[1:])
    likelihood = get_likelihood(layer_likelihood(config, layer))
    # Codes are not pixels: a per-step transform (dynamic binarisation) applies to the first layer's input only.
    loader = build.make_loader(config if layer == 0 else _no_transforms(config), train, seed=config.seed + layer)
    settings = loop.LoopSettings.from_config(
        config,
        loader.steps_per_epoch,
        num_train_steps=config.stacked.num_train_steps,
        num_epochs=config.stacked.num_epochs,
    )
    tx = optim.make_optimizer(config.stacked.optimizer, settings.num_steps, where="config.stacked.optimizer")
    objective = layer_objective(config, model, likelihood)
    rng = jax.random.fold_in(jax.random.key(config.seed), layer)
    init_fn = build.make_init_fn(model, tx, train.x.shape[1:], mesh, rng)
    t0 = time.perf_counter()
    result = loop.run(
        settings=settings,
        mesh=mesh,
        objective=objective,
        tx=tx,
        init_fn=init_fn,
        loader=loader,
        workdir=workdir,
        eval_data=(test.x, test.labels),
        eval_seed=config.seed,
        meta={"layer": layer},
        desc=f"pretrain layer {layer}",
        on_start=on_start,
    )
    # Codes of the clean inputs: the next layer's corruption, if any, is applied to these, never to x.
    eval_step = ts.make_eval_step(objective.eval_fn, mesh)
    ev_train = loop.evaluate(result.state, eval_step, train.x, train.labels, mesh, config.eval_batch_size)
    ev_test = result.last_eval
    summary = {
        "layer": layer,
        "input_dim": int(np.prod(train.x.shape[1:])),
        "code_dim": widths(config)[layer],
        "likelihood": likelihood.name,
        "num_steps": settings.num_steps,
        test_key(SQ_ERR): float(ev_test.metrics[SQ_ERR].mean()),  # in the layer's input space
        test_key(NLL): float(ev_test.metrics[NLL].mean()),
        "time_s": round(time.perf_counter() - t0, 2),
    }
    return LayerResult(jax.device_get(result.state.params), ev_train.code, ev_test.code, summary)


def _no_transforms(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.to_dict())
    c.transforms = dict(scale="none", binarize="none", threshold=0.5)
    return c


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Greedy layer-wise pretraining, fine-tuning, and the random-init baseline; writes results.json.

    Returns:
      The dict written to `<workdir>/results.json`: "test_sq_err" (fine-tuned stacked AE, squared error summed
      over pixels, per test image), "random_init_test_sq_err", "pretrain" (per layer), times.

    Raises:
      ValueError: if `config.model_name` is not "mlp", or on a bad batch size.
    """
    if config.model_name != "mlp":
        raise ValueError(f"The stacked autoencoder stacks MLP layers; got model_name={config.model_name!r}.")
    workdir, mesh, train, test = build.setup_run(config, workdir)

    def write_config(step: int) -> None:  # once the first layer's state is restored or initialised
        del step
        build.write_config(config, workdir)

    t0 = time.perf_counter()
    layers, codes = [], (train, test)
    for layer in range(len(widths(config))):
        layer_dir = os.path.join(workdir, "pretrain", f"layer_{layer}")
        res = pretrain_layer(config, layer, *codes, mesh, layer_dir, on_start=write_config if layer == 0 else None)
        layers.append(res)
        codes = datasets.Split(res.train_codes, train.labels), datasets.Split(res.test_codes, test.labels)
    pretrain_time = time.perf_counter() - t0
    params = stack_params([r.params for r in layers])

    deep = get_model(config.model_name, input_shape=train.x.shape[1:], **config.model)
    output = deep.apply({"params": params}, jnp.asarray(test.x)).decoder_output
    stacked_err = squared_error(get_likelihood(config.likelihood).mean(output), jnp.asarray(test.x))

    finetune = default_job.train_and_evaluate(config, os.path.join(workdir, "finetune"), init_params=params)
    results = {
        "dataset": config.dataset,
        "widths": [int(np.prod(train.x.shape[1:])), *widths(config)],
        "pretrain": [r.summary for r in layers],
        "pretrain_time_s": round(pretrain_time, 2),
        "stacked_before_finetune_test_sq_err": float(stacked_err.mean()),
        "num_steps": finetune["num_steps"],
        test_key(SQ_ERR): finetune[test_key(SQ_ERR)],
        test_key(NLL): finetune[test_key(NLL)],
        "train_time_s": finetune["train_time_s"],
    }
    if "pca_sq_err" in finetune:
        results["pca_sq_err"] = finetune["pca_sq_err"]
    dirs = {"stacked (pretrained)": os.path.join(workdir, "finetune")}
    if config.stacked.compare_random_init:
        dirs["random init"] = os.path.join(workdir, "random_init")
        baseline_config = ml_collections.ConfigDict(config.to_dict())
        baseline_config.analysis.pca_baseline = False  # the same PCA number as the fine-tuned run's; SVD is slow
        baseline = default_job.train_and_evaluate(baseline_config, dirs["random init"])
        results["random_init_" + test_key(SQ_ERR)] = baseline[test_key(SQ_ERR)]
        results["random_init_" + test_key(NLL)] = baseline[test_key(NLL)]
        results["random_init_train_time_s"] = baseline["train_time_s"]
        results["pretraining_helps"] = bool(results[test_key(SQ_ERR)] < baseline[test_key(SQ_ERR)])
    if jax.process_index() == 0:
        layer_dirs = [os.path.join(workdir, "pretrain", f"layer_{i}") for i in range(len(layers))]
        plot_curves(layer_dirs, [r.summary for r in layers], dirs, os.path.join(workdir, "stacked_curves.png"))
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


SUBRUNS = {"finetune": "", "random_init": "random_init_"}  # sub-run -> its prefix in the job's results.json


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-analyses a finished stacked run without training: each sub-run (`finetune/`, `random_init/`) through
    the default job's `reanalyse`, and the job's results.json updated with their fresh test metrics. A
    sub-run's own workdir (its config.json also names this job) is re-analysed like a run of the default job.

    Raises:
      FileNotFoundError: if neither the workdir nor a sub-run holds checkpoints.
    """
    workdir = os.path.abspath(workdir)
    if os.path.isdir(os.path.join(workdir, "checkpoints")):  # a sub-run
        return default_job.reanalyse(workdir, reports=reports)
    found = [name for name in SUBRUNS if os.path.isdir(os.path.join(workdir, name, "checkpoints"))]
    if not found:
        raise FileNotFoundError(f"{workdir} holds no stacked sub-run ({', '.join(SUBRUNS)}) with checkpoints.")
    path = os.path.join(workdir, "results.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    for name in found:
        sub = default_job.reanalyse(os.path.join(workdir, name), reports=reports)
        results.update({SUBRUNS[name] + k: v for k, v in sub.items() if k.startswith(test_key(""))})
    if "random_init" in found:
        results["pretraining_helps"] = bool(results[test_key(SQ_ERR)] < results["random_init_" + test_key(SQ_ERR)])
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    return results


def _curve(ax, rows: list[dict], key: str, label: str, **kw) -> None:
    pts = [(r["step"], r[key]) for r in rows if key in r]
    if pts:
        steps, values = zip(*pts, strict=True)
        ax.plot(steps, values, label=label, **kw)


def plot_curves(layer_dirs: list[str], summaries: list[dict], finetune_dirs: dict[str, str], path: str) -> None:
    """One panel per pretrained layer (train loss, test NLL) and one comparing fine-tuning runs, in nats."""
    n = len(layer_dirs) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False)
    for ax, d, s in zip(axes[0], layer_dirs, summaries, strict=False):
        rows = read_metrics(d)
        _curve(ax, rows, "loss", "train loss")
        _curve(ax, rows, eval_key(NLL), "test NLL", marker="o", ms=3)
        ax.set_title(
            f"pretrain layer {s['layer']}: {s['input_dim']}->{s['code_dim']} ({s['likelihood']})", fontsize=9
        )
    ax = axes[0, -1]
    for (name, d), color in zip(finetune_dirs.items(), ("C0", "C3"), strict=False):
        rows = read_metrics(d)
        _curve(ax, rows, "loss", f"{name}, train", color=color)
        _curve(ax, rows, eval_key(NLL), f"{name}, test", color=color, ls="--", marker="o", ms=3)
    ax.set_title("end-to-end fine-tuning", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("nats per example")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


JOB = JOBS.register("stacked")(Job(train_and_evaluate, reanalyse))
