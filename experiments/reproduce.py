"""One entry point for every experiment and benchmark: run them, and keep what they measured with where and when.

  python -m experiments                              # list the experiments and benchmarks
  python -m experiments --only=anomaly_mnist         # one experiment, its full run
  python -m experiments --all                        # every experiment (hours on 2 CPU cores)
  python -m experiments --all --runlocal             # every experiment's seconds-long smoke version
  python -m experiments --benchmarks --runlocal      # every benchmark's smoke version
  python -m experiments --all --benchmarks           # everything: the full reproduction

Each entry runs `python -m <module> --workdir=<workdir> <args>` in a subprocess (so one experiment's JAX state
cannot leak into the next), its output shown and kept in `<workdir>/log.txt`. A full run copies the entry's
declared outputs (tables, figures, json) from the workdir into the entry's results folder
(`experiments/<name>/results/`, `benchmarks/results/<name>/`), beside `meta.json`: the commit (and any
uncommitted code), the date, the machine (cores, Python, jax, platform, load average) and the wall time. The
READMEs' generated tables are copies of those files (`python -m experiments.tables`). A `--runlocal` run writes
its results into its workdir only, never over the committed results, and fails if a declared output is missing:
that is the smoke test CI runs.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Entry(NamedTuple):
    """An experiment or benchmark of the entry point.

    Attributes:
      module: what `python -m` runs.
      args: the arguments of the full run (the one whose results the README shows).
      runlocal: the arguments of the seconds-long smoke run.
      outputs: files the run writes into its workdir that are kept as results (paths relative to the workdir).
      workdir_flag: the module's flag for its output folder.
      results: the results folder, relative to the repository root.
    """

    module: str
    args: tuple[str, ...]
    runlocal: tuple[str, ...]
    outputs: tuple[str, ...]
    workdir_flag: str = "--workdir"
    results: str = ""


def _experiment(name: str, outputs, args=(), runlocal=("--runlocal",), **kw) -> tuple[str, Entry]:
    return name, Entry(f"experiments.{name}.run", tuple(args), tuple(runlocal), tuple(outputs),
                       results=f"experiments/{name}/results", **kw)  # fmt: skip


def _benchmark(name: str, args=(), runlocal=(), outputs=()) -> tuple[str, Entry]:
    return name, Entry(f"benchmarks.{name}", tuple(args), tuple(runlocal), tuple(outputs),
                       results=f"benchmarks/results/{name}")  # fmt: skip


# Every experiment folder with a run.py has an entry (tests/test_reproduce.py checks it). Experiments without a
# --runlocal flag get their smallest arguments instead.
TINY_VAE = ["--steps=20", "--eval_samples=50"]  # eval_samples: a multiple of vae.eval_chunk
EXPERIMENTS = dict(
    [
        _experiment("alain_bengio_2014", ["table.md"], runlocal=["--variant=runlocal"]),
        _experiment("anomaly_mnist", ["table.md", "rows.json"]),
        _experiment("burda_2016", ["table.md", "rows.json"], runlocal=TINY_VAE + ["--ks=1,2"]),
        _experiment("gao_2024", ["table.md", "results.json", "frontier.png", "scaling.png"]),
        _experiment("inpainting_mnist", ["table.md", "rows.json"]),
        _experiment("kavukcuoglu_2008", ["summary.json", "filters_comparison.png"]),
        _experiment("kingma_welling_2014", ["table.md", "rows.json"], runlocal=TINY_VAE + ["--codes=2"]),
        _experiment("makhzani_frey_2014", ["table.md", "results.json", "filters.png"]),
        _experiment("malhotra_2016", ["tables.md", "results.json"], workdir_flag="--out"),
        _experiment("regularized_family", ["table.md"]),
        _experiment("rifai_2011", ["table.md", "results.json"]),
        _experiment(
            "salakhutdinov_hinton_2009",
            ["compression_table.md", "retrieval_tables.md", "summary.json", "compression.png"],
        ),
        _experiment("vincent_2010", ["table.md", "results.json"]),
    ]
)

# Benchmarks print their tables; the printed output (log.txt) is their result.
BENCHMARKS: dict[str, Entry] = {}


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
    return proc.stdout.strip() if proc.returncode == 0 else ""


def code_state() -> dict:
    """The commit of HEAD and the uncommitted code files (Python, configs, requirements), if any."""
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines()]
    code = [p for p in changed if p.endswith((".py", ".txt", ".toml", ".cfg"))]
    return {"commit": _git("rev-parse", "HEAD"), "uncommitted_code": code}


def run_entry(name: str, entry: Entry, *, runlocal: bool, workdir: pathlib.Path, keep: bool = False) -> dict:
    """Runs one entry in a subprocess and writes its results folder; returns its meta.json content.

    A full run reuses what its workdir already holds (the experiments skip finished runs) unless the workdir is
    cleared first; a runlocal run always starts from an empty workdir unless `keep`.

    Raises:
      RuntimeError: the run failed (exit code and the log's last lines) or did not write a declared output.
    """
    if runlocal and not keep and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    args = entry.runlocal if runlocal else entry.args
    cmd = [sys.executable, "-m", entry.module, f"{entry.workdir_flag}={workdir}", *args]
    meta = {"name": name, "command": " ".join(["python", "-m", entry.module, *args]), "runlocal": runlocal,
            **code_state(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine()}  # fmt: skip
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(workdir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    meta["wall_time_s"] = round(time.perf_counter() - start, 1)
    meta["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if code != 0:
        tail = (workdir / "log.txt").read_text()[-2000:]
        raise RuntimeError(f"{name} failed with exit code {code} after {meta['wall_time_s']} s:\n{tail}")
    missing = [o for o in entry.outputs if not (workdir / o).exists()]
    if missing:
        raise RuntimeError(f"{name} finished but did not write {missing} into {workdir}")
    results = workdir / "results" if runlocal else ROOT / entry.results
    results.mkdir(parents=True, exist_ok=True)
    for o in entry.outputs:
        shutil.copy2(workdir / o, results / pathlib.Path(o).name)
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
    args = parser.parse_args(argv)
    try:
        chosen = select(args.only, args.all, args.benchmarks)
    except KeyError as e:
        parser.error(e.args[0])
    if not chosen:
        for kind, catalog in (("experiments", EXPERIMENTS), ("benchmarks", BENCHMARKS)):
            print(f"{kind}:")
            for name, e in catalog.items():
                print(f"  {name:28s} python -m {e.module} {' '.join(e.args)}")
        print("\nrun with --only=NAME[,NAME], --all and/or --benchmarks; --runlocal for the smoke versions")
        return 0
    base = pathlib.Path(args.workdir or ("/tmp/aejax_runlocal" if args.runlocal else "runs"))
    done, failed = [], []
    start = time.perf_counter()
    for name, entry in chosen.items():
        try:
            meta = run_entry(name, entry, runlocal=args.runlocal, workdir=base / name, keep=args.keep)
            done.append((name, meta["wall_time_s"]))
        except RuntimeError as e:
            print(str(e), file=sys.stderr, flush=True)
            failed.append(name)
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
