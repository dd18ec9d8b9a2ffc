"""The hypothesis journal, ``report/journal.md``: why each sweep was run and what it showed.

Entries use jrnl's layout (``[2026-11-28 14:32] title`` then the body), so the file reads
as markdown and jrnl can import it. The file is only ever appended to, each entry with one
``write`` on an ``O_APPEND`` descriptor followed by ``fsync``: a crash can at worst cut the
newest entry short, never touch the entries before it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ecgjax import paths

HEADER = "# Hypothesis journal\n\nOne entry per hypothesis, sweep result, reflection or note.\n"
_STAMP = "%Y-%m-%d %H:%M"


class HypothesisRequired(RuntimeError):
    """A sweep was started without a hypothesis and no terminal to ask for one."""


def journal_path(smoke: bool = False) -> Path:
    """``report/journal.md``; smoke sweeps (``:smoke`` configs, seconds on a CPU, no finding)
    go to ``report/journal-smoke.md``, which git ignores, so they never mix with real ones."""
    return paths.report_dir() / ("journal-smoke.md" if smoke else "journal.md")


def format_entry(title: str, body: str = "", when: float | None = None) -> str:
    """One jrnl-style entry, ending in a blank line."""
    stamp = time.strftime(_STAMP, time.localtime(time.time() if when is None else when))
    title = " ".join(title.split())
    text = f"[{stamp}] {title}\n"
    if body.strip():
        text += body.rstrip() + "\n"
    return text + "\n"


def append(entry: str, path: Path | None = None) -> Path:
    """Append one entry with a single write and fsync (creating the file with its header)."""
    path = path or journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            entry = HEADER + "\n" + entry
        data = entry.encode()
        written = os.write(fd, data)
        if written != len(data):  # a short write on a full disk; say so rather than hide it
            raise OSError(f"{path}: only {written} of {len(data)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read(path: Path | None = None) -> str:
    path = path or journal_path()
    return path.read_text() if path.is_file() else ""


def require_hypothesis(
    hypothesis: str | None,
    *,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] = input,
) -> str:
    """Return the stated hypothesis, asking for one on a terminal.

    Raises:
        HypothesisRequired: none was given and stdin is not a terminal (a batch job, CI).
    """
    if hypothesis and hypothesis.strip():
        return hypothesis.strip()
    stdin = stdin or sys.stdin
    if stdin is not None and stdin.isatty():
        while True:
            answer = ask("Hypothesis for this sweep (what do you expect, and why?): ").strip()
            if answer:
                return answer
    raise HypothesisRequired(
        'every sweep needs a hypothesis: pass --hypothesis "..." (what you expect and why); '
        "it is written to report/journal.md and tagged on the MLflow parent run. "
        "Nothing was started."
    )


def add_hypothesis(
    sweep_id: str,
    hypothesis: str,
    config_file: str,
    details: dict[str, str],
    *,
    smoke: bool = False,
) -> Path:
    lines = [f"- sweep: `{sweep_id}`", f"- config: `{config_file}`"]
    lines += [f"- {k}: {v}" for k, v in details.items()]
    entry = format_entry(f"Hypothesis ({sweep_id}): {hypothesis}", "\n".join(lines))
    return append(entry, journal_path(smoke))


def add_result(sweep_id: str, lines: list[str], *, smoke: bool = False) -> Path:
    entry = format_entry(f"Result ({sweep_id})", "\n".join(f"- {ln}" for ln in lines))
    return append(entry, journal_path(smoke))


def add_reflection(sweep_id: str, text: str, *, smoke: bool = False) -> Path:
    return append(format_entry(f"Reflection ({sweep_id})", text.strip()), journal_path(smoke))


def add_note(text: str) -> Path:
    text = text.strip()
    title, _, body = text.partition("\n")
    return append(format_entry(title, body))


def prompt_reflection(
    sweep_id: str,
    *,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] = input,
    smoke: bool = False,
) -> str | None:
    """Ask for a reflection on a terminal (empty answer skips); record it if given."""
    stdin = stdin or sys.stdin
    if stdin is None or not stdin.isatty():
        return None
    try:
        text = ask("Reflection on this result (enter to skip; scripts/journal.py reflect later): ")
    except EOFError:
        return None
    if text.strip():
        add_reflection(sweep_id, text, smoke=smoke)
        return text.strip()
    return None


def entries_for(sweep_id: str, path: Path | None = None) -> list[str]:
    """The entries that mention ``sweep_id`` in their title (for tests and ``show``)."""
    blocks = re.split(r"\n(?=\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] )", read(path))
    return [b.strip() for b in blocks if b.startswith("[") and f"({sweep_id})" in b.splitlines()[0]]
