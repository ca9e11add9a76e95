"""Generated tables in the READMEs: the text between two markers is a copy of a results file, and a check that
no copy is stale.

A README marks a generated block with the results file it copies, relative to the README's folder (a
`#heading` suffix copies only the file's `## heading` section):

    <!-- begin generated: results/table.md -->
    | run | error |          <- rewritten by `python -m experiments.tables` from results/table.md
    |---|---|
    <!-- end generated -->

The copy ends with a line saying where the numbers come from, read from the `meta.json` beside the file: the
command that reproduces them, the commit, date, machine and wall time.

`experiments/STATUS.md` (a block of the top-level README) lists every experiment and benchmark with the commit,
date and wall time of its results, from their `meta.json` files; `python -m experiments.tables` rewrites it.

`python -m experiments.tables` rewrites every block of every README (the top-level one, experiments/*/ and
benchmarks/) from its file; `python -m experiments.tables --check` only reports. `check(root)` is what the test
suite runs: a block that differs from its file, a file that does not exist, or a results folder whose `meta.json`
(written by `python -m experiments`) is missing, comes from a `--runlocal` smoke run or from uncommitted code, or
names a commit that is not an ancestor of HEAD, is a problem. (An ancestor commit can be old: the rule catches
tables measured on a side branch or a rewritten history; the `meta.json` beside each table says when and where.)
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

BEGIN = re.compile(r"^<!-- begin generated: (?P<path>[^\n]+?) -->\n", re.MULTILINE)  # a #heading may have spaces
END = "<!-- end generated -->\n"
META = "meta.json"


class Block:
    """A generated block of a README: `path` is the results file, `start` / `stop` the body's character span."""

    def __init__(self, path: str, start: int, stop: int):
        self.path, self.start, self.stop = path, start, stop


def blocks(text: str, *, name: str = "README") -> list[Block]:
    """The generated blocks of `text`, in order.

    Raises:
      ValueError: a begin marker without its end marker, or blocks that nest.
    """
    found = []
    for m in BEGIN.finditer(text):
        stop = text.find(END, m.end())
        if stop < 0:
            raise ValueError(f"{name}: '{m.group(0).strip()}' has no '{END.strip()}' after it")
        nested = BEGIN.search(text, m.end(), stop)
        if nested:
            raise ValueError(f"{name}: generated block for {m.group('path')} contains another begin marker")
        found.append(Block(m.group("path"), m.end(), stop))
    return found


def _body(content: str) -> str:
    return content if content.endswith("\n") or not content else content + "\n"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def provenance(meta: dict) -> str:
    """One line on where a results file was measured, from its `meta.json` (written by `python -m experiments`)."""
    m = meta.get("machine", {})
    load = m.get("load_average") or [None]
    parts = [f"commit {meta.get('commit', '?')[:7]}", (meta.get("date") or "?")[:10]]
    system = m.get("platform", "?").split("-")[0]
    python, jax = m.get("python", "?"), m.get("jax", "?")
    parts.append(f"{m.get('cores', '?')} CPU cores, {system}, Python {python}, jax {jax}")
    parts.append(f"load average {load[0]} at the start")
    if "wall_time_s" in meta:
        parts.append(f"wall time {_duration(meta['wall_time_s'])}")
    name = meta.get("name", "?")
    return f"*Measured by `python -m experiments --only={name}` at {'; '.join(parts)}.*\n"


def section(text: str, heading: str) -> str:
    """The part of a results file under its `## <heading>` line, up to the next `## ` line (heading excluded).

    Raises:
      KeyError: no such heading; the message lists the file's headings.
    """
    parts = re.split(r"^## (.+)\n", text, flags=re.MULTILINE)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    if heading not in found:
        raise KeyError(f"no '## {heading}' in the results file; its sections: {', '.join(found) or 'none'}")
    return found[heading].strip("\n") + "\n"


def generated(file: pathlib.Path, heading: str = "") -> str:
    """A generated block's body: the results file (or its `## <heading>` section), then its provenance line if a
    `meta.json` is beside it."""
    text = file.read_text()
    body = _body(section(text, heading) if heading else text)
    meta = file.parent / META
    return body + "\n" + provenance(json.loads(meta.read_text())) if meta.is_file() else body


def _target(folder: pathlib.Path, path: str) -> tuple[pathlib.Path, str]:
    """A marker's path `results/tables.md#oneclass` -> (the file, the section heading or "")."""
    name, _, heading = path.partition("#")
    return folder / name, heading


def rewrite(text: str, read, *, name: str = "README") -> str:
    """`text` with the body of every generated block replaced by `read(path)` (a final newline added if absent).

    Args:
      text: the README's text.
      read: path (as written in the marker) -> the results file's text, or None to keep the block unchanged.
    """
    out, pos = [], 0
    for b in blocks(text, name=name):
        new = read(b.path)  # None: keep the block as it is (its file is missing; check() reports it)
        out += [text[pos : b.start], text[b.start : b.stop] if new is None else _body(new)]
        pos = b.stop
    return "".join(out) + text[pos:]


STATUS = "experiments/STATUS.md"  # derived from every results folder's meta.json, so it has none of its own


def status(root: pathlib.Path) -> str:
    """The reproduction status of every catalog entry: where its results are, the commit, date, wall time and
    load they were measured at, or that it has not been run through `python -m experiments` yet; and the total."""
    from experiments import reproduce  # the catalog (imported here: reproduce's subprocesses need no tables)

    rows = [
        "| entry | results | commit | date | wall time | load average at the start |",
        "|---|---|---|---|---|---|",
    ]
    total, count = 0.0, 0
    for name, entry in {**reproduce.EXPERIMENTS, **reproduce.BENCHMARKS}.items():
        meta = root / entry.results / META
        if not meta.is_file():
            rows.append(f"| {name} | not run through `python -m experiments` yet | | | | |")
            continue
        m = json.loads(meta.read_text())
        total, count = total + m["wall_time_s"], count + 1
        rows.append(f"| {name} | [`{entry.results}/`]({entry.results}/) | {m['commit'][:7]} | {m['date'][:10]} | "
                    f"{_duration(m['wall_time_s'])} | {m['machine']['load_average'][0]} |")  # fmt: skip
    rows.append(f"| total of the {count} entries with results | | | | {_duration(total)} | |")
    return "\n".join(rows) + "\n"


def readmes(root: pathlib.Path) -> list[pathlib.Path]:
    """The READMEs that may hold generated blocks: the top-level one, each experiment's and the benchmarks'."""
    found = [root / "README.md", root / "benchmarks" / "README.md", *sorted(root.glob("experiments/*/README.md"))]
    return [p for p in found if p.is_file()]


def _is_ancestor(root: pathlib.Path, commit: str) -> bool:
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=root, capture_output=True)
    return proc.returncode == 0


def check(root: pathlib.Path) -> list[str]:
    """Every problem with the generated blocks under `root` (empty when all are current): see the module doc."""
    problems, metas = [], {}
    for readme in readmes(root):
        text = readme.read_text()
        rel = readme.relative_to(root)
        try:
            found = blocks(text, name=str(rel))
        except ValueError as e:
            problems.append(str(e))
            continue
        for b in found:
            file, heading = _target(readme.parent, b.path)
            if not file.is_file():
                problems.append(f"{rel}: generated block names {b.path}, which does not exist")
                continue
            try:
                body = _body(generated(file, heading))
            except KeyError as e:
                problems.append(f"{rel}: {b.path}: {e.args[0]}")
                continue
            if text[b.start : b.stop] != body:
                problems.append(f"{rel}: the block of {b.path} differs from it (python -m experiments.tables)")
            if file.resolve() == (root / STATUS).resolve():
                if file.read_text() != status(root):
                    problems.append(
                        f"{STATUS} is not the status of the results folders (python -m experiments.tables)"
                    )
                continue
            metas.setdefault(file.parent / META, []).append(f"{rel} ({b.path})")
    for meta, users in metas.items():
        where = ", ".join(users)
        if not meta.is_file():
            problems.append(f"{where}: no {META} beside the results file (write it with python -m experiments)")
            continue
        info = json.loads(meta.read_text())
        if info.get("runlocal"):
            problems.append(f"{where}: {meta.relative_to(root)} is from a --runlocal smoke run")
        if info.get("uncommitted_code"):
            problems.append(f"{where}: measured with uncommitted code {info['uncommitted_code']}")
        commit = info.get("commit") or ""
        if not commit or not _is_ancestor(root, commit):
            problems.append(f"{where}: measured at {commit or 'an unknown commit'}, not an ancestor of HEAD")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks, rewrite nothing")
    parser.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    root = pathlib.Path(args.root)
    if not args.check:
        if (root / STATUS).parent.is_dir() and (root / "experiments" / "reproduce.py").is_file():
            (root / STATUS).write_text(status(root))
        for readme in readmes(root):
            text = readme.read_text()

            def read(path, folder=readme.parent):
                file, heading = _target(folder, path)
                return generated(file, heading) if file.is_file() else None

            new = rewrite(text, read, name=str(readme.relative_to(root)))
            if new != text:
                readme.write_text(new)
                print(f"rewrote {readme.relative_to(root)}")
    problems = check(root)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
