"""The job "sae": a sparse autoencoder on a language model's activations, everything it needs prepared first.

    python launch.py --config=configs/sae.py          # = this job with config.activations set

Three stages, each cached in its own directory and each resumable, so a first run builds all of them and a later
one (another architecture, k or width) only trains the SAE:

1. the language model: `config.activations.lm` (a configs/lm.py config) trained in `config.activations.lm_workdir`
   by its own job (`runs.train_or_load`: read back when finished there, resumed when interrupted);
2. its activations: the residual stream after `config.activations.layer`, per token, written by
   `aejax.activations.extract` into the activation store `config.activations.store` (resumes at the next shard);
3. the SAE: the default job ("train") on `config.dataset = "activations:<store>"`, whose `sae` report also
   splices the reconstruction into the LM (downstream loss, fraction of loss recovered) and shows the
   top-activating text spans, because the config names the LM (`aejax.analysis.reports.sae`).

A config without `activations` (an SAE on images or any other dataset) is the default job unchanged. With
`config.sweep` set (e.g. "k=8,16,32,64"), stage 3 trains every member in one vmapped pass instead
(`aejax.jobs.sae_sweep`).
"""

import ml_collections

from aejax import activations, build, byte_lm, runs, train
from aejax.data import activation_store
from aejax.jobs import JOBS, Job, sae_sweep

PREFIX = activation_store.PREFIX


def store_dir(config: ml_collections.ConfigDict) -> str:
    """The activation store a config trains on: the directory of `config.dataset` ("activations:<dir>").

    Raises:
      ValueError: if config.dataset does not name an activation store.
    """
    if not activation_store.is_activations(config.dataset):
        raise ValueError(
            f"config.dataset must be '{PREFIX}<dir>' for an SAE on activations, got {config.dataset!r}."
        )
    return config.dataset[len(PREFIX) :]


def prepare(config: ml_collections.ConfigDict) -> dict:
    """Stages 1 and 2 (see the module docstring): the LM trained and its activations stored, or read back.

    Returns:
      The LM run's results.json.

    Raises:
      ValueError: if the store's vector width differs from the LM's residual width, or config.dataset is not
        the store; KeyError for a layer the LM does not have (listing its layers), before extraction.
    """
    src = config.activations
    store = store_dir(config)
    names = byte_lm.ByteLM(**src.lm.model).layer_names()
    if src.layer not in names:  # before the LM is trained
        raise KeyError(f"config.activations.layer={src.layer!r} is not a layer of the LM; its layers: {names}.")
    lm_results = runs.train_or_load(src.lm, src.lm_workdir)
    caps = {"train": src.max_rows_train or None, "test": src.max_rows_test or None}
    activations.extract(src.lm_workdir, src.layer, store, max_rows=caps)
    activation_store.check_width(activation_store.ActivationStore(store), src.lm.model.d_model)
    return lm_results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Prepares the LM and its activations when the config names them, then trains and analyses the SAE (the
    default job's `train_and_evaluate`), or the sweep of SAEs when config.sweep is set; returns its results."""
    if config.get("sweep"):
        sae_sweep.check(config)  # a bad sweep fails before the LM is trained
    if config.get("activations") is not None:
        prepare(config)
    if config.get("sweep"):
        return sae_sweep.train_and_evaluate(config, workdir)
    return train.train_and_evaluate(config, workdir)


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """The default job's `reanalyse`, or every member's and the sweep table for a sweep's workdir."""
    if (build.stored_config(workdir) or {}).get("sweep"):
        return sae_sweep.reanalyse(workdir, reports=reports)
    return train.reanalyse(workdir, reports=reports)


JOB = JOBS.register("sae")(Job(train_and_evaluate, reanalyse))
