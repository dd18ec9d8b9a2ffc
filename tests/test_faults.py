"""Fault injection: SIGKILL ``prepare_data.py`` and ``train.py`` at seeded random moments.

After each kill the test does what a user would (rerun, or ``--resume`` the named run) and
checks the invariants of issue 12: nothing that had finished is lost or run again, no run
folder is mixed up, no MLflow run is duplicated or left RUNNING, and the result equals an
uninterrupted run where the design promises it (prepared files byte for byte; a resumed
training run metric for metric).

Fast by default (a few kills, for CI). ``ECGJAX_FAULTS_LONG=1`` kills each script at
``ECGJAX_FAULTS_MOMENTS`` (default 10) moments and prints ``kills survived / kills tried``
per script (``uv run pytest tests/test_faults.py -s``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgjax import paths
from ecgjax.data import prepare as P
from ecgjax.data.prepare_store import sha256

LONG = os.environ.get("ECGJAX_FAULTS_LONG") == "1"
MOMENTS = int(os.environ.get("ECGJAX_FAULTS_MOMENTS", "10")) if LONG else 0
SEED = int(os.environ.get("ECGJAX_FAULTS_SEED", "12"))
ROOT = paths.PROJECT_ROOT


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _killed_at(args: list[str], env: dict[str, str], delay: float) -> None:
    """Start the script and SIGKILL it after ``delay`` seconds (or let it end first)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _report(capsys: pytest.CaptureFixture[str], script: str, survived: int, tried: int) -> None:
    with capsys.disabled():
        print(f"\n{script}: kills survived / kills tried = {survived} / {tried}")


# ---------------------------------------------------------------- prepare_data.py


def _records(tmp_path: Path) -> Path:
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    src = tmp_path / "mitdb"
    src.mkdir()
    # Records of DS1 and DS2, so every output file has beats.
    for name in ["100", "101", "103", "105", "106", "108"]:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(Path(value) / f"{name}.{ext}", src / f"{name}.{ext}")
    return src


def _outputs(out: Path) -> dict[str, str]:
    """Checksums of the data outputs (the manifest holds a time stamp, the PNG fonts)."""
    return {n: sha256(out / n) for n in [*P.OUTPUTS.values(), P.SUMMARY_JSON] if (out / n).exists()}


def test_prepare_survives_sigkill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _records(tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    ref = tmp_path / "reference"
    start = time.perf_counter()
    done = _run(["scripts/prepare_data.py", "--source", str(src), "--out", str(ref)], env)
    span = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _outputs(ref)
    assert len(expected) == len(P.OUTPUTS) + 1
    rng = random.Random(SEED)
    moments = MOMENTS or 2
    failures = []
    for i in range(moments):
        out = tmp_path / f"out{i}"
        args = ["scripts/prepare_data.py", "--source", str(src), "--out", str(out)]
        if i % 2 == 0:  # a --force rebuild over complete outputs
            shutil.copytree(ref, out)
            _killed_at([*args, "--force"], env, rng.uniform(0.2, span))
        else:  # a first build into an empty folder
            _killed_at(args, env, rng.uniform(0.2, span))
        again = _run(args, env)
        problems = []
        if again.returncode != 0:
            problems.append(f"rerun rc {again.returncode}: {again.stderr[-500:]}")
        stale = [p.name for p in out.iterdir() if p.name.startswith(".")]
        if stale:
            problems.append(f"temp files left: {stale}")
        if _outputs(out) != expected:
            problems.append("outputs differ from an uninterrupted run")
        if problems:
            failures.append((i, problems))
    _report(capsys, "prepare_data.py", moments - len(failures), moments)
    assert not failures


# ---------------------------------------------------------------- train.py

TRAIN = [
    "scripts/train.py",
    "--config",
    "configs/default_cnn.py:smoke",
    "--config.train.epochs=3",
    "--config.train.steps_per_epoch=8",
]


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _epochs_done(run_dir: Path) -> int:
    latest = run_dir / "latest"
    steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.is_dir() else []
    return max(steps, default=0)


def test_train_resume_survives_sigkill(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "COLUMNS": "200"}
    client = MlflowClient(paths.mlflow_uri())
    start = time.perf_counter()
    ref = _run([*TRAIN, "--name", "reference"], env)
    span = time.perf_counter() - start
    assert ref.returncode == 0, ref.stderr[-3000:]
    experiment = client.get_experiment_by_name("ecgjax-train").experiment_id

    def run_of(name: str) -> list:
        folder = str(project / "checkpoints" / name)
        return client.search_runs([experiment], filter_string=f"tags.`ecgjax.run_dir` = '{folder}'")

    (reference,) = run_of("reference")
    keys = ("val/macro_recall", "train/loss", "val/recall_V")
    expected = {k: _history(client, reference.info.run_id, k) for k in keys}
    expected_test = reference.data.metrics["test/macro_recall"]
    assert [s for s, _ in expected["val/macro_recall"]] == [1, 2, 3]

    rng = random.Random(SEED)
    moments = MOMENTS or 1
    failures = []
    for i in range(moments):
        name = f"killed{i}"
        run_dir = project / "checkpoints" / name
        # Fast mode: a moment inside training (after start-up); long mode: anywhere in the run.
        delay = rng.uniform(0.5, span) if LONG else rng.uniform(0.55 * span, 0.85 * span)
        _killed_at([*TRAIN, "--name", name], env, delay)
        before = _epochs_done(run_dir)
        # What a user does: --resume the named run (or start it, if it never got a folder).
        again = _run([*TRAIN, "--name", name, *(["--resume"] if run_dir.exists() else [])], env)
        problems = []
        if again.returncode != 0:
            problems.append(f"rerun rc {again.returncode}: {again.stderr[-800:]}")
            failures.append((i, delay, problems))
            continue
        trained = [
            int(line.split()[1].split("/")[0])
            for line in again.stdout.splitlines()
            if line.startswith("epoch ")
        ]
        if trained != list(range(before + 1, 4)):
            problems.append(f"{before} epochs were saved, the rerun trained {trained}")
        runs = run_of(name)
        if len(runs) != 1 or runs[0].info.status != "FINISHED":
            problems.append(f"MLflow runs: {[(r.info.run_id, r.info.status) for r in runs]}")
        else:
            got = {k: _history(client, runs[0].info.run_id, k) for k in keys}
            for k in keys:
                steps = [s for s, _ in got[k]]
                if steps != [1, 2, 3]:
                    problems.append(f"{k} logged at epochs {steps}")
                elif [v for _, v in got[k]] != pytest.approx([v for _, v in expected[k]]):
                    problems.append(f"{k} differs from the uninterrupted run: {got[k]}")
            if runs[0].data.metrics.get("test/macro_recall") != pytest.approx(expected_test):
                problems.append("test/macro_recall differs from the uninterrupted run")
        if (run_dir / "RESUME.txt").exists():
            problems.append("RESUME.txt left in a finished run")
        if problems:
            failures.append((i, delay, problems))
    folders = sorted(p.name for p in (project / "checkpoints").iterdir())
    assert folders == sorted(["reference", *(f"killed{i}" for i in range(moments))])
    running = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
    assert not running, [r.info.run_name for r in running]
    _report(capsys, "train.py", moments - len(failures), moments)
    assert not failures, failures
