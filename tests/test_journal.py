"""The hypothesis journal: append-only entries, jrnl timestamps, the hypothesis requirement."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecgjax import paths
from ecgjax.tuning import journal


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_entries_are_appended_with_jrnl_timestamps(project: Path) -> None:
    journal.add_hypothesis(
        "sweep-a", "weighted loss lifts S recall", "configs/asha_cnn.py", {"budget": "tiny"}
    )
    first = journal.read()
    journal.add_result("sweep-a", ["best trial t1: val/macro_recall 0.9000"])
    journal.add_reflection("sweep-a", "it did, at some N precision")
    journal.add_note("free note\nwith a body")
    text = journal.read()
    assert text.startswith(first)  # earlier bytes untouched
    assert text.startswith("# Hypothesis journal")
    stamps = re.findall(r"^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] (.*)$", text, flags=re.M)
    assert stamps == [
        "Hypothesis (sweep-a): weighted loss lifts S recall",
        "Result (sweep-a)",
        "Reflection (sweep-a)",
        "free note",
    ]
    assert [e.splitlines()[0][19:] for e in journal.entries_for("sweep-a")] == stamps[:3]
    assert journal.journal_path() == project / "report" / "journal.md"


def test_append_keeps_a_damaged_tail_and_never_rewrites(project: Path) -> None:
    path = journal.add_note("first")
    with path.open("a") as f:
        f.write("[2026-01-01 00:00] cut off by a cra")  # a crash mid-entry
    before = path.read_bytes()
    journal.add_note("second")
    assert path.read_bytes().startswith(before)


def test_hypothesis_required_without_a_terminal() -> None:
    with pytest.raises(journal.HypothesisRequired, match="--hypothesis"):
        journal.require_hypothesis(None, stdin=io.StringIO())
    with pytest.raises(journal.HypothesisRequired):
        journal.require_hypothesis("   ", stdin=io.StringIO())
    assert journal.require_hypothesis(" wider helps ", stdin=io.StringIO()) == "wider helps"


def test_hypothesis_and_reflection_are_asked_on_a_terminal(project: Path) -> None:
    answers = iter(["", "deeper nets help V"])
    got = journal.require_hypothesis(None, stdin=FakeTTY(), ask=lambda _: next(answers))
    assert got == "deeper nets help V"
    assert journal.prompt_reflection("s1", stdin=io.StringIO()) is None  # no terminal: no prompt
    assert journal.prompt_reflection("s1", stdin=FakeTTY(), ask=lambda _: "") is None
    assert (
        journal.prompt_reflection("s1", stdin=FakeTTY(), ask=lambda _: "it did not") == "it did not"
    )
    assert "it did not" in journal.entries_for("s1")[0]


def test_journal_script_adds_reflects_and_shows(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scripts/journal.py", *args],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("add", "S beats are hard").returncode == 0
    assert run("reflect", "sweep-b", "weighting helped").returncode == 0
    shown = run("show", "sweep-b")
    assert shown.returncode == 0 and "Reflection (sweep-b)" in shown.stdout
    assert "S beats are hard" in run("show").stdout
    bad = run("reflect", "only-an-id")
    assert bad.returncode != 0 and "usage" in bad.stderr
