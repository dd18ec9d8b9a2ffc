"""The sweep driver behind ``scripts/tune.py``: hypothesis, Ray Tune, MLflow, summary, resume.

The driver loads the data once and puts it in Ray's object store; trials train in worker
processes and report to Tune; the driver alone writes MLflow (one parent run per sweep,
one child per trial), the journal and ``checkpoints/<sweep>/sweep.json``. The Ray
experiment folder ``ray_results/<sweep>`` is what ``--resume`` continues from.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Under `uv run`, Ray would otherwise package the project folder (data included) and build
# a fresh virtualenv for every worker; local workers can use this interpreter as it is. Set
# RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 to ship the project to a remote cluster that way.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Snapshot the experiment state often (it is small): a killed driver then loses at most a
# couple of seconds, so finished trials are recorded as finished and never re-run on resume.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's classic progress table shows the columns we choose (the tuned metric, its worst seed
# and spread); the newer output dumps every one of ~100 metrics per finished trial.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ml_collections
import ray
from ray import tune
from rich.console import Console

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import folds
from ecgjax.tracking import Tracker
from ecgjax.training.checkpoint import write_json_atomic
from ecgjax.tuning import journal
from ecgjax.tuning import summary as report
from ecgjax.tuning import trainable as tune_lib
from ecgjax.tuning import trainable_cv as tune_cv
from ecgjax.tuning import trainable_population as tune_pop
from ecgjax.tuning.cluster import ray_results_dir, start_ray
from ecgjax.tuning.tracking import MlflowSweepCallback

EXPERIMENT = "ecgjax-tune"
console = Console(width=None if Console().is_terminal else 200)


@dataclass
class SweepResult:
    sweep_id: str
    sweep_dir: Path
    parent_run_id: str
    rows: list[dict[str, Any]]
    complete: bool
    best_dir: Path | None


def run_sweep(
    config: ml_collections.ConfigDict,
    config_file: str,
    hypothesis: str | None,
    *,
    name: str | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
) -> SweepResult:
    """Run a new sweep of ``config`` over ``get_search_space(tune)`` of ``config_file``.

    Raises:
        journal.HypothesisRequired: no hypothesis and no terminal to ask (nothing started).
        FileExistsError: a sweep with this name exists (continue it with ``resume_sweep``).
    """
    hypothesis = journal.require_hypothesis(hypothesis)
    sweep_id = name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (ray_results_dir() / sweep_id).exists() or (paths.checkpoints_dir() / sweep_id).exists():
        raise FileExistsError(f"sweep {sweep_id!r} exists; continue it with --resume {sweep_id}")
    space = config_lib.load_search_space(config_file, tune)
    nested = tune_lib.nest_space(space, config)
    baseline = tune_lib.baseline_point(space, config)
    tune_lib.make_scheduler(config.tune, nested)  # fail on a bad tune section before any work
    tune_lib.make_search(config.tune, [], int(config.seed))
    tune_pop.check_config(config)
    splits = _load_data(config)

    sweep_dir = paths.checkpoints_dir() / sweep_id
    tracker = Tracker(EXPERIMENT)
    tc = config.tune
    tags = {
        "ecgjax.kind": "sweep",
        "ecgjax.sweep_id": sweep_id,
        "ecgjax.hypothesis": hypothesis,
        "mlflow.note.content": f"Hypothesis: {hypothesis}",
        "ecgjax.config_file": config_file,
        "ecgjax.ray_results": str(ray_results_dir() / sweep_id),
        **{f"ecgjax.tune.{k}": v for k, v in tc.items()},
    }
    parent = tracker.start_run(sweep_id, tags=tags)
    tracker.log_params(parent, config_lib.flatten(config))
    state = {
        "sweep_id": sweep_id,
        "config_file": config_file,
        "hypothesis": hypothesis,
        "mlflow_parent_run_id": parent,
        "ray_results": str(ray_results_dir() / sweep_id),
        "search_space": tune_lib.describe_space(space),
        "baseline": tune_lib.flatten_params(baseline) if baseline else None,
        "base_config": json.loads(config_lib.to_json(config)),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "status": "running",
    }
    write_json_atomic(sweep_dir / "sweep.json", state)
    tracker.log_artifact(parent, Path(config_file.rsplit(":", 1)[0]), "config")
    _log_json(tracker, parent, state["search_space"], "search_space.json")
    details = {"scheduler": f"{tc.scheduler} / {tc.search}", "budget": report.budget(config)}
    journal.add_hypothesis(sweep_id, hypothesis, config_file, details)

    started = start_ray(ray_address, num_cpus)
    try:
        trainable = _trainable(config, splits, sweep_id, config_file)
        callback = MlflowSweepCallback(
            EXPERIMENT, parent, sweep_id, config_lib.to_json(config), str(paths.checkpoints_dir())
        )
        tuner = tune.Tuner(
            trainable,
            param_space=nested,
            tune_config=tune.TuneConfig(
                metric=tc.metric,
                mode=tc.mode,
                search_alg=tune_lib.make_search(
                    tc, [baseline] if baseline else [], int(config.seed)
                ),
                scheduler=tune_lib.make_scheduler(tc, nested),
                num_samples=int(tc.num_samples),
                trial_dirname_creator=trial_dirname,
                reuse_actors=True,  # skip a fresh worker's imports and JAX start-up per trial
            ),
            run_config=tune.RunConfig(
                name=sweep_id,
                storage_path=str(ray_results_dir()),
                callbacks=[callback],
                # PBT clones other trials' latest checkpoints: keep a few so none vanishes mid-copy.
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=4 if tc.scheduler == "pbt" else 2
                ),
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                progress_reporter=report.progress_reporter(config, space),
                verbose=1,
            ),
        )
        grid = _fit(tuner, tracker, parent)
    finally:
        if started:
            ray.shutdown()
    return _finish(grid, config, state, sweep_dir, tracker)


def _fit(tuner: tune.Tuner, tracker: Tracker, parent: str) -> tune.ResultGrid:
    """Run Tune; a driver-side crash marks the parent run FAILED (trial errors do not)."""
    try:
        return tuner.fit()
    except BaseException as err:
        tracker.set_tags(parent, {"ecgjax.error": f"{type(err).__name__}: {err}"[:500]})
        tracker.end_run(parent, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def resume_sweep(
    sweep_id: str, *, ray_address: str | None = None, num_cpus: int | None = None
) -> SweepResult:
    """Continue an interrupted sweep: finished trials stay, unfinished ones restart from
    their last checkpoint, and their MLflow runs are continued rather than duplicated."""
    sweep_dir = paths.checkpoints_dir() / sweep_id
    exp_dir = ray_results_dir() / sweep_id
    state_file = sweep_dir / "sweep.json"
    if not state_file.is_file() or not tune.Tuner.can_restore(str(exp_dir)):
        raise FileNotFoundError(
            f"no sweep {sweep_id!r} to resume: expected {state_file} and the Ray experiment {exp_dir}"
        )
    state = json.loads(state_file.read_text())
    config = config_lib.from_json(json.dumps(state["base_config"]))
    parent = state["mlflow_parent_run_id"]
    if state.get("status") == "finished":  # nothing to continue; don't journal it twice
        console.print(f"sweep {sweep_id} has finished already; its trials:")
        report.print_table(state["trials"], str(config.tune.metric), console)
        best = sweep_dir / "best" if state.get("best") else None
        return SweepResult(sweep_id, sweep_dir, parent, state["trials"], True, best)
    splits = _load_data(config)
    tracker = Tracker(EXPERIMENT)
    tracker.client.update_run(parent, status="RUNNING")
    tracker.set_tags(parent, {"ecgjax.resumed": time.strftime("%Y-%m-%d %H:%M:%S")})
    console.print(f"resuming sweep {sweep_id} from {exp_dir}")
    started = start_ray(ray_address, num_cpus)
    try:
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=_trainable(config, splits, sweep_id, state["config_file"]),
            resume_unfinished=True,
            resume_errored=False,
        )
        grid = _fit(tuner, tracker, parent)
    finally:
        if started:
            ray.shutdown()
    return _finish(grid, config, state, sweep_dir, tracker)


def trial_dirname(trial: Any) -> str:
    """Trial folders named by trial id, the same id as under ``checkpoints/<sweep>/``."""
    return str(trial.trial_id)


def _load_data(config: ml_collections.ConfigDict) -> data_lib.Splits | folds.CrossValidation:
    """The single split, or with ``data.cv_folds >= 2`` the folds of the training records
    (then the test file is loaded but no trial evaluates it)."""
    if int(config.data.cv_folds) >= 2:
        tune_cv.check_config(config)
        return folds.load_cv(config)
    return data_lib.load_splits(config)


def _trainable(
    config: ml_collections.ConfigDict,
    data: data_lib.Splits | folds.CrossValidation,
    sweep_id: str,
    config_file: str,
) -> Any:
    """The trainable with the data in the object store (once) and the per-trial resources."""
    common = {
        "base_json": config_lib.to_json(config),
        "sweep_id": sweep_id,
        "checkpoint_root": str(paths.checkpoints_dir()),
    }
    if isinstance(data, folds.CrossValidation):
        with_data = tune.with_parameters(tune_cv.train_cv_trial, cv=data, **common)
    elif int(config.tune.population) >= 2:
        with_data = tune.with_parameters(
            tune_pop.train_population_trial, splits=data, config_file=config_file, **common
        )
    else:
        with_data = tune.with_parameters(tune_lib.train_trial, splits=data, **common)
    resources = {"cpu": float(config.tune.cpus_per_trial), "gpu": float(config.tune.gpus_per_trial)}
    return tune.with_resources(with_data, resources)


def _finish(
    grid: tune.ResultGrid,
    config: ml_collections.ConfigDict,
    state: dict[str, Any],
    sweep_dir: Path,
    tracker: Tracker,
) -> SweepResult:
    sweep_id, parent = state["sweep_id"], state["mlflow_parent_run_id"]
    metric = str(config.tune.metric)
    rows = report.trial_rows(grid, config, paths.checkpoints_dir(), sweep_id)
    for row in rows:
        row["baseline"] = state.get("baseline") is not None and all(
            row["params"].get(k) == v for k, v in state["baseline"].items()
        )
    complete = grid.num_terminated + grid.num_errors == len(grid)
    report.print_table(rows, metric, console)
    best_dir = None
    ok = [r for r in rows if r["status"] == "ok" and "metric" in r]
    if ok:
        best_dir = report.copy_best(ok[0], sweep_dir)
        best = ok[0]
        tracker.log_metrics(
            parent, {f"best/{k}": best[k] for k in report.metric_keys(metric)}, step=0
        )
        tracker.set_tags(
            parent, {"ecgjax.best_trial": best["trial_id"], "ecgjax.best_dir": str(best_dir)}
        )
        console.print(f"best trial {best['trial_id']} copied to {best_dir}")
    state.update(
        status="finished" if complete else "interrupted",
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
        trials=rows,
        best=ok[0] if ok else None,
    )
    write_json_atomic(sweep_dir / "sweep.json", state)
    if not complete:
        tracker.end_run(parent, status="KILLED")
        console.print(f"[yellow]sweep interrupted; continue with --resume {sweep_id}[/yellow]")
        return SweepResult(sweep_id, sweep_dir, parent, rows, False, best_dir)
    tracker.end_run(parent, status="FINISHED" if ok else "FAILED")
    journal.add_result(sweep_id, report.result_lines(rows, metric, config))
    console.print(
        f"journal: {journal.journal_path()} (sweep {sweep_id}); MLflow parent run {parent}"
    )
    journal.prompt_reflection(sweep_id)
    return SweepResult(sweep_id, sweep_dir, parent, rows, True, best_dir)


def _log_json(tracker: Tracker, run_id: str, obj: Any, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(obj, indent=2, default=str))
        tracker.log_artifact(run_id, path)
