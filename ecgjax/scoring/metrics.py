"""Recall-first classification metrics, per seed and for the ensemble (numpy, outside jit).

Conventions (chosen so that no logged metric is ever NaN):

- A class *absent from y_true* (e.g. Q in the inter-patient test set) has undefined recall.
  It is excluded from the macro means (``macro_recall``, ``macro_precision``, ``macro_f1``
  average over the classes present in ``y_true``), so ``macro_recall == balanced_accuracy``
  exactly as scikit-learn's ``balanced_accuracy_score``; its per-class recall, precision and
  F1 are reported as 0.0. This equals sklearn's ``*_score(..., labels=present,
  average='macro', zero_division=0)``.
- The precision of a class that is never predicted is 0.0 (sklearn ``zero_division=0``);
  so is an F1 whose precision and recall are both 0.
- The ensemble prediction is the argmax of the mean of the members' probabilities.

Tuning objectives (recall first, but not recall only; see :func:`objectives`):

- ``macro_f2``: F-beta with beta = 2 (recall weighs four times precision) per class, averaged
  over the classes present in ``y_true`` except ``Q``. Q (unclassifiable and paced beats in
  AAMI EC57) is left out for both MIT-BIH protocols, so one number means the same thing on
  each: inter-patient, DS1 holds 8 Q beats, so Q's F2 would be noise; beat-level, Q is mostly
  paced beats that every model gets right, which would only dilute N/S/V/F.
- ``recall_floor``: the mean recall of the present classes other than the normal one (and Q),
  minus ``RECALL_FLOOR_PENALTY * max(0, RECALL_FLOOR_N - normal recall)``. Above the floor it is
  pure abnormal recall; below, each point of normal recall lost costs ten points, so the tuner
  never buys S/V/F recall by calling normal beats abnormal (a monitor alarming all day).
  The normal class is the one named ``N``, else class 0 (PTB's normal class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SCALARS = ("accuracy", "balanced_accuracy", "macro_recall", "macro_precision", "macro_f1")
PER_CLASS = ("recall", "precision", "f1")
OBJECTIVES = ("macro_f2", "recall_floor")
OBJECTIVE_EXCLUDED = ("Q",)  # classes the objectives leave out (see the module docstring)
RECALL_FLOOR_N = 0.9
RECALL_FLOOR_PENALTY = 10.0


def _check_labels(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} has labels outside [0, {num_classes}): {np.unique(y)}")
    return y.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(C, C)`` int64, rows = true class, columns = predicted class."""
    y_true = _check_labels(y_true, num_classes, "y_true")
    y_pred = _check_labels(y_pred, num_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, balanced accuracy, per-class and macro recall/precision/F1, confusion.

    Returns:
        A dict of plain Python values (JSON-ready): floats for ``SCALARS``, lists of
        ``num_classes`` floats for ``recall``/``precision``/``f1``, ``support`` (list of
        int) and ``confusion`` (nested list, rows true).

    Raises:
        ValueError: for empty input, mismatched shapes or labels out of range.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    total = cm.sum()
    if total == 0:
        raise ValueError("classification_metrics: no examples")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = _safe_div(tp, support.astype(np.float64))
    precision = _safe_div(tp, predicted.astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0
    macro_recall = float(recall[present].mean())
    return {
        "accuracy": float(tp.sum() / total),
        "balanced_accuracy": macro_recall,
        "macro_recall": macro_recall,
        "macro_precision": float(precision[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "recall": recall.tolist(),
        "precision": precision.tolist(),
        "f1": f1.tolist(),
        "support": [int(s) for s in support],
        "confusion": cm.tolist(),
    }


def _reduce(seeds: list[dict], fn: Any, keys: Sequence[str]) -> dict:
    out: dict[str, Any] = {k: float(fn([m[k] for m in seeds])) for k in SCALARS}
    for k in keys:
        out[k] = [float(v) for v in fn(np.array([m[k] for m in seeds]), axis=0)]
    return out


def ensemble_report(probs: np.ndarray, y_true: np.ndarray, num_classes: int) -> dict:
    """Metrics of each seed, their mean/std/worst, and of the probability-averaged ensemble.

    Args:
        probs: ``(S, N, C)`` class probabilities of each of S seeds.
        y_true: ``(N,)`` integer labels.
        num_classes: C.

    Returns:
        ``{"seeds": [...], "seed_mean": {...}, "seed_std": {...}, "seed_worst": {...},
        "ensemble": {...}}``; mean/std cover the scalars and the per-class lists, worst is
        the minimum over seeds of each scalar and of the per-class recall.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[2] != num_classes:
        raise ValueError(f"probs must be (seeds, N, {num_classes}), got shape {probs.shape}")
    seeds = [classification_metrics(y_true, p.argmax(-1), num_classes) for p in probs]
    worst: dict[str, Any] = {k: float(min(m[k] for m in seeds)) for k in SCALARS}
    worst["recall"] = np.min([m["recall"] for m in seeds], axis=0).tolist()
    return {
        "seeds": seeds,
        "seed_mean": _reduce(seeds, np.mean, PER_CLASS),
        "seed_std": _reduce(seeds, np.std, PER_CLASS),
        "seed_worst": worst,
        "ensemble": classification_metrics(y_true, probs.mean(0).argmax(-1), num_classes),
    }


def fbeta(precision: np.ndarray, recall: np.ndarray, beta: float) -> np.ndarray:
    """Per-class F-beta from precision and recall; 0 where both are 0 (sklearn zero_division=0)."""
    precision, recall = np.asarray(precision, float), np.asarray(recall, float)
    b2 = beta * beta
    return _safe_div((1 + b2) * precision * recall, b2 * precision + recall)


def objectives(m: dict, class_names: Sequence[str]) -> dict[str, float]:
    """``macro_f2`` and ``recall_floor`` of one :func:`classification_metrics` result.

    Both skip the classes absent from ``y_true`` (``support`` 0) and ``OBJECTIVE_EXCLUDED``;
    with nothing left to average, the mean is 0.0 rather than NaN.
    """
    names = list(class_names)
    support = np.asarray(m["support"])
    recall = np.asarray(m["recall"], float)
    used = (support > 0) & np.array([n not in OBJECTIVE_EXCLUDED for n in names])
    f2 = fbeta(np.asarray(m["precision"]), recall, 2.0)
    normal = names.index("N") if "N" in names else 0
    abnormal = used.copy()
    abnormal[normal] = False
    mean_abnormal = float(recall[abnormal].mean()) if abnormal.any() else 0.0
    shortfall = max(0.0, RECALL_FLOOR_N - float(recall[normal])) if support[normal] > 0 else 0.0
    return {
        "macro_f2": float(f2[used].mean()) if used.any() else 0.0,
        "recall_floor": mean_abnormal - RECALL_FLOOR_PENALTY * shortfall,
    }


def _with_objectives(report: dict, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """The objectives in every view of an :func:`ensemble_report` (as flat_metrics names them)."""
    seeds = [objectives(m, class_names) for m in report["seeds"]]
    views: dict[str, dict[str, float]] = {
        "seed_mean": {k: float(np.mean([s[k] for s in seeds])) for k in OBJECTIVES},
        "seed_std": {k: float(np.std([s[k] for s in seeds])) for k in OBJECTIVES},
        "seed_worst": {k: float(min(s[k] for s in seeds)) for k in OBJECTIVES},
        "ensemble": objectives(report["ensemble"], class_names),
    }
    for i, s in enumerate(seeds):
        views[f"seed{i}"] = s
    return views


FLAT_SCALARS = ("accuracy", "balanced_accuracy", "macro_recall", "macro_f1")


def flat_metrics(report: dict, prefix: str, class_names: Sequence[str]) -> dict[str, float]:
    """Flatten an :func:`ensemble_report` into ``{"prefix/...": float}`` for MLflow and Tune.

    Unqualified keys (``val/macro_recall``, ``val/recall_S``) are seed means; ``worst/``,
    ``std/``, ``ensemble/`` and ``seed{k}/`` name the other views. ``precision_*`` and
    ``f1_*`` are logged as seed means only, to keep the key count small. The tuning
    objectives (``macro_f2``, ``recall_floor``; see :func:`objectives`) have every view.
    """
    if len(class_names) != len(report["ensemble"]["recall"]):
        raise ValueError(
            f"{len(class_names)} class names for {len(report['ensemble']['recall'])} classes"
        )
    mean, worst, std, ens = (report[k] for k in ("seed_mean", "seed_worst", "seed_std", "ensemble"))
    out: dict[str, float] = {}
    for k in FLAT_SCALARS:
        out[f"{prefix}/{k}"] = mean[k]
        out[f"{prefix}/worst/{k}"] = worst[k]
        out[f"{prefix}/std/{k}"] = std[k]
        out[f"{prefix}/ensemble/{k}"] = ens[k]
        for s, m in enumerate(report["seeds"]):
            out[f"{prefix}/seed{s}/{k}"] = m[k]
    obj = _with_objectives(report, class_names)
    for k in OBJECTIVES:
        out[f"{prefix}/{k}"] = obj["seed_mean"][k]
        out[f"{prefix}/worst/{k}"] = obj["seed_worst"][k]
        out[f"{prefix}/std/{k}"] = obj["seed_std"][k]
        out[f"{prefix}/ensemble/{k}"] = obj["ensemble"][k]
        for s in range(len(report["seeds"])):
            out[f"{prefix}/seed{s}/{k}"] = obj[f"seed{s}"][k]
    out[f"{prefix}/macro_precision"] = mean["macro_precision"]
    for c, name in enumerate(class_names):
        out[f"{prefix}/recall_{name}"] = mean["recall"][c]
        out[f"{prefix}/worst/recall_{name}"] = worst["recall"][c]
        out[f"{prefix}/ensemble/recall_{name}"] = ens["recall"][c]
        out[f"{prefix}/precision_{name}"] = mean["precision"][c]
        out[f"{prefix}/f1_{name}"] = mean["f1"][c]
        for s, m in enumerate(report["seeds"]):
            out[f"{prefix}/seed{s}/recall_{name}"] = m["recall"][c]
    return {k: float(v) for k, v in out.items()}
