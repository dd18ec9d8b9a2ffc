"""The cross-validated Ray Tune trainable (``data.cv_folds >= 2``): k fold ensembles per trial.

A trial trains its k fold ensembles in turn, epoch by epoch (epoch e of fold 0..k-1, then
one report), so ASHA sees the fold-mean objective every epoch and can stop a poor setting
early. The report keeps the single-split key names for the fold means (``val/macro_f2`` is
the mean over folds: the tuning objective, the ranked table and the MLflow callback need no
change) and adds, for the headline metrics, ``val/fold<i>/...``, ``val/fold_std/...`` and
``val/fold_min/...``. One Tune checkpoint holds ``fold<i>/`` folders laid out as the
single-split trainable's, so pause/resume (ASHA, HyperBand) and PBT's cloning work per fold.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from ecgjax import data as data_lib
from ecgjax.data import folds
from ecgjax.tuning import ledger
from ecgjax.tuning.trainable import (
    MARKER,
    STATE_DIR,
    SweepContext,
    adopt_checkpoint,
    epoch_metrics,
    start_trial,
)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse what a cross-validated sweep cannot do, before anything starts.

    Raises:
        ValueError: per-fold early stopping (folds would drift apart in epochs; the scheduler
            stops a trial instead).
    """
    if int(config.train.early_stop_patience):
        raise ValueError(
            "data.cv_folds >= 2 in a sweep: set train.early_stop_patience=0 "
            "(the scheduler stops trials on the fold mean)"
        )


def train_cv_trial(
    params: dict[str, Any], *, cv: folds.CrossValidation, sweep: SweepContext
) -> None:
    """The Ray Tune function trainable: k fold ensembles, reported as their mean per epoch."""
    trial = start_trial(params, sweep, (cv.pool.source, cv.test.source), check_config)
    from ecgjax.training.run import TrainingRun  # after the XLA variables are set

    config, own = trial.config, trial.data_config
    cv = folds.load_cv(own) if own is not None else cv  # the same folds: records and labels

    trial_id, run_dir = trial.trial_id, trial.run_dir
    names = list(config.data.class_names)
    fold_splits = [cv.splits(i, config) for i in range(len(cv.folds))]
    supports = [data_lib.class_counts(s.val.y, len(names)) for s in fold_splits]
    spread = folds.headline_keys(config)
    runs: list[TrainingRun] = []
    try:
        with contextlib.ExitStack() as stack:
            folder = trial.open_checkpoint(stack)
            for i, splits in enumerate(fold_splits):
                fold_dir = run_dir / f"fold{i}"
                restore = None
                if folder is None:
                    ledger.rewind(fold_dir, 0)  # a fresh start after a kill: no step saved twice
                else:
                    adopt_checkpoint(fold_dir, folder / f"fold{i}", trial_id)
                    restore = folder / f"fold{i}" / STATE_DIR
                runs.append(TrainingRun(config, splits, fold_dir, restore_from=restore))
        while not runs[0].done:
            results = [run.step() for run in runs]
            summary = folds.summarize([r.metrics for r in results], supports, names, spread)
            best_epoch = _best_epoch(runs, supports, names, f"val/{config.train.select_metric}")
            confusion = sum(np.asarray(r.val_report["ensemble"]["confusion"]) for r in results)
            pooled = np.asarray(confusion).tolist()  # over the folds
            metrics = epoch_metrics(summary, results[0].epoch, best_epoch, pooled)
            with tempfile.TemporaryDirectory() as tmp:
                for i, (run, r) in enumerate(zip(runs, results, strict=True)):
                    _save_fold(Path(tmp) / f"fold{i}", run, r.epoch, trial_id)
                saved = [
                    run_dir / f"fold{i}" / w / str(r.epoch)
                    for i, r in enumerate(results)
                    for w in ("latest", "best")[: 1 + r.is_best]
                ]
                trial.report(metrics, Path(tmp), saved)
    finally:
        for run in runs:
            run.close()


def _save_fold(folder: Path, run: Any, epoch: int, trial_id: str) -> None:
    from ecgjax.training import checkpoint as ckpt

    ckpt.save_dir(folder / STATE_DIR, run.state, run.progress)
    (folder / MARKER).write_text(json.dumps({"trial_id": trial_id, "epoch": epoch}))


def _best_epoch(runs: list[Any], supports: list[np.ndarray], names: list[str], key: str) -> int:
    """The epoch whose fold mean of ``key`` is best so far (from every fold's history)."""
    histories = [run.progress["history"] for run in runs]
    means = [
        folds.summarize([h[e] for h in histories], supports, names, ())[key]
        for e in range(len(histories[0]))
    ]
    return int(histories[0][int(np.argmax(means))]["epoch"])
