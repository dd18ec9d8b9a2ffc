"""Re-score a CV run's out-of-fold pool under other prediction-time settings, without retraining.

Some switches act only when the model predicts: batch-norm adaptation (``data.adapt_norm``,
``data.adapt_rounds``, ``data.adapt_min_prob``) and the AF gate (``data.af_gate``). Choosing
them on the training patients needs the out-of-fold pool as each setting would give it, and
retraining every fold for a setting that training never sees would only add seed noise. So
each fold's checkpoint (its best epoch) predicts its own held-out records again with the
setting changed.

``epoch`` picks each fold's checkpoint: ``best`` (the epoch selected on that fold's own held-out
records, the very beats the pool scores, so a little optimistic) or ``last`` (its ``latest``
checkpoint, no such look); by default the epoch the run itself pooled (``data.cv_epoch``: ``last``
for runs since 2026-12-07, ``best`` before). Scoring an old run at ``last`` measures how much
the selection flattered it (``report/journal.md``, session 13). The result is a CV folder
(``cv.json``, ``fold<i>/config.json``, ``oof.npz``; no checkpoints) that
``scripts/cv_compare.py`` and ``scripts/cluster_study.py`` read like a trained one, paired beat
for beat with the original. With no change it reproduces the run's own ``oof.npz`` (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax import config as config_lib
from ecgjax.data import folds
from ecgjax.errors import UserError
from ecgjax.evaluation import evaluate
from ecgjax.studies import derived
from ecgjax.training.validate import validate

# Keys that change only how a trained model predicts, never what it learned. Cluster smoothing
# is left to cv_compare.py, which applies it to a pool when it scores it.
PREDICTION_KEYS = tuple(k for k in config_lib.PREDICTION_KEYS if not k.startswith("data.cluster"))


class RescoreError(UserError):
    """The CV folder cannot be re-scored (missing parts, or a key that training would see)."""


EPOCHS = {"best": "best", "last": "latest"}  # --epoch -> the fold's checkpoint folder


def default_name(cv_dir: Path, overrides: dict[str, Any], epoch: str | None = None) -> str:
    """``<run>-<key><value>...``, e.g. ``ip_cv4-adapt_rounds2``; ``-last``/``-best`` when an epoch
    is asked for."""
    parts = [
        f"{key.partition('.')[2]}{value:g}"
        if isinstance(value, float)
        else f"{key.partition('.')[2]}{value}"
        for key, value in sorted(overrides.items())
    ] + ([epoch] if epoch else [])
    return "-".join([cv_dir.name, *parts]) if parts else f"{cv_dir.name}-rescored"


def rescore(
    cv_dir: Path,
    overrides: dict[str, Any],
    out_dir: Path,
    *,
    overwrite: bool = False,
    epoch: str | None = None,
    on_fold: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predict every fold's held-out records with ``overrides`` and write the pool to ``out_dir``.

    ``epoch``: ``best`` or ``last`` (module docstring); None: the run's own ``data.cv_epoch``.

    Returns the new ``cv.json`` content (its ``out_of_fold`` is the pooled AAMI report after the
    run's cluster smoothing).

    Raises:
        RescoreError: a key outside :data:`PREDICTION_KEYS`, ``out_dir`` taken (without
            ``overwrite``) or the same as ``cv_dir``, or a fold whose records no longer match.
        DataError: ``cv_dir`` is not a complete CV run.
        CheckpointError: a fold's checkpoint is missing or damaged.
    """
    if epoch is not None and epoch not in EPOCHS:
        raise RescoreError(f"epoch={epoch!r}: use one of {sorted(EPOCHS)}")
    bad = sorted(set(overrides) - set(PREDICTION_KEYS))
    if bad:
        raise RescoreError(
            f"{', '.join(bad)}: not a prediction-time setting; re-scoring can change "
            f"{', '.join(PREDICTION_KEYS)} (anything else needs a new CV run)"
        )
    cv, config = derived.open_source(cv_dir, out_dir, overwrite=overwrite, error=RescoreError)
    epoch = epoch or str(config.data.cv_epoch)
    config.update_from_flattened_dict(overrides)
    validate(config)  # a bad combination fails before any fold is loaded
    cv_data = folds.load_cv(config)  # the training file, once: every fold deals from it
    arrays: dict[str, list[np.ndarray]] = {
        "probs": [],
        "y": [],
        "record": [],
        "x": [],
        "sample": [],
    }
    configs, scored = [], []
    for i, fold in enumerate(cv["folds"]):
        if on_fold is not None:
            on_fold(i, len(cv["folds"]))
        loaded = evaluate.load_ensemble(cv_dir / f"fold{i}" / EPOCHS[epoch])
        splits = cv_data.splits(i, loaded.config)
        held_out = sorted(set(np.asarray(splits.val.record).astype(str)))
        if held_out != sorted(fold["val_records"]):
            raise RescoreError(
                f"{cv_dir / f'fold{i}'}: its held-out records are {fold['val_records']} in "
                f"cv.json, but the training file deals {held_out} to it now (data changed?)"
            )
        loaded.config.update_from_flattened_dict(overrides)  # in place: the ensemble reads it
        loaded.config.data.cv_epoch = epoch  # the epoch this pool is scored at
        validate(loaded.config)
        probs = loaded.ensemble.predict(loaded.state, splits.val)
        arrays["probs"].append(probs.mean(0))
        arrays["y"].append(splits.val.y)
        arrays["record"].append(np.asarray(splits.val.record).astype(str))
        arrays["x"].append(np.asarray(splits.val.x, dtype=np.float32))
        if splits.val.sample is not None:
            arrays["sample"].append(np.asarray(splits.val.sample))
        configs.append(loaded.config)
        scored.append(loaded.epoch)
    pool = {key: np.concatenate(parts) for key, parts in arrays.items() if parts}
    made = {
        "rescored_from": str(cv_dir),
        "overrides": overrides,
        "epoch": epoch,
        "scored_epochs": scored,
    }
    return derived.write(out_dir, cv, configs, pool, made)
