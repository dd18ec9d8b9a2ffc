"""Shared fixtures: an isolated project (data, checkpoints, MLflow, report) in a temp folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.data.synthetic import make_records
from ecgjax.runtime import configure_jax

# The suite never reaches the internet: data that is missing must not trigger a PhysioNet
# download (the download tests lift this and point ECGJAX_PHYSIONET_URL at a loopback mirror).
os.environ.setdefault("ECGJAX_OFFLINE", "1")
# Ray reads this when it is first imported, which may be before ecgjax.tuning.sweep sets it:
# under `uv run pytest`, Ray would otherwise build a fresh virtualenv for every worker.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# The suite's programs are tiny (a few steps on a few hundred beats), so XLA's optimisation
# passes cost more than they save: about a fifth of a test's time (measured on 2 cores, cold
# cache). It is the same program either way; tests compare programs built at the same level.
# Scripts and Ray workers the tests start inherit it. Benchmarks and users keep the default.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# The persistent compilation cache the scripts use (ecgjax.runtime), for the in-process tests
# too: many tests build the same small models, and on a 2-core CPU compiling is much of the
# suite's time. Results are the same executables either way.
configure_jax()


def write_synthetic_split(
    path: Path,
    num_records: int,
    beats_per_record: int,
    seed: int,
    num_classes: int = 5,
    lead2: bool = False,
) -> None:
    """A parquet in the prepared layout (features, target, record, sample, symbol; ``lead2``:
    a second lead, the beat inverted and damped, as a two-lead record's would differ)."""
    x, y, record, sample = make_records(num_records, beats_per_record, num_classes, seed)
    symbol = np.array(["N"] * len(y), dtype=object)
    beats = data_lib.BeatData(
        x=x,
        y=y.astype(np.int32),
        num_classes=num_classes,
        source=str(path),
        record=record,
        sample=sample,
        symbol=symbol,
        lead2=(0.5 - 0.4 * x).astype(np.float32) if lead2 else None,
    )
    data_lib.write_parquet(path, beats)


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, made once per test process. Creating one (MLflow runs its
    schema migrations) takes about 2 s on 2 cores, in every test, script and sweep driver that
    opens a fresh project; copying one takes milliseconds and gives the same store."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_store: Path) -> Path:
    """Point every ecgjax location at a temp folder holding small synthetic MIT-BIH-like files
    and an empty MLflow store."""
    data = tmp_path / "data"
    data.mkdir()
    write_synthetic_split(data / "heart_big_train.parq", 6, 60, seed=1)
    write_synthetic_split(data / "heart_big_test.parq", 3, 40, seed=2)
    write_synthetic_split(data / "mitbih_ds1.parq", 6, 60, seed=3)
    write_synthetic_split(data / "mitbih_ds2.parq", 3, 40, seed=4)
    monkeypatch.setenv("ECGJAX_DATA_DIR", str(data))
    monkeypatch.setenv("ECGJAX_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("ECGJAX_REPORT_DIR", str(tmp_path / "report"))
    monkeypatch.setenv("ECGJAX_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("ECGJAX_MITDB_DIR", raising=False)
    return tmp_path


# Modules that start Ray (a local cluster, driver subprocesses, a fresh clone's sweep), in two
# groups. Under `pytest -n 2 --dist loadgroup` (pyproject's addopts) a group runs one test after
# another on one worker, so at most two Ray clusters run at once; the JAX-only tests fill the
# workers around them. More Ray clusters at once on a 2-core CPU would only slow each other.
RAY_GROUPS = {
    "test_faults_tune": "ray-a",
    "test_multinode": "ray-a",
    "test_population_sweep": "ray-a",
    "test_tune": "ray-b",
    "test_fresh_clone": "ray-b",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        group = RAY_GROUPS.get(module.__name__.rsplit(".", 1)[-1]) if module else None
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
