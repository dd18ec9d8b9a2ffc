"""A trial's own record of what it reported, so a restarted trial never trains twice.

Ray Tune restarts a trial from the last checkpoint its driver recorded. After a killed driver
that can be older than what the trial had done: its last epochs, or all of it when the trial
had finished (Tune snapshots its state every couple of seconds, the kill comes in between).
PBT can also restart a trial from its own final checkpoint after the last epoch.

The trial folder therefore keeps, beside its Orbax ``latest/`` and ``best/``:

    reports.jsonl   every result reported to Tune, one JSON line per epoch (fsync'd)
    done.json       written when the trial's training returned (all saves on disk)

A restarted trial sends the reports it had recorded past its Tune checkpoint again instead
of training them (the MLflow callback skips epochs it already holds): all of them when
``done.json`` exists, else those up to the newest complete state in its folder, from which
it trains on. Only an epoch in flight at the kill is trained again, and nothing is saved
twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ecgjax.training.checkpoint import write_json_atomic

REPORTS = "reports.jsonl"
DONE = "done.json"


def record(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Append one epoch's reported metrics (one write + fsync, as the journal does)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(metrics, default=float) + "\n").encode()
    fd = os.open(run_dir / REPORTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def reports(run_dir: Path) -> list[dict[str, Any]]:
    """The recorded reports in order, each with its ``epoch`` (a torn last line is ignored)."""
    path = run_dir / REPORTS
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def finish(run_dir: Path, epoch: int) -> None:
    """Mark the trial's training as returned after ``epoch`` (its checkpoints are final)."""
    write_json_atomic(run_dir / DONE, {"epoch": int(epoch)})


def finished_epoch(run_dir: Path) -> int | None:
    """The last epoch of a trial whose training returned, if its record is complete."""
    try:
        epoch = int(json.loads((run_dir / DONE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not any(r.get("epoch") == epoch for r in reports(run_dir)):
        return None
    return epoch if (run_dir / "latest" / str(epoch)).is_dir() else None


def saved_epoch(run_dir: Path) -> int:
    """The newest epoch whose state the trial folder holds complete: ``latest/<epoch>`` and
    the ``best/`` step its report names (Orbax renames a step into place when it is whole)."""
    latest = run_dir / "latest"
    steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.is_dir() else []
    if not steps:
        return 0
    epoch = max(steps)
    report = next((r for r in reports(run_dir) if int(r["epoch"]) == epoch), None)
    if report is None or not (run_dir / "best" / str(int(report["best_epoch"]))).is_dir():
        return 0
    return epoch


def plan(run_dir: Path, restored_epoch: int) -> tuple[list[dict[str, Any]], int, bool]:
    """What a trial restarted from its own Tune checkpoint at ``restored_epoch`` does first.

    Returns ``(reports, epoch, finished)``: the recorded reports to send again instead of
    training, the epoch whose state in the trial folder training continues from (or
    ``restored_epoch``: from the Tune checkpoint), and whether the trial had finished.
    Restarted at its last epoch (PBT after the final result), a finished trial sends that
    last report again, so Tune keeps its row.
    """
    done = finished_epoch(run_dir)
    epoch = done if done is not None else saved_epoch(run_dir)
    if epoch <= restored_epoch and done is None:
        return [], restored_epoch, False
    kept = [r for r in reports(run_dir) if int(r["epoch"]) <= epoch]
    todo = [r for r in kept if int(r["epoch"]) > restored_epoch] or kept[-1:]
    return todo, epoch, done is not None


def rewind(run_dir: Path, epoch: int) -> None:
    """Forget everything past ``epoch`` (0: the whole trial) before training resumes there.

    Orbax refuses to save a step twice, and the record must not hold epochs twice.
    """
    (run_dir / DONE).unlink(missing_ok=True)
    for which in ("latest", "best"):
        folder = run_dir / which
        if epoch == 0:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for step in folder.iterdir() if folder.is_dir() else []:
            newer = step.name.isdigit() and int(step.name) > epoch
            if step.is_dir() and (newer or "orbax-checkpoint-tmp" in step.name):
                shutil.rmtree(step)  # and a save the kill cut short
    kept = [r for r in reports(run_dir) if int(r.get("epoch", 0)) <= epoch]
    path = run_dir / REPORTS
    if kept:
        tmp = run_dir / f".{REPORTS}.tmp"
        tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in kept))
        os.replace(tmp, path)
    else:
        path.unlink(missing_ok=True)
