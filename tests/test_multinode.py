"""A sweep on a two-node Ray cluster: trials on the worker node, storage behind a URI.

``ray.cluster_utils.Cluster`` starts a head node and a worker node on this machine, each a
separate raylet with its own resources. The smoke sweep asks for a custom resource only the
worker has (``tune.resources``), so every trial runs on a node other than the driver's, as on
a real cluster, and ``ECGJAX_RAY_RESULTS`` is a ``file://`` URI (Ray and ecgjax then reach it
through pyarrow's filesystem layer, as they would ``s3://``). The sweep is interrupted like a
Ctrl-C (Tune's graceful stop), the driver's copies of the trial folders are deleted (a driver
machine that never had them, a trial restarting elsewhere), and ``--resume`` finishes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.evaluation import evaluate
from ecgjax.tracking import Tracker
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.engine import Ensemble
from ecgjax.tuning import cluster, sweep

WORKER_ONLY = "ecgjax_worker"


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head_only": 1}, "include_dashboard": False},
    )
    nodes.add_node(num_cpus=2, resources={WORKER_ONLY: 2})
    try:
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, logging_level="warning")
        yield
    finally:
        ray.shutdown()
        nodes.shutdown()


def _interrupt_after_first_checkpoint(experiment: Path, stop: threading.Event) -> None:
    """Like a Ctrl-C once a trial has saved a checkpoint: Tune's handler stops gracefully
    (SIGUSR1 is its second trigger; sent only while that handler is installed)."""
    while not stop.is_set():
        tune_handler = getattr(signal.getsignal(signal.SIGUSR1), "__name__", "")
        if tune_handler == "signal_interrupt_tune_run" and any(experiment.glob("*/checkpoint_*")):
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        time.sleep(0.1)


def test_upload_skips_a_step_folder_orbax_removes_while_it_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orbax deletes a superseded step in the background; the upload must not fail on it
    (a trial failed this way in a CI run) nor leave half of it in storage."""
    run = tmp_path / "run"
    for rel in ("best/1/a", "best/1/commit_success.txt", "best/2/a", "latest/2/a", "meta.json"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(rel)
    real = cluster.pafs.copy_files

    def racing(src: str, dest: str, **kwargs) -> None:
        if src.endswith("best/1/commit_success.txt"):  # best/1/a is copied already
            shutil.rmtree(run / "best" / "1")
        real(src, dest, **kwargs)

    monkeypatch.setattr(cluster.pafs, "copy_files", racing)
    dest = tmp_path / "storage" / "run"
    cluster.upload_run_dir(run, dest.as_uri())
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["best/2/a", "latest/2/a", "meta.json"]

    def unreadable(src: str, dest: str, **kwargs) -> None:
        real(str(tmp_path / "nowhere"), dest, **kwargs)

    monkeypatch.setattr(cluster.pafs, "copy_files", unreadable)
    with pytest.raises(FileNotFoundError):  # not a vanished step (the file is there): raised
        cluster.upload_run_dir(run, dest.as_uri())


def _restore(run_dir: Path, which: str) -> dict:
    config_json, meta = ckpt.read_run_files(run_dir)
    ens = Ensemble(
        config_lib.from_json(config_json), None, meta["seeds"], context_dim=meta["context_dim"]
    )
    return ckpt.restore_dir(run_dir / which, ens.abstract_state())[1]


def test_sweep_trials_on_a_worker_node_with_uri_storage_and_resume(
    project: Path, monkeypatch: pytest.MonkeyPatch, two_nodes: None
) -> None:
    storage = project / "shared_storage"
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", storage.as_uri())  # file:///...
    assert cluster.ray_results_root().startswith("file://")
    path = "configs/asha_cnn.py:smoke"
    config = config_lib.with_overrides(
        config_lib.load_config_file(paths.PROJECT_ROOT / path),
        {"tune.resources": f"{WORKER_ONLY}:1", "tune.num_samples": 2, "tune.max_concurrent": 2},
    )
    experiment = storage / "multi"
    stop = threading.Event()
    watcher = threading.Thread(
        target=_interrupt_after_first_checkpoint, args=(experiment, stop), daemon=True
    )
    watcher.start()
    try:
        first = sweep.run_sweep(config, str(paths.PROJECT_ROOT / path), "two nodes", name="multi")
    finally:
        stop.set()
        watcher.join()
    assert not first.complete, "the interrupt came after the sweep had finished"
    # The driver's machine never held the trials' run folders: resume and export must use storage.
    shutil.rmtree(paths.checkpoints_dir() / "multi" / "best", ignore_errors=True)
    for trial_dir in (paths.checkpoints_dir() / "multi").iterdir():
        if trial_dir.is_dir():
            shutil.rmtree(trial_dir)

    result = sweep.resume_sweep("multi")
    assert result.complete and len(result.rows) == config.tune.num_samples
    assert all(r["status"] == "ok" for r in result.rows), result.rows

    # 1. Every trial's checkpoints reached the sweep's storage: Tune's, and the run folder a
    #    trial on another node than the driver uploads (so each ran on the worker node).
    for row in result.rows:
        trial = experiment / row["trial_id"]
        assert list(trial.glob("checkpoint_*")), f"no Tune checkpoint of {row['trial_id']}"
        progress = _restore(trial / cluster.RUN, "latest")
        assert progress["epoch"] == row["epochs"], row["trial_id"]
        assert _restore(trial / cluster.RUN, "best")["epoch"] == row["best_epoch"]

    # 2. MLflow: one child run per trial, each finished with every epoch logged once.
    tracker = Tracker(sweep.EXPERIMENT)
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string="tags.`ecgjax.sweep_id` = 'multi'"
    )
    kids = [r for r in runs if r.data.tags["ecgjax.kind"] == "trial"]
    assert sorted(r.data.tags["ecgjax.trial_id"] for r in kids) == sorted(
        r["trial_id"] for r in result.rows
    )
    assert all(r.info.status == "FINISHED" for r in kids)
    epochs = {row["trial_id"]: row["epochs"] for row in result.rows}
    for kid in kids:
        steps = [m.step for m in tracker.client.get_metric_history(kid.info.run_id, "val/macro_f2")]
        assert sorted(steps) == list(range(1, epochs[kid.data.tags["ecgjax.trial_id"]] + 1))
    parents = [r for r in runs if r.data.tags["ecgjax.kind"] == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    # 3. checkpoints/<sweep>/best was exported (from storage) and loads as evaluate.py loads it.
    best = paths.checkpoints_dir() / "multi" / "best"
    assert result.best_dir == best and (best / "config.json").is_file()
    loaded = evaluate.load_ensemble(str(best))
    test, val = evaluate.load_data(loaded)
    report = evaluate.evaluate(loaded, test, val=val, n_boot=20, write=False, log_mlflow=False)
    assert loaded.epoch == result.rows[0]["best_epoch"] and loaded.which == "best"
    assert 0.0 <= report["metrics"]["ensemble"]["accuracy"] <= 1.0


def test_results_location_resources_and_mlflow_artifacts_for_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", "file:///mnt/shared/ray_results/")
    assert cluster.experiment_path("s1") == "file:///mnt/shared/ray_results/s1"
    fs, where = cluster.storage(cluster.experiment_path("s1"))
    assert where == "/mnt/shared/ray_results/s1" and fs.type_name == "local"
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", str(tmp_path / "rr"))
    assert cluster.experiment_path("s1") == str(tmp_path / "rr" / "s1")
    assert cluster.run_copy("", "s1", "t1") == ""  # no storage known: nothing to fetch
    assert not cluster.fetch_run_dir("", tmp_path / "x")

    assert cluster.custom_resources(" gpu_box:1, fast_disk:0.5 ") == {
        "gpu_box": 1.0,
        "fast_disk": 0.5,
    }
    assert cluster.custom_resources("") == {}
    for bad in ("gpu_box", "gpu_box:0", ":1", "gpu_box:many"):
        with pytest.raises(ValueError, match=r"tune\.resources"):
            cluster.custom_resources(bad)

    monkeypatch.delenv("ECGJAX_MLFLOW_ARTIFACTS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert paths.mlflow_artifact_location() is None  # the tracking server stores them
    monkeypatch.setenv("ECGJAX_MLFLOW_ARTIFACTS", "s3://bucket/mlartifacts")
    assert paths.mlflow_artifact_location() == "s3://bucket/mlartifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ECGJAX_MLFLOW_ARTIFACTS", str(tmp_path / "art"))
    assert paths.mlflow_artifact_location() == (tmp_path / "art").as_uri()
