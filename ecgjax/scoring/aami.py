"""AAMI EC57-style beat statistics: Se, +P and FPR per class, gross and per record (pure numpy).

The arrhythmia literature (de Chazal 2004 and everything that compares with it) reports each
class as one-vs-rest counts pooled over a protocol's test records:

- Se  (sensitivity)            = TP / (TP + FN)   -- undefined when the class has no beats;
- +P  (positive predictivity)  = TP / (TP + FP)   -- undefined when nothing is called that class;
- FPR (false positive rate)    = FP / (FP + TN)   -- undefined when every beat is of the class.

Undefined values are ``None`` in the JSON (never 0, which would read as a result).

*Gross* statistics pool the beats of all records. The *record average* computes the statistic
per record and averages it over the records where it is defined: Se over the records that hold
the class, +P over the records where the model predicted the class at least once (a record with
false alarms only counts with +P = 0), FPR over the records with at least one beat of another
class. Gross numbers are dominated by beat-rich records (on DS2 one record holds three quarters
of the S beats); the record average and the per-record table show that.

Confidence intervals (95 %, percentile) come from a bootstrap over *records*: a resample draws
records with replacement and recomputes the gross statistics, so the interval reflects
patient-to-patient variation, not only beat sampling. It is vectorised: one confusion matrix
per record, summed with the bootstrap counts (``(B, R) @ (R, C*C)``).

Macro summaries average the classes in ``macro_classes``: by default every class except Q
(AAMI EC57 leaves unclassifiable beats out of the SVEB/VEB statistics; Q has a handful of beats
on the inter-patient test set). Q keeps its own row in every table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

EXCLUDED_FROM_MACRO = ("Q",)
STATS = ("se", "ppv", "fpr")
STAT_LABELS = {"se": "Se", "ppv": "+P", "fpr": "FPR"}


def confusion(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(C, C)`` (rows true, columns predicted) as float64."""
    return confusion_by_record(y, pred, np.zeros(len(y), dtype=np.int64), num_classes)[1][0]


def confusion_by_record(
    y: np.ndarray, pred: np.ndarray, record: np.ndarray, num_classes: int
) -> tuple[list[str], np.ndarray]:
    """Record ids (sorted) and one confusion matrix per record ``(R, C, C)``."""
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if y.ndim != 1 or y.shape != pred.shape or np.shape(record) != y.shape or y.size == 0:
        raise ValueError(
            f"y, pred and record must be non-empty 1-D of one length; got {y.shape}, "
            f"{pred.shape}, {np.shape(record)}"
        )
    for what, v in (("y", y), ("pred", pred)):
        if v.min() < 0 or v.max() >= num_classes:
            raise ValueError(f"{what} has labels outside [0, {num_classes}): {np.unique(v)}")
    ids, member = np.unique(np.asarray(record).astype(str), return_inverse=True)
    c = num_classes
    flat = np.bincount((member * c + y) * c + pred, minlength=len(ids) * c * c)
    return [str(r) for r in ids], flat.reshape(len(ids), c, c).astype(np.float64)


def rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Se, +P, FPR ``(..., C)`` and accuracy ``(...)`` of confusion matrices ``(..., C, C)``.

    NaN marks an undefined value (see the module docstring).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    positives = cm.sum(-1)  # TP + FN
    called = cm.sum(-2)  # TP + FP
    total = cm.sum((-2, -1))
    negatives = total[..., None] - positives  # FP + TN
    fp = called - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "se": np.where(positives > 0, tp / positives, np.nan),
            "ppv": np.where(called > 0, tp / called, np.nan),
            "fpr": np.where(negatives > 0, fp / negatives, np.nan),
            "accuracy": np.where(total > 0, tp.sum(-1) / total, np.nan),
        }


def macro_classes(class_names: Sequence[str]) -> list[str]:
    """The classes averaged in macro summaries: all but Q (AAMI EC57), unless that is all."""
    kept = [n for n in class_names if n not in EXCLUDED_FROM_MACRO]
    return kept or list(class_names)


def number(x: Any) -> float | None:
    """``x`` as a float, ``None`` for NaN (JSON has no NaN)."""
    x = float(x)
    return None if np.isnan(x) else x


def nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    """``np.nanmean`` that stays NaN, without a warning, where nothing is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: undefined, stays NaN
        return np.nanmean(values, axis=axis)


def _section(r: dict[str, np.ndarray], names: Sequence[str], macro: Sequence[str]) -> dict:
    idx = [list(names).index(m) for m in macro]
    return {
        "accuracy": number(r["accuracy"]),
        "classes": {n: {s: number(r[s][c]) for s in STATS} for c, n in enumerate(names)},
        "macro": {s: number(nanmean(r[s][idx])) for s in STATS},
    }


def gross(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Gross statistics of one pooled confusion matrix, with the counts behind them."""
    cm = np.asarray(cm, dtype=np.float64)
    out = _section(rates(cm), class_names, macro_classes(class_names))
    tp = np.diag(cm)
    positives, called, total = cm.sum(1), cm.sum(0), cm.sum()
    for c, n in enumerate(class_names):
        fp = called[c] - tp[c]
        out["classes"][n] |= {
            "beats": int(positives[c]),
            "tp": int(tp[c]),
            "fn": int(positives[c] - tp[c]),
            "fp": int(fp),
            "tn": int(total - positives[c] - fp),
        }
    out["beats"] = int(total)
    return out


def record_average(cms: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-record statistics averaged over the records where each is defined."""
    r = rates(cms)
    mean = {k: nanmean(v, axis=0) for k, v in r.items()}
    out = _section(mean, class_names, macro_classes(class_names))
    for c, n in enumerate(class_names):
        out["classes"][n]["records"] = {s: int(np.isfinite(r[s][:, c]).sum()) for s in STATS}
    out["records"] = len(cms)
    return out


def per_record(records: Sequence[str], cms: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """One row per record: beats per class, accuracy, and Se/+P/FPR per class."""
    r = rates(cms)
    rows = []
    for i, rec in enumerate(records):
        row: dict[str, Any] = {
            "record": rec,
            "beats": {n: int(cms[i, c].sum()) for c, n in enumerate(class_names)},
            "accuracy": number(r["accuracy"][i]),
        }
        for s in STATS:
            row[s] = {n: number(r[s][i, c]) for c, n in enumerate(class_names)}
        rows.append(row)
    return rows


def bootstrap_ci(
    cms: np.ndarray,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile intervals of the gross statistics, resampling records with replacement.

    A resample in which a statistic is undefined (e.g. no record with S beats drawn) is left
    out of that statistic's interval; ``defined`` says how many resamples remained.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    cms = np.asarray(cms, dtype=np.float64)
    n_rec, c = cms.shape[0], cms.shape[1]
    key = np.random.default_rng(seed)
    idx = key.integers(0, n_rec, size=(n_boot, n_rec))
    idx += np.arange(n_boot)[:, None] * n_rec  # row b counts into its own block of R bins
    counts = np.bincount(idx.ravel(), minlength=n_boot * n_rec).reshape(n_boot, n_rec)
    boot = (counts.astype(np.float64) @ cms.reshape(n_rec, c * c)).reshape(n_boot, c, c)
    r = rates(boot)
    macro = [list(class_names).index(m) for m in macro_classes(class_names)]
    r_macro = {s: nanmean(r[s][:, macro], axis=1) for s in STATS}
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def interval(v: np.ndarray) -> list[float | None] | None:
        v = v[np.isfinite(v)]
        return [float(x) for x in np.percentile(v, q)] if v.size else None

    return {
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "unit": "records",
        "accuracy": interval(r["accuracy"]),
        "classes": {
            n: {s: interval(r[s][:, k]) for s in STATS}
            | {"defined": {s: int(np.isfinite(r[s][:, k]).sum()) for s in STATS}}
            for k, n in enumerate(class_names)
        },
        "macro": {s: interval(r_macro[s]) for s in STATS},
    }


def report(
    y: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    record: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    protocol: str | None = None,
) -> dict[str, Any]:
    """The full AAMI section: gross, record average, per-record table and record-bootstrap CIs.

    Args:
        y: ``(N,)`` true labels.
        pred: ``(N,)`` predicted labels, or ``(N, C)`` probabilities (argmax is taken).
        class_names: names of the ``C`` classes, in label order.
        record: ``(N,)`` record (patient) id of each beat. Without it only gross statistics are
            given, with a note saying why.
        n_boot: bootstrap resamples of records; 0 skips the intervals.
        seed: seed of the bootstrap.
        protocol: where the numbers come from (see :mod:`ecgjax.evaluation.patients`), copied into the
            section so that no number travels without it.
    """
    names = list(class_names)
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(-1)
    groups = np.zeros(len(y), dtype=np.int64) if record is None else np.asarray(record)
    records, cms = confusion_by_record(y, pred, groups, len(names))
    out: dict[str, Any] = {
        "protocol": protocol,
        "class_names": names,
        "macro_classes": macro_classes(names),
        "gross": gross(cms.sum(0), names),
        "record_average": None,
        "per_record": None,
        "ci": None,
        "note": None,
    }
    if record is None:
        out["note"] = (
            "no 'record' column: gross statistics only (no record average, per-record table "
            "or record-bootstrap intervals)"
        )
        return out
    out["record_average"] = record_average(cms, names)
    out["per_record"] = per_record(records, cms, names)
    if n_boot > 0:
        out["ci"] = bootstrap_ci(cms, names, n_boot, seed)
    return out
