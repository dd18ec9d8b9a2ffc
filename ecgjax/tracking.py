"""MLflow logging through one writer per process (SQLite store under the project).

A :class:`Tracker` wraps ``MlflowClient`` with explicit run ids instead of MLflow's global
"active run", so a sweep driver can log a parent and many child runs from a single thread
(SQLite allows one writer; parallel trial processes never touch the database themselves).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from ecgjax import paths

_MAX_PARAM = 6000  # MLflow's param value limit is larger in 3.x; stay well inside it.


def git_commit() -> str:
    """The project's current commit (or ``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def process_tags() -> dict[str, str]:
    """Tags that identify this process, so a later run can tell that it died (see ``reap``)."""
    return {"ecgjax.host": socket.gethostname(), "ecgjax.process": _process_token(os.getpid())}


def _process_token(pid: int) -> str:
    """``pid:start`` (start time in clock ticks on Linux), so a reused pid is not mistaken."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid}:{start}"


def process_alive(token: str) -> bool:
    """Whether the process named by a :func:`process_tags` token still runs on this host."""
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return start == "?" or _process_token(pid) == token


class Tracker:
    """Logs params, metrics, tags and artifacts to one MLflow experiment."""

    def __init__(self, experiment: str, uri: str | None = None) -> None:
        self.uri = uri or paths.mlflow_uri()
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = paths.mlflow_artifact_location()
            if location is not None and location.startswith("file://"):
                paths.mlflow_artifacts_dir().mkdir(parents=True, exist_ok=True)
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location
            )
        else:
            self.experiment_id = found.experiment_id

    def start_run(
        self, name: str, *, parent_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Create a run (a child when ``parent_id`` is given) and return its id."""
        all_tags = {"mlflow.source.git.commit": git_commit(), **(tags or {})}
        if parent_id is not None:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()}
        )
        return run.info.run_id

    def find_run(self, tag: str, value: str) -> str | None:
        """The id of the newest run carrying ``tag=value`` that was not superseded (to resume it
        instead of duplicating it)."""
        runs = self.find_runs(tag, value)
        return runs[0].info.run_id if runs else None

    def find_runs(self, tag: str, value: str, *, superseded: bool = False) -> list[Any]:
        """Runs carrying ``tag=value``, newest first; superseded ones only when asked."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}` = '{value}'",
            order_by=["attributes.start_time DESC"],
        )
        return [r for r in runs if superseded or "ecgjax.superseded" not in r.data.tags]

    def supersede(self, run: Any, reason: str) -> None:
        """Mark ``run`` as replaced (``--overwrite``): KILLED if it was still RUNNING, and tagged,
        so nothing resumes it or evaluates its (deleted) checkpoint as if it were its own."""
        if run.info.status == "RUNNING":
            self.client.set_terminated(run.info.run_id, status="KILLED")
        self.set_tags(run.info.run_id, {"ecgjax.superseded": reason})

    def reopen(self, run_id: str) -> None:
        """Set a stopped run back to RUNNING (it is being resumed)."""
        self.client.update_run(run_id, status="RUNNING")

    def reap(self) -> list[Any]:
        """Mark KILLED the RUNNING runs of this experiment whose process (on this host) is gone.

        Only runs tagged by :func:`process_tags` are considered; returns the runs it marked.
        """
        host = socket.gethostname()
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`ecgjax.host` = '{host}'",
        )
        dead = [r for r in runs if not process_alive(r.data.tags.get("ecgjax.process", ""))]
        for r in dead:
            self.client.set_terminated(r.info.run_id, status="KILLED")
            self.set_tags(r.info.run_id, {"ecgjax.killed": "its process ended without closing it"})
        return dead

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        existing = self.client.get_run(run_id).data.params
        items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items() if k not in existing]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log finite float metrics at ``step`` (non-finite values are skipped, never stored)."""
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        for start in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[start : start + 500], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            self.client.log_batch(run_id, tags=items, synchronous=True)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
