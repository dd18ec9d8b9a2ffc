"""A trial's own record of what it reported, so a restarted trial never trains twice.

Ray Tune restarts a trial from the last checkpoint its driver recorded. After a killed driver
that can be older than what the trial had done: its last epochs, or all of it when the trial
had finished (Tune snapshots its state every couple of seconds, the kill comes in between).
PBT can also restart a trial from its own final checkpoint after the last epoch.

The trial folder therefore keeps, beside its Orbax ``latest/`` and ``best/``:

    reports.jsonl   every result reported to Tune, one JSON line per epoch (fsync'd)
    done.json       written when the trial's training returned (all saves on disk)

A restarted trial whose ``done.json`` exists replays its remaining reports instead of
training (the MLflow callback skips epochs it already holds); one that had not finished
drops what lies past its Tune checkpoint and trains on from there, so nothing is saved twice.
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


def to_replay(run_dir: Path, restored_epoch: int) -> list[dict[str, Any]] | None:
    """The reports a restarted trial sends instead of training, or None when it must train.

    A finished trial sends the epochs after ``restored_epoch``; restarted at its last epoch
    (PBT after the final result) it sends that last report again, so Tune keeps its row.
    """
    epoch = finished_epoch(run_dir)
    if epoch is None:
        return None
    done = [r for r in reports(run_dir) if int(r["epoch"]) <= epoch]
    return [r for r in done if int(r["epoch"]) > restored_epoch] or done[-1:]


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
            if step.is_dir() and step.name.isdigit() and int(step.name) > epoch:
                shutil.rmtree(step)
    kept = [r for r in reports(run_dir) if int(r.get("epoch", 0)) <= epoch]
    path = run_dir / REPORTS
    if kept:
        tmp = run_dir / f".{REPORTS}.tmp"
        tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in kept))
        os.replace(tmp, path)
    else:
        path.unlink(missing_ok=True)
