"""Index splits and class weights: validation carved by class or by patient, subsamples.

Pure numpy on label (and record) arrays, so the same rules serve every data set and the
cross-validation folds (:mod:`ecgjax.data.folds`).
"""

from __future__ import annotations

import numpy as np


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class keeps its share; every class with 2+ beats is on both sides."""
    y = np.asarray(y)
    key = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = key.permutation(np.flatnonzero(y == c))
        k = round(val_fraction * len(idx))
        if len(idx) >= 2 and val_fraction > 0:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def record_split(
    record: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, tries: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Split by patient, keeping class shares as close to ``val_fraction`` as records allow.

    Whole records go to validation until it holds ``val_fraction`` of the beats. A single
    random order often leaves a rare class (V, S) out of validation entirely, which makes
    its recall unmeasurable; so ``tries`` seeded orders are drawn and the best wins: fewest
    classes missing from one side, then per-class shares closest to ``val_fraction``.
    At least one record stays on each side when there are two or more.
    """
    record = np.asarray(record).astype(str)
    y = np.asarray(y)
    if len(record) != len(y):
        raise ValueError(f"record ({len(record)}) and y ({len(y)}) differ in length")
    names, inverse = np.unique(record, return_inverse=True)
    per_record = np.zeros((len(names), int(y.max()) + 1 if len(y) else 1))
    np.add.at(per_record, (inverse, y), 1)
    totals = per_record.sum(axis=0)
    key = np.random.default_rng(seed)
    best, best_score = np.zeros(len(names), dtype=bool), np.inf
    for _ in range(tries):
        chosen = np.zeros(len(names), dtype=bool)
        for r in key.permutation(len(names)):
            if per_record[chosen].sum() >= val_fraction * len(y) or chosen.sum() >= len(names) - 1:
                break
            chosen[r] = True
        share = per_record[chosen].sum(axis=0)[totals > 0] / totals[totals > 0]
        one_sided = np.count_nonzero((share == 0) | (share == 1))  # a class missing on a side
        score = one_sided + np.abs(share - val_fraction).sum()
        if score < best_score:
            best, best_score = chosen, score
    is_val = best[inverse]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def stratified_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` indices in class proportion, keeping every class where ``n`` allows."""
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts * n / len(y)).astype(int)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # the minimum of one per class may overshoot: trim the largest
        quota[np.argmax(quota)] -= 1
    rest = n - quota.sum()
    for i in np.argsort(-(counts * n / len(y) - quota))[:rest]:
        quota[i] += 1
    key = np.random.default_rng(seed)
    picks = [
        key.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Beats per class, int64 ``(C,)``."""
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.int64)


def patient_factors(y: np.ndarray, record: np.ndarray, power: float) -> np.ndarray:
    """Per-beat sampling multipliers that spread each class over its patients, float64 ``(N,)``.

    A beat of class ``c`` from a record holding ``n`` beats of ``c`` gets ``n ** -power``,
    scaled so each class's beats still sum to its count: the class mix is unchanged, but
    within a class a patient with 1,000 ventricular beats no longer outweighs ten patients
    with 30 each (``power=1``: every patient alike; ``0``: every beat alike, all ones).
    New patients resemble the training *patients*, not their beats.
    """
    y, record = np.asarray(y), np.asarray(record)
    out = np.ones(len(y), np.float64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        _, which, counts = np.unique(record[rows], return_inverse=True, return_counts=True)
        w = counts[which].astype(np.float64) ** -float(power)
        out[rows] = w * len(rows) / w.sum()
    return out


def class_weights(y: np.ndarray, num_classes: int, power: float = 1.0) -> np.ndarray:
    """Inverse-frequency weights ``(1/freq)**power`` with a beat-weighted mean of 1.

    The normalisation keeps the loss scale (and so the learning rate) comparable to plain CE;
    absent classes get weight 0 since they contribute nothing.
    """
    counts = class_counts(y, num_classes).astype(np.float64)
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = (counts.sum() / counts[present]) ** power
    w /= (w * counts).sum() / counts.sum()
    return w.astype(np.float32)
