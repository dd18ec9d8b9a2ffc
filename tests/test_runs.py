"""Run folders, stale MLflow runs, config validation and one-line user errors (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.tracking import Tracker, process_tags
from ecgjax.training import rundir
from ecgjax.training.checkpoint import CheckpointError
from ecgjax.training.validate import SCHEDULERS, SEARCHES, ConfigError, validate

CONFIGS = sorted((paths.PROJECT_ROOT / "configs").glob("*.py"))


def test_default_names_are_unique_when_started_together(tmp_path: Path) -> None:
    with ThreadPoolExecutor(16) as pool:
        dirs = list(pool.map(lambda _: rundir.claim(tmp_path, None, "cnn"), range(32)))
    assert len({d.name for d in dirs}) == 32 and all(d.is_dir() for d in dirs)


def test_taken_and_missing_names_are_refused(tmp_path: Path) -> None:
    run = rundir.claim(tmp_path, "X", "cnn")
    (run / "config.json").write_text("{}")
    with pytest.raises(rundir.RunDirError) as err:
        rundir.claim(tmp_path, "X", "cnn")
    message = str(err.value)
    assert "\n" not in message and str(run) in message
    assert "--resume" in message and "--overwrite" in message and "--name" in message
    assert rundir.claim(tmp_path, "X", "cnn", resume=True) == run
    with pytest.raises(rundir.RunDirError, match="no run named 'Y' to resume"):
        rundir.claim(tmp_path, "Y", "cnn", resume=True)
    with pytest.raises(rundir.RunDirError, match="needs --name"):
        rundir.claim(tmp_path, None, "cnn", resume=True)
    with pytest.raises(rundir.RunDirError, match="plain folder name"):
        rundir.claim(tmp_path, "../up", "cnn")
    assert (run / "config.json").is_file()  # nothing was touched
    again = rundir.claim(tmp_path, "X", "cnn", overwrite=True)
    assert again == run and not any(run.iterdir())


def test_resume_command_keeps_the_arguments() -> None:
    argv = ["scripts/train.py", "--config", "configs/x.py:smoke", "--name=old", "--overwrite"]
    assert rundir.resume_command(argv, "run-1") == (
        "uv run scripts/train.py --config configs/x.py:smoke --name run-1 --resume"
    )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_and_variant_is_valid(path: Path) -> None:
    validate(config_lib.load_config_file(path))
    validate(config_lib.load_config_file(f"{path}:smoke"))


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("optim.learning_rate", -1.0, "> 0"),
        ("train.num_seeds", 0, ">= 1"),
        ("train.batch_size", 0, ">= 1"),
        ("train.epochs", 0, ">= 1"),
        ("model.dropout", 1.5, "[0, 1)"),
        ("sampling.balance_power", 2.0, "[0, 1]"),
        ("data.val_fraction", 1.0, "(0, 1)"),
        ("data.cv_folds", 1, "0 (off)"),
        ("model.name", "nosuch", "cnn2d, transformer"),
        ("loss.name", "nosuch", "ce, weighted_ce"),
        ("optim.name", "rmsprop", "adam, adamw, sgd"),
        ("optim.schedule", "step", "constant, cosine, plateau"),
        ("sampling.name", "smote", "uniform, balanced"),
        ("ensemble.strategy", "pmap", "auto, vmap"),
        ("train.select_metric", "auc", "macro_recall"),
        ("tune.scheduler", "median", "asha, hyperband"),
        ("data.channels", "beat,ecg", "unknown channel"),
        ("optim.weight_ema", -0.1, "[0, 1)"),
        ("optim.weight_ema", 1.0, "[0, 1)"),
        ("data.tta_shift", -1, "[0, 96)"),
        ("data.tta_shift", 96, "[0, 96)"),
        ("data.prematurity_gate", -0.5, "a number >= 0"),
        ("data.sv_split", 1.5, "a number in [0, 1]"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(key: str, value, allowed: str) -> None:
    config = config_lib.with_overrides(config_lib.base_config(), {key: value})
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert key in str(err.value) and allowed in str(err.value) and "\n" not in str(err.value)


def test_cross_field_rules() -> None:
    base = config_lib.base_config()
    for overrides, needle in [
        ({"data.num_classes": 2}, "data.class_names"),
        ({"model.name": "transformer", "model.hidden": 10, "model.num_heads": 4}, "divisible"),
        ({"tune.grace_period": 20, "tune.max_epochs": 10}, "tune.grace_period"),
        ({"tune.scheduler": "pbt", "tune.search": "optuna"}, "tune.search"),
        ({"tune.metric": "val/nosuch"}, "tune.metric"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            validate(config_lib.with_overrides(base, overrides))


def test_tuning_names_match_the_sweep_driver() -> None:
    from ray import tune

    from ecgjax.tuning.trainable import make_scheduler, make_search

    tc = config_lib.base_config().tune
    space = {"optim.learning_rate": tune.loguniform(1e-4, 1e-2)}
    for name in SCHEDULERS:
        make_scheduler(config_lib.with_overrides(tc, {"scheduler": name}), space)
    for name in SEARCHES:
        make_search(config_lib.with_overrides(tc, {"search": name}), [], 0)
    with pytest.raises(ValueError):
        make_scheduler(config_lib.with_overrides(tc, {"scheduler": "median"}), {})


def test_a_dead_process_run_is_marked_killed(project: Path) -> None:
    tracker = Tracker("ecgjax-train")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    tags = {**process_tags(), "ecgjax.process": f"{pid}:1"}
    stale = tracker.start_run("stale", tags=tags)
    alive = tracker.start_run("alive", tags=process_tags())
    assert [r.info.run_id for r in tracker.reap()] == [stale]
    client = MlflowClient(paths.mlflow_uri())
    assert client.get_run(stale).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


def test_overwrite_supersedes_the_old_run_and_evaluate_refuses_it(project: Path) -> None:
    from ecgjax.evaluation import evaluate
    from ecgjax.training.experiment import train_run

    config = config_lib.load_config_file(paths.PROJECT_ROOT / "configs/default_cnn.py:smoke")
    config = config_lib.with_overrides(
        config, {"train.epochs": 1, "train.steps_per_epoch": 2, "train.num_seeds": 1}
    )
    first = train_run(config, run_name="X", progress=False)
    assert not (first.run_dir / rundir.RESUME_NOTE).exists()
    with pytest.raises(rundir.RunDirError, match="exists"):
        train_run(config, run_name="X", progress=False)
    wider = config_lib.with_overrides(config, {"model.hidden": 8})
    with pytest.raises(rundir.RunDirError, match=r"model\.hidden"):
        train_run(wider, run_name="X", resume=True, progress=False)
    train_run(wider, run_name="X", overwrite=True, progress=False)
    tracker = Tracker("ecgjax-train")
    runs = tracker.find_runs("ecgjax.run_dir", str(first.run_dir), superseded=True)
    assert len(runs) == 2 and [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    new, old = runs
    assert "ecgjax.superseded" in old.data.tags and "ecgjax.superseded" not in new.data.tags
    with pytest.raises(CheckpointError, match="superseded"):
        evaluate.resolve_source(old.info.run_id)
    assert evaluate.resolve_source(new.info.run_id) == first.run_dir
    assert evaluate.load_ensemble(new.info.run_id).config.model.hidden == 8


def _train(args: list[str], project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/train.py", "--config", "configs/default_cnn.py:smoke", *args],
        cwd=paths.PROJECT_ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_script_user_errors_are_one_line_with_status_2(project: Path) -> None:
    bad = _train(["--config.optim.learning_rate=-1", "--name", "neg"], project)
    assert bad.returncode == 2, bad.stderr[-2000:]
    lines = bad.stderr.strip().splitlines()
    assert lines == ["error: config: optim.learning_rate=-1.0 is not allowed; use a number > 0"]
    assert not (project / "checkpoints" / "neg").exists()
    unknown = _train(["--config.model.nosuch=1"], project)
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    (project / "data" / "heart_big_train.parq").write_text("not parquet")
    damaged = _train(["--name", "bad", "--debug"], project)
    assert damaged.returncode == 1 and "Traceback" in damaged.stderr  # --debug: the traceback
    damaged = _train(["--name", "bad"], project)
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr
    (line,) = damaged.stderr.strip().splitlines()
    assert "heart_big_train.parq" in line and "parquet" in line
    assert not (project / "checkpoints" / "bad").exists()


def test_train_script_no_test_leaves_the_test_file_unseen(project: Path) -> None:
    done = _train(["--name", "unseen", "--no_test"], project)
    assert done.returncode == 0, done.stderr[-2000:]
    run = project / "checkpoints" / "unseen"
    said = " ".join(done.stdout.split())  # rich wraps long lines
    assert "was not evaluated" in said and f"scripts/evaluate.py {run}" in said
    assert "test split" not in said and not (run / "confusion_test.png").exists()
    assert (run / "best").is_dir() and (run / "curves.png").is_file()
