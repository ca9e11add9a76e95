"""The "sae" job with `config.sweep` set: S SAEs trained in one pass (`aejax.sweep`), then split into one ordinary
run per member.

    python launch.py --config=configs/sae.py:sweep --workdir=runs/sae_sweep          # TopK, k = 8, 16, 32, 64
    python launch.py --config=configs/sae.py:relu_l1,mnist,sweep --config.sweep="l1_coeff=1,3,10" --workdir=...

<workdir>/ holds the stacked run (checkpoints/ of the stacked state, so an interrupted sweep resumes like any
run; metrics.jsonl with "<member>/<metric>"), results.json (the sweep table) and sae_frontier.png (FVU against
L0). <workdir>/members/<name>/ is each member as a finished single run: config.json (its own config),
checkpoints/ (its TrainState at the final step), metrics.jsonl (its columns of the sweep's), results.json and the
`sae` report, so `runs.load_run`, `--eval_only` and `runs.train_or_load` treat it like any other run.
"""

import json
import os

import jax
import matplotlib
import ml_collections

from aejax import build, checkpoint, loop, objectives, runs, sharding, sweep
from aejax import train_step as ts
from aejax.analysis import reports as reports_lib
from aejax.analysis import run_analysis
from aejax.metric_writer import read_metrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MEMBERS = "members"  # <workdir>/members/<name>/
FRONTIER = "sae_frontier.png"
FVU, L0 = "sae/fvu", "sae/l0"  # the `sae` report's keys the table and figure read


def member_dir(workdir: str, name: str) -> str:
    return os.path.join(os.path.abspath(workdir), MEMBERS, name)


def _check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A checkpoint holds the members' swept values: a relaunch with another sweep of the same size would
    silently resume the old one, so it is refused."""
    before = build.stored_config(workdir)
    if before is not None and checkpoint.latest_step(workdir) is not None and before.get("sweep") != config.sweep:
        held = f"a sweep over {before['sweep']!r}" if before.get("sweep") else "a single run (no sweep)"
        raise ValueError(
            f"{workdir} holds {held}; config.sweep={config.sweep!r} differs. Use another --workdir for another "
            "sweep."
        )


def check(config: ml_collections.ConfigDict) -> None:
    """Raises KeyError / ValueError for a bad sweep spec, a swept name the model lacks or a refused mesh."""
    sweep.members(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the sweep in `workdir` (resuming from its checkpoint), splits it into member runs, analyses each.

    Returns:
      The sweep table written to `<workdir>/results.json`: num_members, num_steps, train_time_s,
      examples_per_s (batch rows per second of the stacked step) and member_examples_per_s (S times that), and
      "members": {name: {"hparams": ..., plus the member's results.json}}.

    Raises:
      KeyError / ValueError: for a bad sweep (`sweep.members`), a member the model refuses, or a relaunch of a
        workdir with another sweep, before any compute; loop.NonFiniteLossError naming the member and term.
    """
    ms = sweep.members(config)
    workdir, mesh, train_split, test_split = build.setup_run(config, workdir)
    _check_resumable(config, workdir)
    gs = sweep.groups(ms, train_split.x.shape[1:], lambda c, model: objectives.from_config(c, model, None))
    b = build.build(sweep.template_config(ms), train_split)  # the loader, loop settings, optimizer, init model
    names = [m.name for m in ms]
    tx = sweep.stacked_optimizer(b.tx)
    init_fn = sweep.make_init_fn(b.model, b.tx, ms, train_split.x.shape[1:], mesh)
    before = build.stored_config(workdir)
    try:
        result = loop.run(
            settings=b.settings,
            mesh=mesh,
            objective=sweep.stacked_objective(gs, names),
            tx=tx,
            init_fn=init_fn,
            loader=b.loader,
            workdir=workdir,
            eval_data=(test_split.x, test_split.labels, test_split.mask),
            eval_seed=config.seed,
            meta={"dataset": config.dataset, "members": names},
            on_start=build.record_config(config, workdir, before),
        )
    except checkpoint.IncompatibleCheckpointError as e:
        raise build.incompatible_config_error(e, config, before) from e
    rate = result.examples_per_s
    table = {
        "num_members": len(ms),
        "num_steps": b.settings.num_steps,
        "train_time_s": result.train_time_s,
        "examples_per_s": rate,
        "member_examples_per_s": None if rate is None else rate * len(ms),
    }
    step = int(result.state.step)
    rows = read_metrics(workdir)
    for i, m in enumerate(ms):
        state = sweep.member_state(result.state, i)
        data = (mesh, train_split, test_split)
        _write_member(m, member_dir(workdir, m.name), state, b.loader.state(step), rows, table, data)
    return write_table(config, workdir, ms, table)


def _write_member(m: sweep.Member, d: str, state, data_state, rows: list[dict], table: dict, data) -> None:
    """Member m as a finished run in d: checkpoint, config.json, metrics.jsonl (its columns of the sweep's), then
    its evaluation, results.json and reports (`_analyse`)."""
    step = int(state.step)
    os.makedirs(d, exist_ok=True)
    ckpt = checkpoint.Checkpointer(os.path.join(d, "checkpoints"), max_to_keep=m.config.keep_checkpoints)
    try:
        if ckpt.latest_step() != step:  # a relaunched finished sweep has saved it already
            ckpt.save(step, state, {"step": step, "data": data_state, "train_time_s": table["train_time_s"]})
            ckpt.wait()
    finally:
        ckpt.close()
    if jax.process_index() == 0:
        build.write_config(m.config, d)
        prefix, evals = m.name + "/", "eval/" + m.name + "/"
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            for r in rows:
                own = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)}
                own.update({"eval/" + k[len(evals) :]: v for k, v in r.items() if k.startswith(evals)})
                if own:
                    f.write(json.dumps({"step": r["step"], **own}) + "\n")
    base = {"sweep": os.path.dirname(os.path.dirname(d)), "hparams": m.hparams, **table}
    _analyse(m.config, d, state, data, base)


def _analyse(config: ml_collections.ConfigDict, d: str, state, data, base: dict) -> dict:
    """What `train.reanalyse` does for a run, with the sweep's data (mesh, train_split, test_split) loaded once
    for every member (at LM scale a million stored vectors, not S times): evaluation, reports, results.json =
    `base` updated with "test_<metric>" and the reports' numbers."""
    mesh, train_split, test_split = data
    b = build.build(config, train_split)
    ev = loop.evaluate(
        state, ts.make_eval_step(b.objective.eval_fn, mesh), test_split.x, test_split.labels, mesh,
        config.eval_batch_size, seed=config.seed, mask=test_split.mask,
    )  # fmt: skip
    results = {**base, **ev.means(objectives.TEST_PREFIX), "eval_time_s": round(ev.time_s, 2)}
    results.update(code_dim=int(b.model.n_latents), num_train=len(train_split.x), num_test=len(test_split.x))
    if jax.process_index() == 0:
        variables = jax.device_get({"params": state.params, **state.model_state})
        ctx = reports_lib.RunContext(config, d, b.model, b.likelihood, variables, train_split, test_split, ev)
        results.update(run_analysis.analyse(ctx))
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def write_table(config: ml_collections.ConfigDict, workdir: str, ms, table: dict) -> dict:
    """The sweep's results.json ({name: hparams + the member's results}) and its FVU-L0 frontier figure."""
    table = {**table, "sweep": config.sweep, "members": {}}
    for m in ms:
        with open(os.path.join(member_dir(workdir, m.name), "results.json")) as f:
            table["members"][m.name] = json.load(f)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(table, f, indent=2)
        plot_frontier(
            table["members"], os.path.join(workdir, FRONTIER), title=f"{config.model_name}: {config.sweep}"
        )
    return table


def plot_frontier(members: dict, path: str, *, title: str = "") -> None:
    """Test FVU against test L0 of the members that report both (the `sae` report), labelled by name."""
    pts = [(r[L0], r[FVU], name) for name, r in members.items() if L0 in r and FVU in r]
    fig, ax = plt.subplots(figsize=(5, 4))
    if pts:
        l0, fvu, labels = zip(*sorted(pts), strict=True)
        ax.plot(l0, fvu, marker="o")
        for x, y, label in pts:
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("L0 (active latents per example, test)")
    ax.set_ylabel("FVU (test)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reanalyse(workdir: str, *, reports: str | None = None) -> dict:
    """Re-runs every member's evaluation and reports from its checkpoint (as `--eval_only` on a single run, the
    data read once) and rewrites the sweep table.

    Raises:
      FileNotFoundError: if a member directory or its checkpoint is missing (the sweep never finished).
    """
    config = runs.load_config(workdir)
    ms = sweep.members(config)
    path = os.path.join(workdir, "results.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    mesh = sharding.make_mesh()
    train_split, test_split = build.load_data(ms[0].config)
    for m in ms:
        d = member_dir(workdir, m.name)
        if not os.path.isdir(os.path.join(d, "checkpoints")):
            raise FileNotFoundError(f"{d} holds no checkpoints: the sweep in {workdir} has not finished.")
        c = m.config
        if reports is not None:
            c = ml_collections.ConfigDict(c.to_dict())
            c.analysis.reports = reports
            c.lock()
        b = build.build(c, train_split)
        init_fn = build.make_init_fn(b.model, b.tx, train_split.x.shape[1:], mesh, jax.random.key(c.seed))
        ckpt = checkpoint.Checkpointer(os.path.join(d, "checkpoints"), max_to_keep=c.keep_checkpoints)
        try:
            state, _ = ckpt.restore_or_init(init_fn)
        finally:
            ckpt.close()
        with open(os.path.join(d, "results.json")) as f:
            base = json.load(f)
        _analyse(c, d, state, (mesh, train_split, test_split), base)
    keep = ("num_members", "num_steps", "train_time_s", "examples_per_s", "member_examples_per_s")
    return write_table(config, workdir, ms, {k: old.get(k) for k in keep})
