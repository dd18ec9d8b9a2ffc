"""``scripts/train.py`` with ``data.cv_folds >= 2``: one ensemble per fold, scored by the fold mean.

Each fold is a normal run (:func:`ecgjax.training.experiment.train_run`) on that fold's records,
checkpointed under ``checkpoints/<run>/fold<i>/`` and logged as a child of one MLflow parent
run. The parent holds the fold-mean validation curves (``val/...`` per epoch, with
``val/fold_std/...`` and ``val/fold_min/...``) and the score: ``cv/<metric>``, the mean over
folds at each fold's scored epoch, with ``cv/fold_std/`` and ``cv/fold_min/``. The scored
epoch (``data.cv_epoch``) is each fold's last by default: its best would be chosen on the very
records it scores, which raised DS1's pooled S sensitivity by about .04 (``report/journal.md``,
session 13); ``best`` keeps the old behaviour, and runs made before the key read as ``best``.
The test file is never evaluated here, so nothing chosen from these numbers has looked at it;
``refit`` then trains one ordinary run (the single validation split) and evaluates the test
file once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from rich.table import Table

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import folds
from ecgjax.scoring import aami, aami_tables
from ecgjax.scoring import af_gate as af_gate_lib
from ecgjax.tracking import Tracker, process_tags
from ecgjax.training import rundir
from ecgjax.training.checkpoint import write_atomic, write_json_atomic
from ecgjax.training.experiment import console, train_run
from ecgjax.training.run import RunResult, label_free_steps


@dataclass
class CVResult:
    run_dir: Path
    folds: list[RunResult]
    score: dict[str, float]  # cv/<metric>, cv/fold_std/<metric>, cv/fold_min/<metric>
    epoch_means: list[dict[str, float]]  # fold means per epoch (epochs every fold ran)
    refit: RunResult | None = None
    # AAMI section (ecgjax.scoring.aami.report) of the pooled out-of-fold ensemble predictions
    out_of_fold: dict[str, Any] | None = None


def pooled_probs(
    arrays: dict[str, np.ndarray],
    names: list[str],
    smoothing: float = 0.0,
    k: int = 8,
    gate: af_gate_lib.GateSettings = af_gate_lib.OFF,
    source: str = "the out-of-fold pool",
    sv_split: float = 0.0,
) -> np.ndarray:
    """The pool's ensemble probabilities after the recipe's post-processing, as evaluation
    applies it (:func:`ecgjax.training.run.postprocess`): cluster smoothing, then the rhythm
    gates on S (the AF gate, the prematurity gate), then the cluster-shared S/V split.

    Raises:
        DataError: the gate is on but the pool has no beat positions (``oof.npz`` written before
            they were kept; ``scripts/cv_rescore.py`` writes a pool with them).
    """
    if gate.active and "sample" not in arrays:
        raise data_lib.DataError(
            f"{source}: the rhythm gates (data.af_gate, data.prematurity_gate) need each beat's "
            "sample position, which this pool (written before positions were kept) lacks; "
            "re-score it with scripts/cv_rescore.py"
        )
    try:
        probs = label_free_steps(
            arrays["probs"][None].astype(np.float64),
            arrays["x"],
            arrays["record"],
            arrays.get("sample"),
            names,
            source,
            smoothing=smoothing,
            k=k,
            gate=gate,
            sv_split=sv_split,
        )
    except ValueError as err:
        raise data_lib.DataError(str(err)) from None
    return probs[0]


def pool_out_of_fold(
    arrays: dict[str, np.ndarray],
    names: list[str],
    smoothing: float = 0.0,
    k: int = 8,
    gate: af_gate_lib.GateSettings = af_gate_lib.OFF,
    sv_split: float = 0.0,
) -> dict[str, Any]:
    """AAMI statistics of every training record predicted once, by the fold that held it out.

    The fold means above average k small validation sets; this pools them, so each record
    counts by its beats, per-record rows show which patients fail (an AF record, a V-rich one)
    and the intervals resample records. Argmax of each fold's ensemble at its scored epoch (after
    the config's post-processing, as evaluation would apply it); the training patients only,
    so it is fit for selection.
    """
    probs = pooled_probs(arrays, names, smoothing, k, gate, sv_split=sv_split)
    protocol = (
        "inter-patient (out-of-fold: each training record predicted by a model that never saw it)"
    )
    return aami.report(arrays["y"], probs, names, arrays["record"], protocol=protocol)


def out_of_fold_arrays(
    results: list[RunResult], fold_splits: list[data_lib.Splits]
) -> dict[str, np.ndarray] | None:
    """Each training beat once, as its held-out fold saw it: ensemble probabilities, label,
    record, the beat itself and its position (saved as ``oof.npz``, so post-processing such as
    :mod:`ecgjax.scoring.clusters` or :mod:`ecgjax.scoring.af_gate` can be chosen on training
    patients without retraining)."""
    if any(r.val_probs is None for r in results) or any(s.val.record is None for s in fold_splits):
        return None
    arrays = {
        "probs": np.concatenate([np.asarray(r.val_probs).mean(0) for r in results]),
        "y": np.concatenate([s.val.y for s in fold_splits]),
        "record": np.concatenate([np.asarray(s.val.record).astype(str) for s in fold_splits]),
        "x": np.concatenate([np.asarray(s.val.x, dtype=np.float32) for s in fold_splits]),
    }
    if all(s.val.sample is not None for s in fold_splits):  # the AF gate reads positions
        arrays["sample"] = np.concatenate([np.asarray(s.val.sample) for s in fold_splits])
    return arrays


def train_cv(
    config: ml_collections.ConfigDict,
    *,
    run_name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    experiment: str = "ecgjax-train",
    progress: bool = True,
    refit: bool = False,
    refit_test: bool = True,
    command: Sequence[str] | None = None,
) -> CVResult:
    """Cross-validate ``config`` over the records of its training file (``data.cv_folds`` folds).

    ``refit`` trains one ordinary run after the folds, which evaluates the test file unless
    ``refit_test`` is off.

    Raises:
        ValueError: ``data.cv_folds < 2``, or fewer records than folds.
        DataError: the training file has no ``record`` column.
        RunDirError: the name is taken, or there is nothing to resume under it.
    """
    k = int(config.data.cv_folds)
    if k < 2:
        raise ValueError(f"data.cv_folds={k}: cross-validation needs 2 or more folds")
    run_dir = rundir.claim(
        paths.checkpoints_dir(),
        run_name,
        f"{config.name}-cv{k}",
        resume=resume,
        overwrite=overwrite,
    )
    name = run_dir.name
    rundir.write_resume_note(run_dir, rundir.resume_command(command, name))
    try:
        if resume:
            rundir.check_resume_config(run_dir, config)
        cv = folds.load_cv(config)
    except BaseException:
        if not resume:
            rundir.release(run_dir)
        raise
    names = list(config.data.class_names)
    console.print(
        f"{k}-fold cross-validation over the {len(np.unique(np.asarray(cv.pool.record)))} records of "
        f"{cv.pool.source}; the test file is not evaluated"
        + (" until the refit" if refit else " (selection must not look at it)")
    )
    tracker = Tracker(experiment)
    previous = tracker.find_runs("ecgjax.run_dir", str(run_dir))
    if resume and previous:
        parent = previous[0].info.run_id
        tracker.reopen(parent)
    else:
        for old in previous:
            tracker.supersede(old, f"{run_dir} was started again (--overwrite)")
        tags = {"ecgjax.run_dir": str(run_dir), "ecgjax.kind": "cv", "ecgjax.cv_folds": k}
        parent = tracker.start_run(name, tags=tags | process_tags())
    tracker.log_params(parent, config_lib.flatten(config))
    status = "FAILED"
    which = str(config.data.cv_epoch)
    try:
        fold_splits = [cv.splits(i, config) for i in range(k)]
        results = [
            train_run(
                config,
                run_name=f"{name}/fold{i}",
                resume=resume,
                experiment=experiment,
                progress=progress,
                run_dir=run_dir / f"fold{i}",
                splits=splits,
                tags={"ecgjax.kind": "cv_fold", "ecgjax.cv_fold": str(i)},
                parent_run_id=parent,
                evaluate_test=False,
                keep_val_probs=True,
                val_epoch=which,
            )
            for i, splits in enumerate(fold_splits)
        ]
        supports = [data_lib.class_counts(s.val.y, len(names)) for s in fold_splits]
        spread = folds.headline_keys(config)
        scored = [scored_row(r, which) for r in results]
        summary = folds.summarize(scored, supports, names, spread)
        score = {
            f"cv/{key.partition('/')[2]}": v for key, v in summary.items() if key[:4] == "val/"
        }
        epoch_means = []
        for e in range(1, min(r.epochs_run for r in results) + 1):
            rows = [r.history[e - 1] for r in results]
            epoch_means.append({"epoch": e, **folds.summarize(rows, supports, names, spread)})
            tracker.log_metrics(parent, epoch_means[-1], step=e)
        tracker.log_metrics(parent, score, step=max(r.epochs_run for r in results))
        status = "FINISHED"
    finally:
        tracker.end_run(parent, status=status)
    out = CVResult(run_dir, results, score, epoch_means)
    arrays = out_of_fold_arrays(results, fold_splits)  # None when a fold has no record ids
    if arrays is not None:
        write_atomic(
            run_dir / "oof.npz",
            lambda f: np.savez_compressed(f, **arrays),  # type: ignore[arg-type]
            binary=True,
        )
        out.out_of_fold = pool_out_of_fold(
            arrays,
            names,
            float(config.data.cluster_smoothing),
            int(config.data.cluster_k),
            af_gate_lib.GateSettings.from_config(config.data),
            float(config.data.sv_split),
        )
    if out.out_of_fold is not None:
        tracker.log_metrics(
            parent,
            aami_tables.flat_metrics(out.out_of_fold, "cv/oof"),
            step=max(r.epochs_run for r in results),
        )
    _write_summary(out, cv, config)
    _print_table(config, out, fold_splits)
    if refit:
        single = config_lib.with_overrides(config, {"data.cv_folds": 0})
        console.print(
            "refit: one ordinary run (single validation split)"
            + ("; the test file, once" if refit_test else "; the test file is not evaluated")
        )
        out.refit = train_run(
            single,
            run_name=f"{name}/refit",
            resume=resume,
            experiment=experiment,
            progress=progress,
            run_dir=run_dir / "refit",
            tags={"ecgjax.cv_parent": name},
            evaluate_test=refit_test,
        )
    rundir.clear_resume_note(run_dir)
    return out


def scored_epoch(result: RunResult, which: str) -> int:
    """The epoch a fold is pooled and scored at: its best (``data.cv_epoch='best'``, selected on
    the fold's own held-out records) or its last (no look at them)."""
    return result.best_epoch if which == "best" else result.epochs_run


def scored_row(result: RunResult, which: str) -> dict[str, Any]:
    """The fold's validation history row at its :func:`scored_epoch`."""
    epoch = scored_epoch(result, which)
    return next(h for h in result.history if h["epoch"] == epoch)


def _write_summary(
    out: CVResult, cv: folds.CrossValidation, config: ml_collections.ConfigDict
) -> None:
    """``cv.json`` beside the fold folders: which records each fold validated, and the score."""
    record = np.asarray(cv.pool.record).astype(str)
    summary: dict[str, Any] = {
        "cv_folds": int(config.data.cv_folds),
        "split_seed": int(config.data.split_seed),
        "train_file": cv.pool.source,
        "select_metric": str(config.train.select_metric),
        "epoch": str(config.data.cv_epoch),
        "folds": [
            {
                "val_records": sorted(set(record[va])),
                "best_epoch": r.best_epoch,
                "scored_epoch": scored_epoch(r, str(config.data.cv_epoch)),
                "run_dir": str(r.run_dir),
            }
            for (_, va), r in zip(cv.folds, out.folds, strict=True)
        ],
        "score": out.score,
        "out_of_fold": out.out_of_fold,
    }
    write_json_atomic(out.run_dir / "cv.json", summary)


def _print_table(
    config: ml_collections.ConfigDict, out: CVResult, fold_splits: list[data_lib.Splits]
) -> None:
    metric = str(config.train.select_metric)
    names = list(config.data.class_names)
    which = str(config.data.cv_epoch)
    at = "its best epoch (chosen on these records)" if which == "best" else "its last epoch"
    table = Table(
        title=f"{len(out.folds)}-fold CV, validation (seed mean, each fold at {at}); "
        "test not evaluated"
    )
    table.add_column("", no_wrap=True)
    for col in ["records", "epoch", metric, *[f"recall {n}" for n in names]]:
        table.add_column(col, justify="right")
    keys = [metric, *[f"recall_{n}" for n in names]]
    for i, (r, s) in enumerate(zip(out.folds, fold_splits, strict=True)):
        h = scored_row(r, which)
        support = data_lib.class_counts(s.val.y, len(names))
        cells = [f"{h[f'val/{metric}']:.4f}"]
        cells += [f"{h[f'val/recall_{n}']:.4f}" if support[c] else "-" for c, n in enumerate(names)]
        records = len(np.unique(np.asarray(s.val.record)))
        table.add_row(f"fold {i}", str(records), str(h["epoch"]), *cells)
    sc = out.score
    table.add_row(
        "mean±std", "", "", *[f"{sc[f'cv/{k}']:.3f}±{sc[f'cv/fold_std/{k}']:.3f}" for k in keys]
    )
    table.add_row("worst", "", "", *[f"{sc[f'cv/fold_min/{k}']:.4f}" for k in keys])
    console.print(table)
    if out.epoch_means:
        key = f"val/{metric}"
        top = max(out.epoch_means, key=lambda m: m[key])
        console.print(
            f"CV score {metric} = {sc[f'cv/{metric}']:.4f} ± {sc[f'cv/fold_std/{metric}']:.4f} "
            f"(worst fold {sc[f'cv/fold_min/{metric}']:.4f}); the fold mean peaks at epoch "
            f"{int(top['epoch'])} ({top[key]:.4f}). Folds: {out.run_dir}/fold<i>; summary cv.json"
        )
    if out.out_of_fold is not None:
        console.print(aami_tables.gross_table(out.out_of_fold, "Pooled out-of-fold predictions"))
