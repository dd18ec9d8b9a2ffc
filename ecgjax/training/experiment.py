"""``scripts/train.py`` as a library call: one ensemble run with MLflow, plots and a progress bar."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import ml_collections
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths, tracking
from ecgjax.scoring import plots
from ecgjax.tracking import Tracker
from ecgjax.training import rundir
from ecgjax.training.run import EpochResult, RunResult, run_training

console = Console(width=None if Console().is_terminal else 120)  # pipes: 80 cols cut tables


def train_run(
    config: ml_collections.ConfigDict,
    *,
    run_name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    experiment: str = "ecgjax-train",
    progress: bool = True,
    run_dir: Path | None = None,
    splits: data_lib.Splits | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    evaluate_test: bool = True,
    command: Sequence[str] | None = None,
    keep_val_probs: bool = False,
    val_epoch: str = "best",
) -> RunResult:
    """Train one ensemble, log it to MLflow, checkpoint it under ``checkpoints/<run_name>``.

    Without ``run_dir`` the run claims its folder (:func:`ecgjax.training.rundir.claim`): a new
    name, ``resume`` of an existing run (same config), or ``overwrite``. ``command`` (the
    script's argv) makes ``RESUME.txt`` name the exact command that continues the run.
    ``run_dir``, ``splits`` (already loaded), extra MLflow ``tags`` and a ``parent_run_id``
    let a study that trains several ensembles (``ecgjax.studies.rr_study``, the folds of
    ``ecgjax.training.crossval``) keep its runs together; ``evaluate_test=False`` leaves the test
    split unseen (cross-validation selects without it, and pools ``keep_val_probs``, those of
    the ``val_epoch`` epoch: ``best`` or ``last``).

    Raises:
        ValueError: ``data.cv_folds >= 2`` without ``splits`` (that is ``crossval.train_cv``).
        RunDirError: the name is taken, or there is nothing to resume under it.
    """
    if splits is None and int(config.data.cv_folds) >= 2:
        raise ValueError(
            f"data.cv_folds={config.data.cv_folds}: train the folds with ecgjax.training.crossval.train_cv"
        )
    own_dir = run_dir is None
    if run_dir is None:
        run_dir = rundir.claim(
            paths.checkpoints_dir(), run_name, config.name, resume=resume, overwrite=overwrite
        )
        name = run_dir.name
        rundir.write_resume_note(run_dir, rundir.resume_command(command, name))
    else:
        name = run_name or run_dir.name
        if not resume and (run_dir / "latest").exists():
            if not overwrite:
                raise rundir.RunDirError(
                    f"{run_dir}: holds a run already; resume it, or pass overwrite=True"
                )
            shutil.rmtree(run_dir)
    try:
        if resume:
            rundir.check_resume_config(run_dir, config)
        splits = splits or data_lib.load_splits(config)
        tracker = Tracker(experiment)
        run_id = _open_run(tracker, name, run_dir, resume, parent_run_id, tags)
    except BaseException:
        if own_dir and not resume:
            rundir.release(run_dir)  # nothing was trained: leave no half-made folder behind
        raise
    tracker.log_params(run_id, config_lib.flatten(config))
    key = f"val/{config.train.select_metric}"
    # Epochs already in MLflow (a resumed run): not logged twice. Resume is exact, so an epoch
    # trained again after a kill has the values that were logged before it.
    logged = {m.step for m in tracker.client.get_metric_history(run_id, key)} if resume else set()

    def log_epoch(result: EpochResult) -> None:
        if result.epoch not in logged:
            tracker.log_metrics(run_id, result.metrics, step=result.epoch)
            logged.add(result.epoch)

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )
    task = bar.add_task(
        f"{name} ({config.model.name}, {config.train.num_seeds} seeds)",
        total=config.train.epochs,
        status="",
    )

    def show(result: EpochResult) -> None:
        m = result.metrics
        status = f"{key}={m[key]:.4f} worst={m[key.replace('val/', 'val/worst/')]:.4f} loss={m['train/loss']:.4f}"
        bar.update(task, completed=result.epoch, status=status + (" *" if result.is_best else ""))
        if not console.is_terminal:  # logs and pipes get one line per epoch instead of a live bar
            console.print(f"epoch {result.epoch}/{config.train.epochs}: {status}")

    start = time.time()
    try:
        with bar:
            result = run_training(
                config,
                splits,
                run_dir,
                hooks=[log_epoch, show],
                resume=resume,
                evaluate_test=evaluate_test,
                keep_val_probs=keep_val_probs,
                val_epoch=val_epoch,
            )
        for row in result.history:  # epochs checkpointed but not logged before a kill
            if int(row["epoch"]) not in logged:
                metrics = {k: v for k, v in row.items() if k != "epoch"}
                tracker.log_metrics(run_id, metrics, step=int(row["epoch"]))
        _finish(tracker, run_id, config, result, time.time() - start)
    except BaseException:
        tracker.end_run(run_id, status="FAILED")  # a crash still closes the run
        if own_dir:
            console.print(
                f"[yellow]run {name} stopped before it finished; "
                f"{run_dir / rundir.RESUME_NOTE} says how to continue it"
            )
        raise
    tracker.end_run(run_id, status="FINISHED")
    if own_dir:
        rundir.clear_resume_note(run_dir)
    return result


def _open_run(
    tracker: Tracker,
    name: str,
    run_dir: Path,
    resume: bool,
    parent_run_id: str | None,
    tags: dict[str, str] | None,
) -> str:
    """The MLflow run for ``run_dir``: the same run again when resuming (any older duplicate
    marked KILLED), else a new one; earlier runs of an overwritten folder are superseded."""
    for stale in tracker.reap():
        if stale.data.tags.get("ecgjax.run_dir") == str(run_dir):
            continue  # this very run, being resumed below
        console.print(
            f"[yellow]MLflow run {stale.info.run_name} was left RUNNING by a process that is gone: "
            f"marked KILLED. Its folder {stale.data.tags.get('ecgjax.run_dir')} has "
            f"{rundir.RESUME_NOTE} if it can be continued."
        )
    previous = tracker.find_runs("ecgjax.run_dir", str(run_dir))
    if resume and previous:
        run_id = previous[0].info.run_id
        for older in previous[1:]:
            tracker.supersede(older, f"duplicate of {run_id}")
        tracker.reopen(run_id)
        tracker.set_tags(run_id, tracking.process_tags())
        return run_id
    for old in previous:
        tracker.supersede(old, f"{run_dir} was started again (--overwrite)")
    return tracker.start_run(
        name,
        parent_id=parent_run_id,
        tags={
            "ecgjax.run_dir": str(run_dir),
            "ecgjax.kind": "train",
            **tracking.process_tags(),
            **(tags or {}),
        },
    )


def _finish(
    tracker: Tracker, run_id: str, config: ml_collections.ConfigDict, result: RunResult, wall: float
) -> None:
    names = list(config.data.class_names)
    tracker.log_metrics(
        run_id, {**result.test_metrics, "wall_seconds": wall}, step=result.epochs_run
    )
    tracker.set_tags(
        run_id,
        {
            "ecgjax.strategy": result.strategy,
            "ecgjax.dispatch": result.dispatch,
            "ecgjax.best_epoch": result.best_epoch,
        },
    )
    figures: list[Path] = []
    if result.history:
        figures.append(
            plots.curves_png(
                result.history, names, result.run_dir / "curves.png", config.train.select_metric
            )
        )
    if result.test_report is not None:
        cm = result.test_report["ensemble"]["confusion"]
        figures.append(
            plots.confusion_png(cm, names, result.run_dir / "confusion_test.png", "test, ensemble")
        )
    for fig in figures:
        tracker.log_artifact(run_id, fig, "figures")
    tracker.set_tags(run_id, {"ecgjax.checkpoint": str(result.run_dir)})
    _print_summary(config, result, wall)


def _print_summary(config: ml_collections.ConfigDict, result: RunResult, wall: float) -> None:
    console.print(
        f"best epoch {result.best_epoch}: val {config.train.select_metric} = {result.best_metric:.4f}; "
        f"strategy {result.strategy}/{result.dispatch}; {wall:.0f} s; checkpoint {result.run_dir}"
    )
    if result.test_report is None:
        if config.data.get("test_file") and int(config.data.cv_folds) < 2:
            console.print(
                f"the test file ({config.data.test_file}) was not evaluated; when the choice is "
                f"made: uv run scripts/evaluate.py {result.run_dir}"
            )
        return
    rep = result.test_report
    table = Table(title="test split (best epoch)")
    table.add_column("", no_wrap=True)
    for name in [*config.data.class_names, "macro recall", "accuracy"]:
        table.add_column(name, justify="right")
    rows = [(f"seed {config.seed + k}", m) for k, m in enumerate(rep["seeds"])]
    rows += [
        ("seed mean", rep["seed_mean"]),
        ("worst seed", rep["seed_worst"]),
        ("ensemble", rep["ensemble"]),
    ]
    for label, m in rows:
        table.add_row(
            label,
            *[f"{r:.4f}" for r in m["recall"]],
            f"{m['macro_recall']:.4f}",
            f"{m['accuracy']:.4f}",
        )
    console.print(table)
