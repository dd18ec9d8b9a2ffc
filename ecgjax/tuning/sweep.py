"""The sweep driver behind ``scripts/tune.py``: hypothesis, Ray Tune, MLflow, summary, resume.

The driver loads the data once and puts it in Ray's object store; trials train in worker
processes and report to Tune; the driver alone writes MLflow (one parent run per sweep,
one child per trial), the journal and ``checkpoints/<sweep>/sweep.json``. The Ray
experiment folder ``ray_results/<sweep>`` is what ``--resume`` continues from. The Tune
objects themselves (the trainable, a new or restored Tuner) come from :mod:`ecgjax.tuning.tuner`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from ecgjax.tuning import cluster, journal, search, tracking, view
from ecgjax.tuning import summary as report
from ecgjax.tuning import trainable_cv as tune_cv
from ecgjax.tuning import trainable_population as tune_pop
from ecgjax.tuning.cluster import experiment_path, ray_results_root, start_ray
from ecgjax.tuning.tuner import make_trainable, sweep_tuner

# Tune's saved experiments (tuner.pkl) name the trial folder function by this path.
from ecgjax.tuning.tuner import trial_dirname as trial_dirname

EXPERIMENT = "ecgjax-tune"
console = Console(width=None if Console().is_terminal else 200)


@dataclass(frozen=True)
class DriverOptions:
    """How the driver runs: the Ray to join or the address a local one binds, the view."""

    ray_address: str | None = None
    num_cpus: int | None = None
    bind: str | None = None
    verbose: bool = False


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
    bind: str | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run a new sweep of ``config`` over ``get_search_space(tune)`` of ``config_file``.

    ``sweep.json`` is written first, so a driver killed at any later moment leaves a sweep
    that :func:`resume_sweep` finishes (see :func:`_launch`).

    Raises:
        journal.HypothesisRequired: no hypothesis and no terminal to ask (nothing started).
        FileExistsError: a sweep with this name exists (continue it with ``resume_sweep``).
    """
    hypothesis = journal.require_hypothesis(hypothesis)
    sweep_id = name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if cluster.exists(experiment_path(sweep_id)) or (paths.checkpoints_dir() / sweep_id).exists():
        raise FileExistsError(f"sweep {sweep_id!r} exists; continue it with --resume {sweep_id}")
    space = config_lib.load_search_space(config_file, tune)
    nested = search.nest_space(space, config)
    baseline = search.baseline_point(space, config)
    search.make_scheduler(config.tune, nested)  # fail on a bad tune section before any work
    search.make_search(config.tune, [], int(config.seed))
    cluster.custom_resources(str(config.tune.resources))
    tune_pop.check_config(config)
    splits = _load_data(config)

    sweep_dir = paths.checkpoints_dir() / sweep_id
    state = {
        "sweep_id": sweep_id,
        "config_file": config_file,
        "hypothesis": hypothesis,
        "smoke": config_file.endswith(":smoke"),
        "mlflow_parent_run_id": None,
        "ray_results": experiment_path(sweep_id),
        "search_space": search.describe_space(space),
        "baseline": search.flatten_params(baseline) if baseline else None,
        "base_config": json.loads(config_lib.to_json(config)),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "status": "running",
    }
    # The folder appears with its sweep.json (a rename), so a kill leaves none or a resumable one.
    new = sweep_dir.with_name(f".{sweep_id}.new")
    shutil.rmtree(new, ignore_errors=True)
    write_json_atomic(new / "sweep.json", state)
    new.rename(sweep_dir)
    options = DriverOptions(ray_address, num_cpus, bind, verbose)
    return _launch(config, splits, state, sweep_dir, options)


def resume_sweep(
    sweep_id: str,
    *,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    bind: str | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Continue an interrupted sweep: finished trials stay (a trial that finished after the
    driver's last snapshot replays its results instead of training), unfinished ones restart
    from their last checkpoint, and their MLflow runs are continued rather than duplicated."""
    sweep_dir = paths.checkpoints_dir() / sweep_id
    state_file = sweep_dir / "sweep.json"
    if not state_file.is_file():
        raise FileNotFoundError(
            f"no sweep {sweep_id!r} to resume: {state_file} does not exist "
            "(a sweep killed before writing it left nothing; start it again)"
        )
    state = json.loads(state_file.read_text())
    config = config_lib.from_json(json.dumps(state["base_config"]))
    if state.get("status") == "finished":  # nothing to continue; don't journal it twice
        console.print(f"sweep {sweep_id} has finished already; its trials:")
        report.print_table(state["trials"], str(config.tune.metric), console)
        best = sweep_dir / "best" if state.get("best") else None
        return SweepResult(
            sweep_id, sweep_dir, state["mlflow_parent_run_id"], state["trials"], True, best
        )
    console.print(f"resuming sweep {sweep_id} from {experiment_path(sweep_id)}")
    options = DriverOptions(ray_address, num_cpus, bind, verbose)
    return _launch(config, _load_data(config), state, sweep_dir, options)


def _launch(
    config: ml_collections.ConfigDict,
    splits: data_lib.Splits | folds.CrossValidation,
    state: dict[str, Any],
    sweep_dir: Path,
    options: DriverOptions,
) -> SweepResult:
    """Start or continue the sweep ``state`` describes; every step is safe to repeat.

    The MLflow parent run is found by its tag before one is created and the journal entry
    by its title, so a driver killed anywhere in here and resumed duplicates neither; Tune
    restores its experiment when it saved one, else the sweep starts it afresh.
    """
    sweep_id, tc = state["sweep_id"], config.tune
    tracker = Tracker(EXPERIMENT)
    parent = tracking.parent_run(tracker, state)
    state["mlflow_parent_run_id"] = parent
    write_json_atomic(sweep_dir / "sweep.json", state)
    if not any(e.startswith("[") and "Hypothesis" in e.splitlines()[0] for e in _entries(state)):
        details = {"scheduler": f"{tc.scheduler} / {tc.search}", "budget": report.budget(config)}
        journal.add_hypothesis(
            sweep_id, state["hypothesis"], state["config_file"], details, smoke=_smoke(state)
        )
    os.environ[view.VERBOSE_ENV] = "1" if options.verbose else "0"
    record = sweep_dir / "processes.json"
    left = cluster.reap(sweep_id, record)
    if left:
        console.print(f"ended {len(left)} processes a killed driver left: {', '.join(left)}")
    started = start_ray(options.ray_address, options.num_cpus, options.bind, sweep_id)
    cluster.record_processes(record)
    try:
        trainable = make_trainable(config, splits, sweep_id, state["config_file"], options.verbose)
        tuner = sweep_tuner(trainable, config, state, parent, EXPERIMENT)
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


def _smoke(state: dict[str, Any]) -> bool:
    return bool(state.get("smoke", str(state.get("config_file", "")).endswith(":smoke")))


def _entries(state: dict[str, Any]) -> list[str]:
    return journal.entries_for(state["sweep_id"], journal.journal_path(_smoke(state)))


def _load_data(config: ml_collections.ConfigDict) -> data_lib.Splits | folds.CrossValidation:
    """The single split, or with ``data.cv_folds >= 2`` the folds of the training records
    (then the test file is loaded but no trial evaluates it)."""
    if int(config.data.cv_folds) >= 2:
        tune_cv.check_config(config)
        return folds.load_cv(config)
    return data_lib.load_splits(config)


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
    # A Ctrl-C leaves the running trials TERMINATED in memory (Tune's saved state has them
    # running, so --resume continues them); only trials the MLflow callback saw end are done.
    # Asked before close_trial_runs, which would end the interrupted trials' runs too.
    complete = grid.num_terminated + grid.num_errors == len(grid) and _all_ended(
        tracker, sweep_id, [r["trial_id"] for r in rows]
    )
    tracking.close_trial_runs(tracker, sweep_id, rows, complete)
    report.print_table(rows, metric, console)
    best_dir = None
    ok = [r for r in rows if r["status"] == "ok" and "metric" in r]
    if ok and ok[0].get("members"):  # a population sweep: the winning trial's members
        report.print_members(ok[0], metric, console, sweep_dir / "sweep.json")
    if ok:
        best_dir = _export_best(ok[0], sweep_dir, sweep_id)
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
    smoke = _smoke(state)
    if not any("Result" in e.splitlines()[0] for e in _entries(state)):
        journal.add_result(sweep_id, report.result_lines(rows, metric, config), smoke=smoke)
    console.print(
        f"journal: {journal.journal_path(smoke)} (sweep {sweep_id}); MLflow parent run {parent}"
    )
    journal.prompt_reflection(sweep_id, smoke=smoke)
    return SweepResult(sweep_id, sweep_dir, parent, rows, True, best_dir)


def _all_ended(tracker: Tracker, sweep_id: str, trial_ids: list[str]) -> bool:
    """Whether every trial's MLflow child run ended (completed or failed, not interrupted)."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`ecgjax.sweep_id` = '{sweep_id}'"
    )
    status = {r.data.tags.get("ecgjax.trial_id"): r.info.status for r in runs}
    return all(status.get(t) in ("FINISHED", "FAILED") for t in trial_ids)


def _export_best(row: dict[str, Any], sweep_dir: Path, sweep_id: str) -> Path:
    """Copy the best trial's run folder to ``<sweep>/best``: the copy a trial on another node
    uploaded to the sweep's storage when there is one, else the local folder."""
    remote = sweep_dir / f".{row['trial_id']}.fetched"
    shutil.rmtree(remote, ignore_errors=True)
    try:
        location = cluster.run_copy(ray_results_root(), sweep_id, row["trial_id"])
        if cluster.fetch_run_dir(location, remote):
            row = {**row, "run_dir": str(remote)}
        return report.copy_best(row, sweep_dir)
    finally:
        shutil.rmtree(remote, ignore_errors=True)
