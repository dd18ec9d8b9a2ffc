"""Leave-records-out k-fold cross-validation inside the training file (honest selection).

One validation split of a few records is a noisy judge of a model for new patients: which
records land in it moves macro recall by more than most hyper-parameters do. With
``data.cv_folds = k >= 2`` every record of the training file is validated exactly once, in
one of k folds of whole records, and a setting is scored by the mean over folds with the
spread across them. The test file plays no part in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax.data.beats import BeatData, DataError
from ecgjax.data.load import Splits, load_splits, shrink

Fold = tuple[np.ndarray, np.ndarray]


def record_folds(
    record: np.ndarray,
    y: np.ndarray,
    k: int,
    seed: int,
    tries: int = 200,
    strata: np.ndarray | None = None,
) -> list[Fold]:
    """Assign whole records to ``k`` folds, class counts balanced as far as records allow.

    ``strata`` (bool per beat, e.g. "in atrial fibrillation") is balanced like one more class:
    its records are spread over the folds, so no fold holds them all out (a held-out AF
    patient is then judged by a model that trained on another AF patient, as the final model
    meets DS2's AF patients having trained on DS1's).

    Each of ``tries`` seeded record orders is dealt greedily, every record to the fold where
    it adds least to the sum of squared per-class (and beat) shares, so a fold already rich
    in the record's classes is avoided. The best deal wins: fewest (fold, class) pairs with the class
    missing from the fold's validation or its training side, then per-class shares closest
    to ``1/k``, then beat counts closest to equal.

    Returns:
        ``k`` pairs ``(train_idx, val_idx)`` of sorted beat indices; every beat is in exactly
        one ``val_idx``, and no record is on both sides of a fold.

    Raises:
        ValueError: ``k < 2``, fewer records than folds, or mismatched lengths.
    """
    record = np.asarray(record).astype(str)
    y = np.asarray(y)
    if len(record) != len(y):
        raise ValueError(f"record ({len(record)}) and y ({len(y)}) differ in length")
    names, inverse = np.unique(record, return_inverse=True)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if len(names) < k:
        raise ValueError(f"{k} folds need at least {k} records, found {len(names)}")
    per_record = np.zeros((len(names), int(y.max()) + 1 if len(y) else 1))
    np.add.at(per_record, (inverse, y), 1)
    size = per_record.sum(axis=1) / len(y)  # beats only: the stratum column is not counted
    if strata is not None:
        if len(strata) != len(y):
            raise ValueError(f"strata ({len(strata)}) and y ({len(y)}) differ in length")
        extra = np.zeros(len(names))
        np.add.at(extra, inverse, np.asarray(strata, dtype=bool).astype(float))
        per_record = np.column_stack([per_record, extra])
    totals = per_record.sum(axis=0)
    present = totals > 0
    share = per_record[:, present] / totals[present]  # each record's share of each class
    key = np.random.default_rng(seed)
    best: np.ndarray | None = None
    best_score = (np.inf, np.inf, np.inf)
    for _ in range(tries):
        fold_of = _deal(share, size, k, key.permutation(len(names)))
        score = _score(share, size, fold_of, k)
        if score < best_score:
            best, best_score = fold_of, score
    assert best is not None
    beat_fold = best[inverse]
    return [(np.flatnonzero(beat_fold != f), np.flatnonzero(beat_fold == f)) for f in range(k)]


def _deal(share: np.ndarray, size: np.ndarray, k: int, order: np.ndarray) -> np.ndarray:
    """Greedy: largest records first (ties in the random ``order``), each to its best fold."""
    order = order[np.argsort(-share[order].max(axis=1), kind="stable")]
    loads = np.zeros((k, share.shape[1]))
    beats = np.zeros(k)
    fold_of = np.zeros(len(share), dtype=int)
    for r in order:
        # Growth of the fold's sum of squared shares (the r-only terms are the same for all).
        cost = (loads * share[r]).sum(axis=1) + beats * size[r]
        empty = beats == 0  # every fold gets a record before any gets a second
        f = int(np.argmin(np.where(empty, -1.0, cost))) if empty.any() else int(np.argmin(cost))
        loads[f] += share[r]
        beats[f] += size[r]
        fold_of[r] = f
    return fold_of


def _score(
    share: np.ndarray, size: np.ndarray, fold_of: np.ndarray, k: int
) -> tuple[float, float, float]:
    loads = np.stack([share[fold_of == f].sum(axis=0) for f in range(k)])
    one_sided = np.count_nonzero((loads < 1e-12) | (loads > 1 - 1e-12))
    beats = np.array([size[fold_of == f].sum() for f in range(k)])
    return (
        float(one_sided),
        float(np.abs(loads - 1 / k).sum()),
        float(np.abs(beats - 1 / k).sum()),
    )


@dataclass(frozen=True)
class CrossValidation:
    """The whole training file, the test file and the folds of the training file's records."""

    pool: BeatData
    test: BeatData
    folds: list[Fold]

    def splits(self, i: int, config: ml_collections.ConfigDict) -> Splits:
        """Fold ``i`` as train/val/test, subsampled like a single-split run when asked."""
        tr, va = self.folds[i]
        return shrink(self.pool.subset(tr), self.pool.subset(va), self.test, config.data)


def load_cv(config: ml_collections.ConfigDict) -> CrossValidation:
    """Load the configured files and cut the training file into ``data.cv_folds`` folds.

    The files are read by :func:`ecgjax.data.load_splits` with no validation carved out, so
    the beats (RR context and any per-record inputs included) are exactly those of a
    single-split run; ``data.val_split`` and ``data.val_fraction`` play no part. Beats whose
    annotated rhythm is in ``data.cv_rhythms`` are spread over the folds (files prepared
    before the ``rhythm`` column existed deal by class alone).

    Raises:
        DataError: the training file has no ``record`` column (folds are of patients).
        ValueError: fewer records than folds.
    """
    whole = config_lib.with_overrides(
        config, {"data.val_split": "stratified", "data.val_fraction": 0.0, "data.max_train": 0}
    )
    splits = load_splits(whole)
    pool = splits.train
    if pool.record is None:
        raise DataError(
            f"{pool.source}: data.cv_folds={config.data.cv_folds} needs a 'record' column"
        )
    rhythms = [r for r in str(config.data.cv_rhythms).split(",") if r]
    strata = None
    if rhythms and pool.rhythm is not None:
        strata = np.isin(pool.rhythm, rhythms)
    folds = record_folds(
        pool.record,
        pool.y,
        int(config.data.cv_folds),
        int(config.data.split_seed),
        strata=strata,
    )
    return CrossValidation(pool, splits.test, folds)


def headline_keys(config: ml_collections.ConfigDict) -> list[str]:
    """The validation metrics whose spread across folds is worth logging and printing."""
    names = ["macro_f2", "recall_floor", "macro_recall", "macro_f1", "accuracy"]
    names += [f"recall_{n}" for n in config.data.class_names]
    chosen = [str(config.train.select_metric), str(config.tune.metric).partition("/")[2]]
    return list(dict.fromkeys(f"val/{n}" for n in [*chosen, *names]))


def summarize(
    fold_metrics: Sequence[dict[str, float]],
    supports: Sequence[np.ndarray],
    class_names: Sequence[str],
    spread: Sequence[str],
) -> dict[str, float]:
    """Fold mean of every metric the folds share, and the spread of the ``spread`` keys.

    Returns ``{key: mean}`` for every metric key (``prefix/name``; ``epoch`` is not one), plus ``fold_std/``, ``fold_min/`` and
    ``fold{i}/`` values of the ``spread`` keys (the prefix stays in front:
    ``val/fold_std/macro_f2``). A per-class value (``recall_S``) averages only the folds
    whose validation holds that class (``supports[i][c] > 0``): reported as 0.0 elsewhere,
    it would pull the mean down for a class the fold could not measure.
    """
    out: dict[str, float] = {}
    keys = [k for k in fold_metrics[0] if "/" in k and all(k in m for m in fold_metrics)]
    for key in keys:
        c = _class_of(key, class_names)
        measured = [c is None or s[c] > 0 for s in supports]
        values = np.array([m[key] for m, ok in zip(fold_metrics, measured, strict=True) if ok])
        if not len(values):
            values = np.zeros(1)  # no fold measured this class: 0.0, as for one split
        out[key] = float(values.mean())
        if key in spread:
            prefix, _, rest = key.partition("/")
            out[f"{prefix}/fold_std/{rest}"] = float(values.std())
            out[f"{prefix}/fold_min/{rest}"] = float(values.min())
            for i, m in enumerate(fold_metrics):
                out[f"{prefix}/fold{i}/{rest}"] = float(m[key])
    return out


def _class_of(key: str, class_names: Sequence[str]) -> int | None:
    leaf = key.rsplit("/", 1)[-1]
    for c, name in enumerate(class_names):
        if leaf in (f"recall_{name}", f"precision_{name}", f"f1_{name}"):
            return c
    return None
