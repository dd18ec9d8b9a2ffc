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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SCALARS = ("accuracy", "balanced_accuracy", "macro_recall", "macro_precision", "macro_f1")
PER_CLASS = ("recall", "precision", "f1")


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


FLAT_SCALARS = ("accuracy", "balanced_accuracy", "macro_recall", "macro_f1")


def flat_metrics(report: dict, prefix: str, class_names: Sequence[str]) -> dict[str, float]:
    """Flatten an :func:`ensemble_report` into ``{"prefix/...": float}`` for MLflow and Tune.

    Unqualified keys (``val/macro_recall``, ``val/recall_S``) are seed means; ``worst/``,
    ``std/``, ``ensemble/`` and ``seed{k}/`` name the other views. ``precision_*`` and
    ``f1_*`` are logged as seed means only, to keep the key count small.
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
