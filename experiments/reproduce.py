"""One entry point for every experiment and benchmark: run them, and keep what they measured with where and when.

  python -m experiments                              # list the experiments and benchmarks
  python -m experiments --only=anomaly_mnist         # one experiment, its full run
  python -m experiments --all                        # every experiment (hours on 2 CPU cores)
  python -m experiments --all --runlocal             # every experiment's seconds-long smoke version
  python -m experiments --benchmarks --runlocal      # every benchmark's smoke version
  python -m experiments --all --benchmarks --runlocal --jobs=2   # all smoke versions, two at a time (CI)
  python -m experiments --all --benchmarks           # everything: the full reproduction

Each entry runs its commands (`python -m experiments.<name>.run --workdir=<workdir> ...`, `python
benchmarks/<name>.py ...`) in subprocesses, so one run's JAX state cannot leak into the next; their output is
shown and kept in `<workdir>/log.txt`. A full run copies the entry's
declared outputs (tables, figures, json) from the workdir into the entry's results folder
(`experiments/<name>/results/`, `benchmarks/results/<name>/`), beside `meta.json`: the commit (and any
uncommitted code), the date, the machine (cores, Python, jax, platform, load average) and the wall time. The
READMEs' generated tables are copies of those files (`python -m experiments.tables`). A `--runlocal` run writes
its results into its workdir only, never over the committed results, and fails if a declared output is missing:
that is the smoke test CI runs.
"""

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Entry(NamedTuple):
    """An experiment or benchmark of the entry point.

    Attributes:
      full: the commands of the full run (the one whose results the README shows), run in order; each is the
        arguments of `python` (`("-m", "experiments.x.run", ...)` or `("benchmarks/bench_x.py", ...)`), with
        "{workdir}" replaced by the entry's workdir.
      runlocal: the commands of the seconds-long smoke run.
      outputs: files the run writes into its workdir that are kept as results (relative to the workdir); every
        command's printed output is kept too, as log.txt.
      results: the results folder, relative to the repository root.
    """

    full: tuple[tuple[str, ...], ...]
    runlocal: tuple[tuple[str, ...], ...]
    outputs: tuple[str, ...]
    results: str


def _experiment(name: str, outputs: str, full: str = "", runlocal: str = "--runlocal", workdir_flag="--workdir",
                extra: tuple[tuple[str, str], ...] = ()):  # fmt: skip
    """An experiment's entry: `python -m experiments.<name>.run --workdir={workdir}` plus the full / runlocal
    arguments (shell words); `outputs` are space-separated file names of its workdir. `extra` adds full-run
    commands as (subfolder, arguments): each runs with --workdir={workdir}/<subfolder>, and its outputs are kept
    as <subfolder>_<file> (e.g. a second table at another budget)."""
    module = ("-m", f"experiments.{name}.run")
    cmd = (*module, f"{workdir_flag}={{workdir}}")
    full_cmds = [(*cmd, *shlex.split(full))]
    full_cmds += [(*module, f"{workdir_flag}={{workdir}}/{sub}", *shlex.split(args)) for sub, args in extra]
    outs = tuple(outputs.split()) + tuple(f"{sub}/{o}" for sub, _ in extra for o in outputs.split())
    return name, Entry(tuple(full_cmds), ((*cmd, *shlex.split(runlocal)),), outs, f"experiments/{name}/results")


def _benchmark(name: str, full=("",), runlocal=("",), before=(), before_runlocal=()):
    """A benchmark's entry: `python benchmarks/<name>.py` once per argument string of `full` / `runlocal`, after
    the `before` commands (argument strings of `python`)."""
    script = f"benchmarks/{name}.py"

    def commands(before, runs):
        return (*(tuple(shlex.split(b)) for b in before), *((script, *shlex.split(a)) for a in runs))

    return name, Entry(
        commands(before, full), commands(before_runlocal, runlocal), (), f"benchmarks/results/{name}"
    )


# Every experiment folder with a run.py has an entry (tests/test_reproduce.py checks it). Experiments without a
# --runlocal flag get their smallest arguments instead.
TINY_VAE = "--steps=20 --eval_samples=50"  # eval_samples: a multiple of vae.eval_chunk
EXPERIMENTS = dict(
    [
        _experiment("alain_bengio_2014", "table.md", full="--variant=", runlocal="--variant=runlocal"),
        _experiment("anomaly_mnist", "table.md rows.json"),
        _experiment("burda_2016", "table.md rows.json", runlocal=f"{TINY_VAE} --ks=1,2"),
        _experiment("gao_2024", "table.md results.json frontier.png scaling.png"),
        _experiment("inpainting_mnist", "table.md rows.json"),
        _experiment("kavukcuoglu_2008", "table.md summary.json filters_comparison.png"),
        _experiment(
            "kingma_welling_2014",
            "table.md rows.json",
            runlocal=f"{TINY_VAE} --codes=2",
            extra=(("long", "--codes=20,50 --steps=6000"),),
        ),
        _experiment("makhzani_frey_2014", "table.md results.json filters.png"),
        _experiment("main_models", "table.md main.md conv.md vae.md stacked.md results.json"),
        _experiment("malhotra_2016", "tables.md results.json", workdir_flag="--out"),
        _experiment("regularized_family", "table.md", full="--all"),
        _experiment("rifai_2011", "table.md results.json"),
        _experiment(
            "salakhutdinov_hinton_2009",
            "hashing_tables.md compression_table.md summary.json compression.png",
            full="--compression",
            runlocal="--runlocal --compression",
        ),
        _experiment("vincent_2010", "table.md results.json"),
    ]
)

# Benchmarks print their tables: the printed output (log.txt) is their result. The full arguments are those of
# the README's tables; the runlocal ones only check that each still runs.
MAIN_RUN = "launch.py --config=configs/mnist_ae.py{variant} --workdir={{workdir}}/run"
STORE8G, STORE = "--store={workdir}/store8g", "--store={workdir}/store"
BENCHMARKS = dict(
    [
        _benchmark(
            "bench_activations",
            ["--workdir={workdir}/run"],
            ["--workdir={workdir}/run --repeats=1 --tile=1"],
            before=[MAIN_RUN.format(variant="")],
            before_runlocal=[MAIN_RUN.format(variant=":runlocal")],
        ),
        _benchmark("bench_contractive", runlocal=["--steps 1 --budget 0 --batch 8 --side 8 --width 0.1"]),
        _benchmark("bench_conv_forms", runlocal=["--rounds 1 --batch 8 --steps 2"]),
        _benchmark("bench_families", runlocal=["--only mlp --rounds 1 --scale 0.02 --log_every 2 --warmup 0"]),
        _benchmark("bench_inference", runlocal=["--batch 8 --atoms 16 --size 4 --max-steps 20 --gap 1e-2"]),
        _benchmark(
            "bench_model_parallel",
            ["", "--time --widths 16384 --rounds 5"],
            ["--devices 2 --widths 64 --d 16 --batch 16 --k 4 --time --rounds 1 --steps 1 --hlo"],
        ),
        _benchmark("bench_pipeline", ["--data_dir={workdir}/tfds"], ["--data_dir={workdir}/tfds"]),
        _benchmark(
            "bench_psd", ["--workdir={workdir}/psd"], ["--workdir={workdir}/psd --variant=runlocal --max_steps=20"]
        ),
        _benchmark(
            "bench_sae",
            runlocal=[
                "--d 16 --expansion 4 --k 4 --aux_k 16 --batch 64 --n_train 1024 --rounds 1 --steps 20 "
                "--hand_steps 5 --only 'loop auto,hand'"
            ],
        ),
        _benchmark(
            "bench_sae_select", runlocal=["--batch 64 --n 256 --d 16 --k 4 --aux_k 16 --rounds 1 --reps 1"]
        ),
        _benchmark("bench_scan_unroll", runlocal=["--k 2 --unrolls 1,2 --rounds 1 --models conv1d"]),
        _benchmark(
            "bench_steps_per_call",
            ["--data_dir={workdir}/tfds"],
            ["--models KL-sparse --ks 1,2 --scale 0.001 --rounds 1 --data_dir={workdir}/tfds"],
        ),
        _benchmark(
            "bench_streaming",
            [
                "write --out={workdir}/store8g --rows=16777216",
                f"rss {STORE8G}",
                f"reads {STORE8G} --rounds=3",
                "write --out={workdir}/store --rows=1048576",
                f"speed {STORE} --rounds=3 --steps=128",
                f"kill {STORE} --steps=128",
            ],
            [
                "write --out={workdir}/store --rows=4096 --test_rows=1024",
                f"speed {STORE} --variant=store,runlocal --rounds=1 --steps=10 --workdir={{workdir}}/w",
            ],
        ),
        _benchmark(
            "bench_sweep",
            ["--launch_steps 200"],
            ["--sizes small --rounds 1 --calls 1 --steps_per_call 2 --spec 'k=8,16;seed=0'"],
        ),
        _benchmark("bench_train", runlocal=["--batches 16 --chunk 2 --rounds 1 --layers 32,16,8 --log_every 5"]),
    ]
)


def machine() -> dict:
    """Where a result was measured: cores, Python, jax version, platform and the 1/5/15-minute load average."""
    try:
        jax_version = importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        jax_version = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax_version,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else ""  # porcelain lines start with a space


def code_state() -> dict:
    """The commit of HEAD and the uncommitted code files (Python, requirements, project config), if any; the
    results folders' own files (log.txt, tables) are not code."""
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines()]
    code_suffixes = (".py", "requirements.txt", ".toml", ".cfg")
    code = [p for p in changed if p.endswith(code_suffixes) and "/results/" not in p]
    return {"commit": _git("rev-parse", "HEAD"), "uncommitted_code": code}


def run_entry(
    name: str, entry: Entry, *, runlocal: bool, workdir: pathlib.Path, keep: bool = False, echo: bool = True
) -> dict:
    """Runs one entry's commands in subprocesses and writes its results folder; returns its meta.json content.

    A full run reuses what its workdir already holds (the experiments skip finished runs); a runlocal run starts
    from an empty workdir unless `keep`.

    Raises:
      RuntimeError: a command failed (exit code and the log's last lines) or a declared output is missing.
    """
    if runlocal and not keep and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    commands = [[a.format(workdir=workdir) for a in c] for c in (entry.runlocal if runlocal else entry.full)]
    meta = {"name": name, "commands": [" ".join(["python", *c]) for c in commands], "runlocal": runlocal,
            **code_state(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine()}  # fmt: skip
    start = time.perf_counter()
    with open(workdir / "log.txt", "w") as log:
        for c in commands:
            print(f"\n=== {name}: python {' '.join(c)}", flush=True)  # in parallel runs, one line per command
            log.write(f"$ python {' '.join(c)}\n")
            out = subprocess.PIPE
            proc = subprocess.Popen(
                [sys.executable, *c], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True
            )
            for line in proc.stdout:
                if echo:
                    sys.stdout.write(line)
                log.write(line)
            code = proc.wait()
            if code != 0:
                log.flush()
                tail = (workdir / "log.txt").read_text()[-2000:]
                secs = time.perf_counter() - start
                raise RuntimeError(f"{name} failed with exit code {code} after {secs:.0f} s:\n{tail}")
    meta["wall_time_s"] = round(time.perf_counter() - start, 1)
    meta["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    # a runlocal run has only the first command: outputs in subfolders belong to the full run's extra commands
    expected = [o for o in entry.outputs if not (runlocal and "/" in o)]
    missing = [o for o in expected if not (workdir / o).exists()]
    if missing:
        raise RuntimeError(f"{name} finished but did not write {missing} into {workdir}")
    results = workdir / "results" if runlocal else ROOT / entry.results
    results.mkdir(parents=True, exist_ok=True)
    for o in expected:
        shutil.copy2(workdir / o, results / o.replace("/", "_"))
    shutil.copy2(workdir / "log.txt", results / "log.txt")
    (results / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def select(only: str | None, all_: bool, benchmarks: bool) -> dict[str, Entry]:
    """The entries to run, in catalog order.

    Raises:
      KeyError: an unknown name in `only`; the message lists the known ones.
    """
    catalog = {**EXPERIMENTS, **BENCHMARKS}
    if only:
        names = [n for n in only.split(",") if n]
        unknown = [n for n in names if n not in catalog]
        if unknown:
            raise KeyError(f"unknown experiments/benchmarks {unknown}; known: {', '.join(catalog)}")
        return {n: catalog[n] for n in names}
    chosen = dict(EXPERIMENTS) if all_ else {}
    if benchmarks:
        chosen.update(BENCHMARKS)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated names (see the list without flags)")
    parser.add_argument("--all", action="store_true", help="every experiment")
    parser.add_argument("--benchmarks", action="store_true", help="every benchmark")
    parser.add_argument("--runlocal", action="store_true", help="the seconds-long smoke version of each")
    parser.add_argument("--workdir", default=None, help="where the runs go (default runs/<name>; with --runlocal "
                        "/tmp/aejax_runlocal/<name>)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="--runlocal: reuse the workdir instead of clearing it")
    parser.add_argument("--jobs", type=int, default=1, help="entries run at once (their output goes to each "
                        "one's log.txt only); for smoke runs: full runs' times compare only at 1")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        chosen = select(args.only, args.all, args.benchmarks)
    except KeyError as e:
        parser.error(e.args[0])
    if not chosen:
        for kind, catalog in (("experiments", EXPERIMENTS), ("benchmarks", BENCHMARKS)):
            print(f"{kind}:")
            for name, e in catalog.items():
                print(f"  {name:28s} " + "; ".join("python " + " ".join(c) for c in e.full))
        print("\nrun with --only=NAME[,NAME], --all and/or --benchmarks; --runlocal for the smoke versions")
        return 0
    base = pathlib.Path(args.workdir or ("/tmp/aejax_runlocal" if args.runlocal else "runs"))
    done, failed = [], []
    start = time.perf_counter()

    def run(name: str) -> None:
        try:
            meta = run_entry(name, chosen[name], runlocal=args.runlocal, workdir=base / name, keep=args.keep,
                             echo=args.jobs == 1)  # fmt: skip
            done.append((name, meta["wall_time_s"]))
            if args.jobs > 1:
                print(f"--- {name} passed in {meta['wall_time_s']} s", flush=True)
        except RuntimeError as e:
            print(str(e), file=sys.stderr, flush=True)
            failed.append(name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        list(pool.map(run, chosen))  # the threads only wait on subprocesses
    done.sort(key=lambda d: list(chosen).index(d[0]))
    total = time.perf_counter() - start
    print("\n| entry | wall time (s) |\n|---|---|")
    for name, secs in done:
        print(f"| {name} | {secs} |")
    print(f"| total | {total:.1f} |")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
