"""`benchmarks.checkout`: which commit a benchmark run measured, checked against real git.

Each test makes a repository of its own with `git init` in a temporary directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.checkout import Checkout, Watch, checkout_of, over_run, recorded
from benchmarks.report import render_markdown


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Bench Test", "-c", "user.email=bench@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit: a source file, an ignored directory, old results."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet")
    (root / "code.py").write_text("x = 1\n")
    (root / ".gitignore").write_text("cache/\n")
    (root / "results").mkdir()
    (root / "results" / "latest.md").write_text("old figures\n")
    git(root, "add", ".")
    git(root, "-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "first")
    return root


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "--short", "HEAD")


def test_a_clean_work_tree_is_heads_commit(repo: Path) -> None:
    checkout = checkout_of(repo)

    assert checkout == Checkout(head(repo), dirty=False)
    assert checkout.describe() == f"commit {head(repo)}"
    assert recorded(checkout) == {"commit": head(repo), "dirty": False}


@pytest.mark.parametrize(
    "change",
    ["modified", "staged", "deleted", "untracked"],
)
def test_any_uncommitted_change_makes_it_dirty(repo: Path, change: str) -> None:
    if change == "modified":
        (repo / "code.py").write_text("x = 2\n")
    elif change == "staged":
        (repo / "code.py").write_text("x = 2\n")
        git(repo, "add", "code.py")
    elif change == "deleted":
        (repo / "code.py").unlink()
    else:
        (repo / "new_module.py").write_text("y = 1\n")

    checkout = checkout_of(repo)

    assert checkout == Checkout(head(repo), dirty=True)
    assert checkout.describe() == f"commit {head(repo)} (+ uncommitted changes)"
    assert recorded(checkout) == {"commit": head(repo), "dirty": True}


def test_ignored_files_and_the_results_directory_do_not_count(repo: Path) -> None:
    (repo / "cache").mkdir()
    (repo / "cache" / "compiled.bin").write_bytes(b"\0")  # ignored by .gitignore
    (repo / "results" / "latest.md").write_text("new figures\n")  # the previous run's
    (repo / "results" / "latest.json").write_text("{}\n")

    assert checkout_of(repo, ignore=[repo / "results"]) == Checkout(head(repo), dirty=False)
    assert checkout_of(repo) == Checkout(head(repo), dirty=True)


def test_an_ignored_path_outside_the_work_tree_is_harmless(repo: Path, tmp_path: Path) -> None:
    (repo / "code.py").write_text("x = 2\n")

    checkout = checkout_of(repo, ignore=[tmp_path / "elsewhere", repo / "results"])

    assert checkout == Checkout(head(repo), dirty=True)


def test_outside_a_repository_or_before_the_first_commit_there_is_no_commit(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")

    assert checkout_of(plain) is None
    assert checkout_of(empty) is None
    assert checkout_of(tmp_path / "missing") is None
    assert recorded(None) == {"commit": None, "dirty": None}


def test_a_change_while_the_run_went_on_makes_the_figures_dirty() -> None:
    clean = Checkout("abc1234", dirty=False)

    assert over_run(clean, clean) == clean
    assert over_run(clean, Checkout("abc1234", dirty=True)) == Checkout("abc1234", dirty=True)
    assert over_run(clean, Checkout("def5678", dirty=False)) == Checkout("abc1234", dirty=True)
    assert over_run(clean, None) == Checkout("abc1234", dirty=True)
    assert over_run(None, clean) is None


def test_the_watch_warns_at_start_and_end_only_when_the_tree_is_dirty(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watch = Watch(repo)
    assert watch.measured() == Checkout(head(repo), dirty=False)
    watch.warn_again()
    assert capsys.readouterr().err == ""

    (repo / "code.py").write_text("x = 2\n")
    watch = Watch(repo)
    started = capsys.readouterr().err
    assert watch.measured() == Checkout(head(repo), dirty=True)
    watch.warn_again()
    ended = capsys.readouterr().err

    for said in (started, ended):
        assert said.startswith("WARNING: the work tree has uncommitted changes")
        assert f"commit {head(repo)} (+ uncommitted changes)" in said


def test_the_watch_says_when_the_tree_changed_during_the_run(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watch = Watch(repo)
    (repo / "code.py").write_text("x = 2\n")

    assert watch.measured() == Checkout(head(repo), dirty=True)
    watch.warn_again()

    said = capsys.readouterr().err
    assert said.startswith("WARNING: the work tree changed while the benchmarks ran")
    assert f"commit {head(repo)} (+ uncommitted changes)" in said


@pytest.mark.parametrize("dirty", [False, True])
def test_the_report_names_the_commit_and_any_uncommitted_changes(dirty: bool) -> None:
    meta = {"machine": {"cpu_count": 2, **recorded(Checkout("abc1234", dirty=dirty))}}

    markdown = render_markdown([], meta)

    if dirty:
        assert "commit abc1234 (+ uncommitted changes)." in markdown
        assert "**Not HEAD's figures**" in markdown
    else:
        assert "commit abc1234." in markdown
        assert "uncommitted" not in markdown and "Not HEAD" not in markdown
