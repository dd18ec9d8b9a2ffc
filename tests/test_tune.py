"""Sweeps end to end on tiny synthetic data: MLflow, checkpoints, journal, failures, resume.

One local Ray (2 CPUs) serves the whole module. Killing the driver: tests/test_faults_tune.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ray import tune

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.tracking import Tracker
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.engine import Ensemble
from ecgjax.tuning import journal, ledger, sweep, view
from ecgjax.tuning import trainable as tune_lib

SWEEPS = [
    "asha_cnn",
    "asha_transformer",
    "optuna_resnet1d",
    "pbt_resnet1d",
    "grid_imbalance",
    "hyperband_kachuee",
    "optuna_interpatient",
]
SPACES = sorted(
    p for p in (paths.PROJECT_ROOT / "configs").glob("*.py") if "get_search_space" in p.read_text()
)


@pytest.fixture(scope="module")
def ray_address() -> str:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def tune_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", str(project / "ray_results"))
    return project


def children(sweep_id: str) -> list:
    tracker = Tracker(sweep.EXPERIMENT)
    return tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`ecgjax.sweep_id` = '{sweep_id}'"
    )


def restore(run_dir: Path, which: str):
    config_json, meta = ckpt.read_run_files(run_dir)
    ens = Ensemble(
        config_lib.from_json(config_json), None, meta["seeds"], context_dim=meta["context_dim"]
    )
    return ckpt.restore_dir(run_dir / which, ens.abstract_state())


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_configs_load_in_every_variant(name: str) -> None:
    path = paths.PROJECT_ROOT / "configs" / f"{name}.py"
    for arg in (None, "smoke", "full"):
        config = config_lib.load_config_file(f"{path}:{arg}" if arg else path)
        space = config_lib.load_search_space(f"{path}:{arg}" if arg else path, tune)
        nested = tune_lib.nest_space(space, config)
        tune_lib.make_scheduler(config.tune, nested)
        baseline = tune_lib.baseline_point(space, config)
        search = tune_lib.make_search(config.tune, [baseline] if baseline else [], 0)
        # Tune hands the searcher the space at start; a malformed starting point fails here.
        assert search.set_search_properties(config.tune.metric, config.tune.mode, nested)
        assert (baseline is not None) == (config.tune.search != "grid")
    doc = path.read_text().split('"""')[1]
    assert f"scripts/tune.py --config configs/{name}.py:smoke" in doc and "min" in doc
    smoke = config_lib.load_config_file(f"{path}:smoke")
    assert smoke.data.max_train and smoke.train.steps_per_epoch <= 10 and smoke.tune.max_epochs <= 3


@pytest.mark.parametrize("script", ["tune.py"])
def test_ray_reads_the_projects_defaults_whatever_imports_it_first(script: str) -> None:
    """Under `uv run` Ray would build a fresh virtualenv for each sweep's workers (and listen
    beyond loopback) unless its import sees ecgjax's defaults; the conftest's own setting must
    not hide a script that imports Ray before setting them."""
    probe = (
        "import runpy, sys\n"
        f"runpy.run_path('scripts/{script}', run_name='probe')\n"
        "from ray._private import ray_constants as c\n"
        "print(c.RAY_ENABLE_UV_RUN_RUNTIME_ENV, c.ENABLE_RAY_CLUSTER)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=paths.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"], out.stdout


def test_a_smoke_sweep_searches_small_structures_only() -> None:
    path = paths.PROJECT_ROOT / "configs" / "asha_cnn.py"
    full, smoke = (config_lib.load_search_space(p, tune) for p in (path, f"{path}:smoke"))
    assert max(full["model.hidden"].categories) == 64 and "model.num_blocks" in full
    assert max(smoke["model.hidden"].categories) == 16 and "model.num_blocks" not in smoke
    assert set(smoke) < set(full)


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_search_space_keys_are_config_paths(path: Path) -> None:
    space = config_lib.load_search_space(path, tune)
    tune_lib.nest_space(space, config_lib.load_config_file(path))


def test_space_keys_must_be_config_paths() -> None:
    with pytest.raises(ValueError, match=r"optim\.lr"):
        tune_lib.nest_space({"optim.lr": tune.loguniform(1e-4, 1e-2)}, config_lib.base_config())
    nested = tune_lib.nest_space(
        {"optim.learning_rate": 1e-3, "model.hidden": 8}, config_lib.base_config()
    )
    assert tune_lib.flatten_params(nested) == {"optim.learning_rate": 1e-3, "model.hidden": 8}


def test_restart_aligns_the_run_folder_with_the_tune_checkpoint(tmp_path: Path) -> None:
    def tune_checkpoint(trial_id: str, epoch: int) -> Path:
        folder = tmp_path / f"ray_{trial_id}_{epoch}"
        (folder / tune_lib.STATE_DIR / str(epoch)).mkdir(parents=True)
        (folder / tune_lib.STATE_DIR / str(epoch) / "weights").write_text(trial_id)
        (folder / tune_lib.MARKER).write_text(json.dumps({"trial_id": trial_id, "epoch": epoch}))
        return folder

    def steps(which: str) -> list[str]:
        return sorted(p.name for p in (run_dir / which).iterdir())

    run_dir = tmp_path / "t1"
    for which, step in [("latest", 1), ("latest", 3), ("best", 2), ("best", 3)]:
        (run_dir / which / str(step)).mkdir(parents=True)
    tune_lib.adopt_checkpoint(run_dir, tune_checkpoint("t1", 2), "t1")  # own, older: drop 3
    assert steps("latest") == ["1"] and steps("best") == ["2"]
    tune_lib.adopt_checkpoint(run_dir, tune_checkpoint("t0", 2), "t1")  # PBT exploit of t0
    assert steps("latest") == ["2"] and steps("best") == ["2"]
    assert (run_dir / "best/2/weights").read_text() == "t0"


def _ledger_trial(run_dir: Path, epochs: int, *, done: bool, best: int = 1) -> None:
    for epoch in range(1, epochs + 1):
        ledger.record(run_dir, {"epoch": epoch, "best_epoch": best, "val/macro_f2": epoch / 10})
    (run_dir / "latest" / str(epochs)).mkdir(parents=True)
    (run_dir / "best" / str(best)).mkdir(parents=True)
    if done:
        ledger.finish(run_dir, epochs)


def test_a_restarted_trial_replays_what_it_had_done_instead_of_training(tmp_path: Path) -> None:
    finished = tmp_path / "finished"  # finished after the driver's last snapshot (epoch 1)
    _ledger_trial(finished, 3, done=True)
    todo, epoch, done = ledger.plan(finished, 1)
    assert ([r["epoch"] for r in todo], epoch, done) == ([2, 3], 3, True)
    todo, epoch, done = ledger.plan(finished, 3)  # PBT restart after the last epoch
    assert ([r["epoch"] for r in todo], epoch, done) == ([3], 3, True)

    running = tmp_path / "running"  # killed in epoch 3; the Tune checkpoint says 1
    _ledger_trial(running, 2, done=False)
    (running / "latest" / "3.orbax-checkpoint-tmp-17").mkdir()  # a save the kill cut short
    todo, epoch, done = ledger.plan(running, 1)
    assert ([r["epoch"] for r in todo], epoch, done) == ([2], 2, False)
    ledger.rewind(running, 2)
    assert sorted(p.name for p in (running / "latest").iterdir()) == ["2"]

    unsaved = tmp_path / "unsaved"  # the report is recorded, its best/ step never landed
    _ledger_trial(unsaved, 2, done=False, best=2)
    (unsaved / "best" / "2").rmdir()
    assert ledger.plan(unsaved, 1) == ([], 1, False)
    ledger.rewind(unsaved, 1)
    assert [r["epoch"] for r in ledger.reports(unsaved)] == [1]
    assert not (unsaved / "latest" / "2").exists()
    ledger.rewind(unsaved, 0)  # a fresh start: nothing is left to collide with
    assert not (unsaved / "latest").exists() and not ledger.reports(unsaved)


def test_live_view_counts_trials_and_tracks_the_best() -> None:
    from ray.tune.experiment import Trial

    def trial(status: str, epochs: int, value: float | None) -> Trial:
        t = Trial("train_trial", config={}, stub=True)
        t.status = status
        if value is not None:
            t.update_last_result({"epoch": epochs, "training_iteration": epochs, "val/f2": value})
        return t

    tables = tune.CLIReporter()
    v = view.SweepView("s", "val/f2", "max", 5, 4, tables, early_stopping=True)
    v.setup()
    trials = [trial(Trial.TERMINATED, 4, 0.5), trial(Trial.TERMINATED, 2, 0.7)]
    trials += [trial(Trial.RUNNING, 1, 0.2), trial(Trial.PENDING, 0, None)]
    first = v.status(trials, v._start + 10)
    assert first.startswith("sweep s: 1/5 finished, 1 stopped, 1 running, 2 pending")
    assert f"best {trials[1].trial_id} f2 0.7000" in first and "ETA ?" in first
    trials[2].update_last_result({"epoch": 2, "training_iteration": 2, "val/f2": 0.3})
    later = v.status(trials, v._start + 20)  # 1 epoch in 20 s; 2 + 4 + 4 epochs left
    assert later.endswith("elapsed 0:20, ETA ≤ 3:20"), later


def test_smoke_sweep_end_to_end(tune_project: Path, ray_address: str) -> None:
    path = "configs/asha_cnn.py:smoke"
    config = config_lib.load_config_file(paths.PROJECT_ROOT / path)
    result = sweep.run_sweep(
        config, str(paths.PROJECT_ROOT / path), "wider nets help S", name="e2e"
    )
    assert result.complete and len(result.rows) == config.tune.num_samples

    runs = children("e2e")
    parent = [r for r in runs if r.data.tags["ecgjax.kind"] == "sweep"]
    kids = [r for r in runs if r.data.tags["ecgjax.kind"] == "trial"]
    assert len(parent) == 1 and len(kids) == config.tune.num_samples
    assert parent[0].data.tags["ecgjax.hypothesis"] == "wider nets help S"
    assert parent[0].info.status == "FINISHED"
    client = Tracker(sweep.EXPERIMENT).client
    for kid in kids:
        assert kid.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert kid.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(kid.info.run_id, "val/macro_recall")]
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert {"val/worst/macro_recall", "val/recall_S", "val/seed1/macro_recall"} <= set(
            kid.data.metrics
        )
        figures = {a.path for a in client.list_artifacts(kid.info.run_id, "figures")}
        assert figures == {"figures/confusion_val.png", "figures/curves.png"}
        run_dir = Path(kid.data.tags["ecgjax.checkpoint"])
        _, progress = restore(run_dir, "latest")
        assert progress["epoch"] == len(steps)

    best = result.sweep_dir / "best"
    run_dir, which = ckpt.find_run_dir(best)
    assert (run_dir, which) == (best, "best")
    restore(best, "best")
    saved = json.loads((result.sweep_dir / "sweep.json").read_text())
    assert saved["status"] == "finished" and saved["mlflow_parent_run_id"] == parent[0].info.run_id
    assert saved["trials"][0]["baseline"] or any(r["baseline"] for r in saved["trials"])
    entries = journal.entries_for("e2e", journal.journal_path(smoke=True))
    assert "wider nets help S" in entries[0] and entries[1].startswith(
        f"[{entries[1][1:17]}] Result"
    )
    assert len(entries) == 2 and not journal.journal_path().exists()  # smoke: not the journal


def test_failing_trial_is_marked_failed_and_the_sweep_finishes(
    tune_project: Path, ray_address: str
) -> None:
    path = tune_project / "bad_heads.py"
    path.write_text(
        "from ecgjax.config import base_config\n\n"
        "def get_config(arg=None):\n"
        "    c = base_config()\n"
        "    c.model.name, c.model.hidden, c.model.num_heads = 'transformer', 8, 4\n"
        "    c.data.max_train, c.data.max_eval, c.train.steps_per_epoch = 200, 100, 3\n"
        "    c.tune.scheduler, c.tune.search, c.tune.num_samples = 'fifo', 'grid', 1\n"
        "    c.tune.max_epochs = 1\n"
        "    return c\n\n"
        "def get_search_space(tune):\n"
        "    return {'model.hidden': tune.grid_search([6, 8])}\n"
    )
    result = sweep.run_sweep(
        config_lib.load_config_file(path), str(path), "6 is not 4-divisible", name="bad"
    )
    assert result.complete
    by_status = {r["status"]: r for r in result.rows}
    assert set(by_status) == {"ok", "error"}
    assert (
        "divisible" in by_status["error"]["error"]
        and by_status["error"]["params"]["model.hidden"] == 6
    )
    kids = {
        r.data.tags["ecgjax.trial_id"]: r
        for r in children("bad")
        if "ecgjax.trial_id" in r.data.tags
    }
    failed = kids[by_status["error"]["trial_id"]]
    assert failed.info.status == "FAILED" and "divisible" in failed.data.tags["ecgjax.error"]
    assert kids[by_status["ok"]["trial_id"]].info.status == "FINISHED"
    assert "1 failed" in journal.entries_for("bad")[1]


def test_cross_validated_sweep_reports_the_fold_mean(tune_project: Path, ray_address: str) -> None:
    path = tune_project / "cv_sweep.py"
    path.write_text(
        "from ecgjax.config import base_config\n\n"
        "def get_config(arg=None):\n"
        "    c = base_config()\n"
        "    c.data.cv_folds, c.data.max_train, c.data.max_eval = 2, 200, 100\n"
        "    c.model.name, c.model.hidden, c.model.num_blocks = 'resnet1d', 8, 1\n"
        "    c.train.steps_per_epoch, c.train.select_metric = 3, 'macro_f2'\n"
        "    c.tune.scheduler, c.tune.search, c.tune.metric = 'fifo', 'grid', 'val/macro_f2'\n"
        "    c.tune.num_samples, c.tune.max_epochs, c.tune.seeds_per_trial = 1, 2, 1\n"
        "    return c\n\n"
        "def get_search_space(tune):\n"
        "    return {'data.channels': tune.grid_search(['beat,beat_minus_template'])}\n"
    )
    config = config_lib.load_config_file(path)
    result = sweep.run_sweep(config, str(path), "the template helps", name="cv")
    assert result.complete and all(r["status"] == "ok" for r in result.rows)
    client = Tracker(sweep.EXPERIMENT).client
    kids = [r for r in children("cv") if r.data.tags["ecgjax.kind"] == "trial"]
    assert len(kids) == 1  # its channels differ from the driver's data: the trial reloads
    for kid in kids:
        history = {
            key: [m.value for m in client.get_metric_history(kid.info.run_id, key)]
            for key in ("val/macro_f2", "val/fold0/macro_f2", "val/fold1/macro_f2")
        }
        assert len(history["val/macro_f2"]) == config.tune.max_epochs
        folds_mean = (np.array(history["val/fold0/macro_f2"]) + history["val/fold1/macro_f2"]) / 2
        np.testing.assert_allclose(history["val/macro_f2"], folds_mean)
        assert {"val/fold_std/macro_f2", "val/fold_min/recall_S"} <= set(kid.data.metrics)
        run_dir = Path(kid.data.tags["ecgjax.checkpoint"])
        for fold in ("fold0", "fold1"):  # a 2-channel trial restores into a 2-channel model
            _, progress = restore(run_dir / fold, "latest")
            assert progress["epoch"] == config.tune.max_epochs
    assert not any(k.startswith("test/") for r in children("cv") for k in r.data.metrics)
    assert {"macro_recall", "macro_f1", "recall_normal", "fold_std"} <= set(result.rows[0])


def test_pbt_smoke_sweep(tune_project: Path, ray_address: str) -> None:
    path = paths.PROJECT_ROOT / "configs/pbt_resnet1d.py:smoke"
    config = config_lib.load_config_file(path)
    result = sweep.run_sweep(config, str(path), "a decaying learning rate wins", name="pbt")
    assert result.complete and len(result.rows) == config.tune.num_samples
    assert all(r["status"] == "ok" for r in result.rows)
    # A trial PBT perturbs right after its last epoch restarts from that epoch's checkpoint
    # with nothing left to train; it reports that epoch again (ledger), so its row is kept.
    assert all(r["epochs"] == config.tune.max_epochs for r in result.rows), result.rows
    restore(result.sweep_dir / "best", "latest")


def test_no_hypothesis_without_a_terminal_stops_before_anything(tune_project: Path) -> None:
    config = config_lib.load_config_file(paths.PROJECT_ROOT / "configs/asha_cnn.py:smoke")
    with pytest.raises(journal.HypothesisRequired, match="--hypothesis"):
        sweep.run_sweep(config, "configs/asha_cnn.py:smoke", None, name="none")
    assert not (tune_project / "checkpoints").exists() and not journal.journal_path().exists()
    out = subprocess.run(
        [sys.executable, "scripts/tune.py", "--config", "configs/asha_cnn.py:smoke"],
        cwd=paths.PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "needs a hypothesis" in out.stderr
    assert not (tune_project / "checkpoints").exists()
