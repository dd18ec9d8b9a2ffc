"""Fault injection for the sweep driver: SIGKILL ``scripts/tune.py`` at seeded random moments,
``--resume``, and check what the design promises.

After the last resume: every planned trial finished; no process of the killed drivers'
Ray is left (the resumed driver ends them); a trial that had finished before a kill
never trained again (its final checkpoint and its record are untouched); one MLflow parent
and one child per trial, none left RUNNING, no epoch logged twice; one hypothesis and one
result in the (smoke) journal. Each driver starts its own local Ray, as a user's would, and
while it runs every listening socket of its processes must be on loopback.

Fast mode (CI): one kill and one resume. ``ECGJAX_FAULTS_LONG=1``: chains of kills (a resumed
driver is killed again) until at least ``ECGJAX_FAULTS_KILLS`` (default 10) kills were tried,
printing ``kills survived / kills tried``. ``ECGJAX_FAULTS_SEED`` picks the moments.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from ecgjax import paths
from ecgjax.tracking import Tracker
from ecgjax.tuning import cluster, journal, ledger, sweep
from ecgjax.tuning.cluster import is_loopback

LONG = os.environ.get("ECGJAX_FAULTS_LONG") == "1"
SEED = int(os.environ.get("ECGJAX_FAULTS_SEED", "0"))
CONFIG = "configs/asha_cnn.py:smoke"  # 3 trials x <= 2 epochs, 2 at a time, ASHA
TRIALS, EPOCHS = 3, 2


@pytest.fixture
def tune_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", str(project / "ray_results"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # every driver starts its own local Ray
    return project


@dataclass
class Driver:
    """One ``scripts/tune.py`` process, watched for its listening sockets."""

    args: list[str]
    sockets: dict[str, set[str]]  # process name -> addresses, shared by a chain's drivers
    proc: subprocess.Popen = field(init=False)

    def __post_init__(self) -> None:
        n = len(list(Path(os.environ["ECGJAX_REPORT_DIR"]).parent.glob("driver-*.log")))
        self.log_path = Path(os.environ["ECGJAX_REPORT_DIR"]).parent / f"driver-{n}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/tune.py", *self.args],
            cwd=paths.PROJECT_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def watch(self) -> None:
        """Record the listening sockets of the driver and everything it started."""
        for p in self.tree():
            try:
                listening = [c for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
                name = p.name()
            except psutil.Error:
                continue
            for c in listening:
                self.sockets.setdefault(name, set()).add(f"{c.laddr.ip}:{c.laddr.port}")

    def kill(self) -> list[str]:
        """SIGKILL the driver alone, as a user's ``kill -9`` would; returns its processes
        still alive 2 s later (the resumed driver must end them)."""
        tree = self.tree()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        _, alive = psutil.wait_procs(tree[1:], timeout=2)
        self.log.close()
        names = []
        for p in alive:
            with contextlib.suppress(psutil.Error):
                names.append(p.name())
        return names

    def finish(self, timeout: float) -> int:
        deadline = time.time() + timeout
        try:
            while self.proc.poll() is None and time.time() < deadline:
                self.watch()
                time.sleep(0.5)
            return self.proc.wait(timeout=1)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.log.close()


def _runs(sweep_id: str) -> list:
    try:
        tracker = Tracker(sweep.EXPERIMENT)
        return tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`ecgjax.sweep_id` = '{sweep_id}'"
        )
    except Exception:  # the store is being created or written by the driver; ask again
        return []


def _epochs_reported(checkpoints: Path) -> int:
    """Epochs the trials have recorded (their ledgers; no load on the driver's database)."""
    return sum(len(ledger.reports(d)) for d in checkpoints.glob("*") if d.is_dir())


def _finished_trials(checkpoints: Path) -> dict[str, tuple[int, str]]:
    """Trials whose training had returned: their final checkpoint's mtime and their record."""
    out = {}
    for run_dir in checkpoints.iterdir() if checkpoints.is_dir() else []:
        epoch = ledger.finished_epoch(run_dir)
        if epoch is not None:
            stamp = (run_dir / "latest" / str(epoch)).stat().st_mtime_ns
            out[run_dir.name] = (stamp, (run_dir / ledger.REPORTS).read_text())
    return out


def _kill_at_random_moment(driver: Driver, rng: random.Random, checkpoints: Path) -> bool:
    """Wait for a seeded number of logged epochs (0: start-up) plus a seeded delay, watching
    sockets, then SIGKILL. Returns False when the driver ended first."""
    target = rng.randint(0, TRIALS * EPOCHS - 1)
    delay = rng.uniform(0.0, 4.0)
    deadline = time.time() + 600
    while driver.proc.poll() is None and time.time() < deadline:
        driver.watch()
        if _epochs_reported(checkpoints) >= target:
            break
        time.sleep(0.5)
    end = time.time() + delay
    while driver.proc.poll() is None and time.time() < end:
        driver.watch()
        time.sleep(0.2)
    if driver.proc.poll() is not None:
        return False
    survivors = driver.kill()
    print(f"kill: after {target} epochs + {delay:.1f} s; outlived it: {survivors}")
    return True


def _assert_loopback(sockets: dict[str, set[str]]) -> None:
    """Every listening socket of the sweep's processes is on 127.0.0.1 / ::1 (or the
    IPv4-mapped ::ffff:127.0.0.1 of a dual-stack socket). No Ray component is exempt."""
    outside = {
        n: sorted(a for a in addrs if not is_loopback(a.rsplit(":", 1)[0]))
        for n, addrs in sockets.items()
    }
    outside = {n: a for n, a in outside.items() if a}
    assert not outside, f"listening beyond loopback: {outside}"
    assert {"gcs_server", "raylet"} <= set(sockets), sockets  # not vacuous


def _check_sweep(project: Path, sweep_id: str, before: dict[str, tuple[int, str]]) -> None:
    saved = json.loads((project / "checkpoints" / sweep_id / "sweep.json").read_text())
    assert saved["status"] == "finished" and len(saved["trials"]) == TRIALS, saved["status"]
    assert all(r["status"] == "ok" for r in saved["trials"]), saved["trials"]
    runs = _runs(sweep_id)
    parents = [r for r in runs if r.data.tags.get("ecgjax.kind") == "sweep"]
    kids = [r for r in runs if r.data.tags.get("ecgjax.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["ecgjax.trial_id"] for r in kids) == sorted(
        r["trial_id"] for r in saved["trials"]
    ), "an MLflow child run duplicated or missing"
    assert all(r.info.status == "FINISHED" for r in kids), [r.info.status for r in kids]
    client = Tracker(sweep.EXPERIMENT).client
    epochs = {r["trial_id"]: r["epochs"] for r in saved["trials"]}
    for kid in kids:
        steps = [m.step for m in client.get_metric_history(kid.info.run_id, "val/macro_recall")]
        trial_id = kid.data.tags["ecgjax.trial_id"]
        assert sorted(steps) == list(range(1, epochs[trial_id] + 1)), (trial_id, steps)
    after = _finished_trials(project / "checkpoints" / sweep_id)
    for trial_id, (stamp, record) in before.items():  # finished before a kill: not re-run
        assert after[trial_id] == (stamp, record), f"finished trial {trial_id} trained again"
    entries = journal.entries_for(sweep_id, journal.journal_path(smoke=True))
    titles = [e.splitlines()[0][19:].split(" (")[0] for e in entries]
    assert titles == ["Hypothesis", "Result"], titles
    assert not journal.journal_path().exists()


def _chain(project: Path, rng: random.Random, sweep_id: str, kills: int) -> tuple[int, int]:
    """Start a sweep, kill it and its resumes ``kills`` times, resume to the end, check."""
    args = ["--config", CONFIG, "--hypothesis", "faults", "--name", sweep_id]
    tried = 0
    finished: dict[str, tuple[int, str]] = {}
    sockets: dict[str, set[str]] = {}
    driver = Driver(args, sockets)
    for _ in range(kills):
        if not _kill_at_random_moment(driver, rng, project / "checkpoints" / sweep_id):
            break
        tried += 1
        finished.update(_finished_trials(project / "checkpoints" / sweep_id))
        started = (project / "checkpoints" / sweep_id / "sweep.json").is_file()
        driver = Driver(["--resume", sweep_id] if started else args, sockets)
    try:
        rc = driver.finish(timeout=600)
    finally:
        time.sleep(3)  # a normal exit: Ray's processes end on their own
        left = cluster.reap(sweep_id, project / "checkpoints" / sweep_id / "processes.json")
    log = driver.log_path.read_text()[-3000:]
    assert rc == 0, f"{driver.args}: rc {rc}\n{log}"
    assert not left, f"processes of the sweep outlived it: {left}"
    _assert_loopback(sockets)
    _check_sweep(project, sweep_id, finished)
    return tried, tried  # every kill tried was survived, or an assertion above failed


def test_killed_driver_resumes_exactly(tune_project: Path) -> None:
    rng = random.Random(SEED)
    if not LONG:
        tried, _ = _chain(tune_project, rng, "faults", kills=1)
        assert tried == 1, "the driver finished before the kill"
        return
    want = int(os.environ.get("ECGJAX_FAULTS_KILLS", "10"))
    tried = survived = chains = 0
    failures = []
    while tried < want:
        kills = min(4, want - tried)
        try:
            t, s = _chain(tune_project, rng, f"faults{chains}", kills=kills)
        except AssertionError as err:  # count it, keep going, fail at the end
            t, s = kills, 0
            failures.append(f"faults{chains}: {err}"[-3000:])
            print(f"faults{chains} failed: {err}"[-3000:])
        tried, survived, chains = tried + t, survived + s, chains + 1
    print(f"tune.py driver: {survived}/{tried} kills survived / kills tried ({chains} sweeps)")
    assert not failures, "\n".join(failures)
