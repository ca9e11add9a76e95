"""The entry point's catalog and the generated README tables: the rewriter on toy READMEs, the staleness check on a
toy git repository, and the check on this repository's own READMEs (a stale table fails the suite)."""

import importlib.util
import json
import pathlib
import subprocess

import pytest

from experiments import reproduce, tables

ROOT = pathlib.Path(__file__).resolve().parent.parent

README = """# An experiment

Some prose.

<!-- begin generated: results/table.md -->
| old | table |
<!-- end generated -->

More prose.
<!-- begin generated: results/other.md -->
<!-- end generated -->
"""


def test_rewrite_replaces_only_the_bodies_between_markers():
    files = {"results/table.md": "| a | b |\n|---|---|\n| 1 | 2 |\n", "results/other.md": "no newline"}
    new = tables.rewrite(README, files.__getitem__)
    assert new == README.replace("| old | table |\n", files["results/table.md"]).replace(
        "results/other.md -->\n<!-- end", "results/other.md -->\nno newline\n<!-- end"
    )
    assert tables.rewrite(new, files.__getitem__) == new  # idempotent
    assert [b.path for b in tables.blocks(new)] == ["results/table.md", "results/other.md"]
    assert tables.rewrite("no markers\n", files.__getitem__) == "no markers\n"


@pytest.mark.parametrize(
    "text, match",
    [
        ("<!-- begin generated: a.md -->\n| x |\n", "has no '<!-- end generated -->'"),
        ("<!-- begin generated: a.md -->\n<!-- begin generated: b.md -->\n<!-- end generated -->\n", "contains"),
    ],
)
def test_malformed_markers_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        tables.blocks(text)


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git repository with one experiment whose README holds a generated block of its results/table.md."""
    exp = tmp_path / "experiments" / "toy"
    (exp / "results").mkdir(parents=True)
    (exp / "results" / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    (exp / "README.md").write_text("# toy\n<!-- begin generated: results/table.md -->\n<!-- end generated -->\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "code")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    return tmp_path, exp, head.strip()


def test_check_reports_each_kind_of_stale_table(repo):
    root, exp, head = repo
    meta = exp / "results" / "meta.json"
    problems = tables.check(root)
    assert any("differs from it" in p for p in problems) and any("no meta.json" in p for p in problems)
    assert tables.main(["--root", str(root)]) == 1  # rewrites the block; the missing meta.json still fails
    assert "| 1 |" in (exp / "README.md").read_text()
    meta.write_text(json.dumps({"commit": head, "runlocal": False, "name": "toy", "wall_time_s": 75.4}))
    assert [p for p in tables.check(root) if "differs" in p]  # the block's provenance line is now missing
    assert tables.main(["--root", str(root)]) == 0
    assert f"`python -m experiments --only=toy` at commit {head[:7]}" in (exp / "README.md").read_text()
    assert "wall time 1 min 15 s" in (exp / "README.md").read_text()
    assert tables.check(root) == []
    meta.write_text(json.dumps({"commit": "0" * 40, "runlocal": False}))  # e.g. measured on a side branch
    assert any("not an ancestor of HEAD" in p for p in tables.check(root))
    meta.write_text(json.dumps({"commit": head, "runlocal": True}))
    assert any("--runlocal smoke run" in p for p in tables.check(root))
    meta.write_text(json.dumps({"commit": head, "runlocal": False, "uncommitted_code": ["aejax/loop.py"]}))
    assert any("uncommitted code" in p for p in tables.check(root))
    meta.write_text(json.dumps({"commit": head, "runlocal": False}))
    (exp / "results" / "table.md").write_text("| a |\n|---|\n| 2 |\n")  # re-measured, README not regenerated
    assert [p for p in tables.check(root) if "differs" in p]


def test_this_repositorys_generated_tables_are_current():
    assert tables.check(ROOT) == []


def test_every_experiment_and_benchmark_has_an_entry_and_every_command_a_target():
    folders = sorted(p.parent.name for p in (ROOT / "experiments").glob("*/run.py"))
    assert sorted(reproduce.EXPERIMENTS) == folders
    scripts = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert sorted(reproduce.BENCHMARKS) == scripts
    for name, entry in {**reproduce.EXPERIMENTS, **reproduce.BENCHMARKS}.items():
        for cmd in (*entry.full, *entry.runlocal):
            if cmd[0] == "-m":
                assert importlib.util.find_spec(cmd[1]) is not None, name
            else:
                assert (ROOT / cmd[0]).is_file(), name
        assert entry.results and not pathlib.Path(entry.results).is_absolute(), name


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="known: alain_bengio_2014, anomaly_mnist"):
        reproduce.select("anomaly_mnist,nope", False, False)
    assert list(reproduce.select("rifai_2011", False, False)) == ["rifai_2011"]
    assert list(reproduce.select(None, True, False)) == list(reproduce.EXPERIMENTS)


def test_code_state_names_uncommitted_code_but_not_results_files(repo, monkeypatch):
    root, exp, head = repo
    monkeypatch.setattr(reproduce, "ROOT", root)
    (exp / "run.py").write_text("print(1)\n")
    _git(root, "add", "experiments/toy/run.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "run.py")
    assert reproduce.code_state()["uncommitted_code"] == []
    (exp / "run.py").write_text("print(2)\n")  # first porcelain line " M ...": its leading space must survive
    (exp / "results" / "log.txt").write_text("a log\n")
    state = reproduce.code_state()
    assert state["uncommitted_code"] == ["experiments/toy/run.py"]
    assert len(state["commit"]) == 40 and state["commit"] != head


def test_status_lists_every_entry_and_the_total_of_those_with_results(repo):
    text = tables.status(ROOT)
    names = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines()[2:-1]]
    assert names == [*reproduce.EXPERIMENTS, *reproduce.BENCHMARKS]
    root, exp, head = repo  # a repository without the catalog's results folders: nothing re-run, total 0
    assert "| total of the 0 entries with results | | | | 0 s | |" in tables.status(root)


def test_a_block_can_copy_one_section_of_a_results_file():
    text = "## kdd\n\n| a |\n|---|\n\n## oneclass\n| b |\n|---|\n| 1 |\n"
    assert tables.section(text, "oneclass") == "| b |\n|---|\n| 1 |\n"
    assert tables.section(text, "kdd") == "| a |\n|---|\n"
    with pytest.raises(KeyError, match="its sections: kdd, oneclass"):
        tables.section(text, "probe")
