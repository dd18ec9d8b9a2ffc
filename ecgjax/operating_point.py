"""Recall-first operating point: per-class decision weights fitted on validation (pure numpy).

Plain argmax treats every error alike, but a missed S/V/F/Q beat costs more than a false alarm.
The decision rule here is ``argmax_c(w_c * p_c)`` with ``w_N = 1``: raising a disease weight
buys recall for that class at the price of precision (more N beats called disease).

The fit is a monotone fixed-point iteration in log-weights. For each disease class in priority
order, its weight is set to the *least* value that reaches its target recall given the other
weights; raising one class's weight can only make the others need more, never less, so starting
from ``w = 1`` the weights only grow and converge to the least weights ``>= 1`` that reach every
target at once. Hence: whenever some weights ``>= 1`` reach the targets on the fitting data, the
fit reaches them too (tested), and it pays the least precision for it. Weights never go below 1,
so no class loses recall that plain argmax already had.

When targets conflict (the model cannot separate two disease classes well enough for both to
reach the target) the weights would bid against each other forever. The fit then relaxes the
lowest-priority target (order S, V, F, Q by default) to the highest recall it can still reach
without costing the others theirs (bisection), and reports it as relaxed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecgjax import metrics as metrics_lib

_EPS = 1e-6  # log-weight margin above the tie, so argmax picks the class (float-safe)
_MAX_LOG_WEIGHT = 400.0  # > C * -log(1e-30): feasible fits stay below, bidding wars do not
_BISECTIONS = 12  # relaxed targets are exact to target / 4096


@dataclass(frozen=True)
class OperatingPoint:
    """Fitted decision weights and what they reached on the data they were fitted on."""

    weights: list[float]
    target_recall: float
    classes: list[int]  # the classes with a recall target, in priority order
    targets: list[float]  # per class in ``classes``: the target used (lower when relaxed)
    fitted_recall: list[float]
    reached: list[bool]  # recall >= target_recall (a class absent from the fit data counts)

    @property
    def relaxed(self) -> list[int]:
        return [
            c for c, t in zip(self.classes, self.targets, strict=True) if t < self.target_recall
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "target_recall": self.target_recall,
            "classes": self.classes,
            "targets": self.targets,
            "fitted_recall": self.fitted_recall,
            "reached": self.reached,
            "relaxed": self.relaxed,
        }


def decide(probs: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Predicted classes ``argmax_c(w_c * p_c)`` for ``probs`` of shape ``(N, C)``."""
    return (_log(probs) + np.log(np.asarray(weights, dtype=np.float64))).argmax(-1)


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-30, None))


def _least_log_weight(
    logp: np.ndarray, y: np.ndarray, lw: np.ndarray, c: int, target: float
) -> float:
    """The least log-weight of class ``c`` reaching ``target`` recall given the other weights."""
    rows = logp[y == c]
    others = np.delete(rows + lw, c, axis=1).max(axis=1)
    need = np.sort(others - rows[:, c])  # class c wins beat i once lw_c > need_i
    k = math.ceil(target * len(need) - 1e-9)
    return float(need[k - 1] + _EPS) if k > 0 else -math.inf


def _solve(
    logp: np.ndarray, y: np.ndarray, targets: dict[int, float], max_sweeps: int
) -> np.ndarray | None:
    """Least log-weights ``>= 0`` reaching every target, or ``None`` when they diverge."""
    lw = np.zeros(logp.shape[1])
    for _ in range(max_sweeps):
        changed = False
        for c, t in targets.items():
            new = max(0.0, _least_log_weight(logp, y, lw, c, t))
            if new > _MAX_LOG_WEIGHT:
                return None
            if new > lw[c] + 1e-9:  # a bidding war moves by >= _EPS per sweep, never less
                lw[c], changed = new, True
        if not changed:
            return lw
    return None


def _highest(
    logp: np.ndarray,
    y: np.ndarray,
    targets: dict[int, float],
    c: int,
    span: tuple[float, float],
    sweeps: int,
) -> tuple[float, np.ndarray | None]:
    """Bisect the highest target of class ``c`` in ``span`` that keeps a solution."""
    lo, hi = span
    top = _solve(logp, y, {**targets, c: hi}, sweeps)
    if top is not None:  # re-raising a class relaxed earlier may give it the full target back
        return hi, top
    best = _solve(logp, y, {**targets, c: lo}, sweeps)
    for _ in range(_BISECTIONS if best is not None else 0):
        mid = (lo + hi) / 2
        found = _solve(logp, y, {**targets, c: mid}, sweeps)
        if found is None:
            hi = mid
        else:
            lo, best = mid, found
    return lo, best


def fit(
    probs: np.ndarray,
    y: np.ndarray,
    target_recall: float = 0.9,
    classes: Sequence[int] | None = None,
    max_sweeps: int = 200,
) -> OperatingPoint:
    """Fit weights so each class in ``classes`` reaches ``target_recall`` on ``(probs, y)``.

    Args:
        probs: ``(N, C)`` class probabilities (the ensemble mean on the validation split).
        y: ``(N,)`` true labels.
        target_recall: recall to reach for each class in ``classes``, in (0, 1].
        classes: classes with a recall target, in priority order; default 1..C-1 (the disease
            classes; class 0 is N and keeps weight 1).
        max_sweeps: passes over the classes before the targets count as conflicting.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = len(y); got {probs.shape} and {y.shape}")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    num_classes = probs.shape[1]
    classes = list(range(1, num_classes)) if classes is None else [int(c) for c in classes]
    if any(c < 0 or c >= num_classes for c in classes):
        raise ValueError(f"classes {classes} outside [0, {num_classes})")
    logp = _log(probs)
    # A class absent here has no recall to fit; it keeps weight 1.
    targets = {c: float(target_recall) for c in classes if np.any(y == c)}
    lw = _solve(logp, y, targets, max_sweeps)
    relaxed: list[int] = []
    for victim in reversed(list(targets)):
        if lw is not None:
            break
        relaxed.append(victim)
        # None when even target 0 conflicts: relax the next class too.
        targets[victim], lw = _highest(logp, y, targets, victim, (0.0, target_recall), max_sweeps)
    for c in reversed(relaxed[:-1]):  # classes relaxed early may get some recall back now
        t, found = _highest(logp, y, targets, c, (targets[c], target_recall), max_sweeps)
        if found is not None:
            targets[c], lw = t, found
    if lw is None:
        lw = np.zeros(num_classes)
    recall = _recall((logp + lw).argmax(-1), y, num_classes)
    return OperatingPoint(
        weights=[float(w) for w in np.exp(lw)],
        target_recall=float(target_recall),
        classes=classes,
        targets=[targets.get(c, float(target_recall)) for c in classes],
        fitted_recall=[float(recall[c]) for c in classes],
        reached=[bool(c not in targets or recall[c] >= target_recall - 1e-12) for c in classes],
    )


def _recall(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    tp = np.bincount(y[pred == y], minlength=num_classes).astype(np.float64)
    support = np.bincount(y, minlength=num_classes).astype(np.float64)
    return np.divide(tp, support, out=np.zeros(num_classes), where=support > 0)


def compare_on(probs: np.ndarray, y: np.ndarray, point: OperatingPoint) -> dict[str, Any]:
    """Metrics of plain argmax and of the fitted weights on held-out ``(probs, y)`` (test)."""
    num_classes = np.asarray(probs).shape[1]
    plain = metrics_lib.classification_metrics(y, np.asarray(probs).argmax(-1), num_classes)
    weighted = metrics_lib.classification_metrics(y, decide(probs, point.weights), num_classes)
    return {"operating_point": point.to_json(), "argmax": plain, "recall_first": weighted}
