"""Recall-first operating point: per-class decision weights fitted on validation (pure numpy).

(Over 300 lines on purpose: the fit, its N-recall floor and the report of what it could not
reach are one algorithm whose invariants are argued below; split, they would be read apart.)

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

A false-alarm budget bounds the price: the normal class (N, class 0) must keep a recall of at
least ``min_normal_recall`` on the fitting data. On new patients the unconstrained fit can call
almost every N beat abnormal (N recall 0.03 on DS2, with an S weight of 781): a monitor that
alarms all day. N recall only falls as disease weights grow, and the fit's weights are the
least that reach the targets, so if they break the floor every weight vector reaching those
targets does; the floor is then one more reason to relax targets, in the same priority order,
and the fit reports which targets it could not meet under the floor (and what N recall the
unconstrained fit would have cost). When plain argmax is already below the floor (a model
trained with full inverse-frequency class weights calls many N beats abnormal on new patients),
the budget is enforced the other way too: N's weight is first raised to the least value that
brings N recall up to the floor (equivalently every disease weight drops below 1, reported as
``normal_boost``), and the targets are then fitted on top of that under the same floor. Set
``raise_normal=False`` to keep argmax's own N recall as the floor instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgjax.scoring import metrics as metrics_lib

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
    min_normal_recall: float = 0.0  # the false-alarm budget: N recall kept on the fit data
    normal_class: int = 0
    normal_recall: float | None = None  # N recall with the fitted weights (None: no N beats)
    argmax_normal_recall: float | None = None
    # Without the floor (only computed when the floor cost a target): N recall and the classes
    # the unconstrained fit would have reached that this one does not.
    unconstrained_normal_recall: float | None = None
    blocked_by_floor: list[int] = field(default_factory=list)
    normal_boost: float = 1.0  # factor N's score was raised by to reach the floor (1: none)

    @property
    def relaxed(self) -> list[int]:
        return [
            c for c, t in zip(self.classes, self.targets, strict=True) if t < self.target_recall
        ]

    @property
    def floor_met(self) -> bool:
        return self.normal_recall is None or self.normal_recall >= self.min_normal_recall - 1e-12

    @property
    def unmet(self) -> list[int]:
        """Classes whose target was not reached (conflicts, or the N-recall floor)."""
        return [c for c, ok in zip(self.classes, self.reached, strict=True) if not ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "target_recall": self.target_recall,
            "classes": self.classes,
            "targets": self.targets,
            "fitted_recall": self.fitted_recall,
            "reached": self.reached,
            "relaxed": self.relaxed,
            "unmet": self.unmet,
            "min_normal_recall": self.min_normal_recall,
            "normal_class": self.normal_class,
            "normal_recall": self.normal_recall,
            "argmax_normal_recall": self.argmax_normal_recall,
            "floor_met": self.floor_met,
            "unconstrained_normal_recall": self.unconstrained_normal_recall,
            "blocked_by_floor": self.blocked_by_floor,
            "normal_boost": self.normal_boost,
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


@dataclass(frozen=True)
class _Floor:
    """Minimum recall of one class (N): its beats' log-probabilities and the floor."""

    c: int
    rows: np.ndarray  # logp of the class's beats
    min_recall: float

    def holds(self, lw: np.ndarray) -> bool:
        if self.min_recall <= 0 or len(self.rows) == 0:
            return True
        recall = float(((self.rows + lw).argmax(-1) == self.c).mean())
        return recall >= self.min_recall - 1e-12


def _solve(
    logp: np.ndarray,
    y: np.ndarray,
    targets: dict[int, float],
    max_sweeps: int,
    floor: _Floor | None = None,
) -> np.ndarray | None:
    """Least log-weights ``>= 0`` reaching every target, or ``None`` when they diverge or
    break the ``floor`` (weights only grow, so once broken it stays broken)."""
    lw = np.zeros(logp.shape[1])
    for _ in range(max_sweeps):
        if floor is not None and not floor.holds(lw):
            return None
        changed = False
        for c, t in targets.items():
            new = max(0.0, _least_log_weight(logp, y, lw, c, t))
            if new > _MAX_LOG_WEIGHT:
                return None
            if new > lw[c] + 1e-9:  # a bidding war moves by >= _EPS per sweep, never less
                lw[c], changed = new, True
        if not changed:
            return lw if floor is None or floor.holds(lw) else None
    return None


def _highest(
    logp: np.ndarray,
    y: np.ndarray,
    targets: dict[int, float],
    c: int,
    span: tuple[float, float],
    sweeps: int,
    floor: _Floor | None,
) -> tuple[float, np.ndarray | None]:
    """Bisect the highest target of class ``c`` in ``span`` that keeps a solution."""
    lo, hi = span
    top = _solve(logp, y, {**targets, c: hi}, sweeps, floor)
    if top is not None:  # re-raising a class relaxed earlier may give it the full target back
        return hi, top
    best = _solve(logp, y, {**targets, c: lo}, sweeps, floor)
    for _ in range(_BISECTIONS if best is not None else 0):
        mid = (lo + hi) / 2
        found = _solve(logp, y, {**targets, c: mid}, sweeps, floor)
        if found is None:
            hi = mid
        else:
            lo, best = mid, found
    return lo, best


def _fit(
    logp: np.ndarray,
    y: np.ndarray,
    target_recall: float,
    targets: dict[int, float],
    max_sweeps: int,
    floor: _Floor | None,
) -> tuple[dict[int, float], np.ndarray]:
    """Targets (relaxed where needed) and the least log-weights reaching them."""
    targets = dict(targets)
    lw = _solve(logp, y, targets, max_sweeps, floor)
    relaxed: list[int] = []
    for victim in reversed(list(targets)):
        if lw is not None:
            break
        relaxed.append(victim)
        # None when even target 0 conflicts: relax the next class too.
        targets[victim], lw = _highest(
            logp, y, targets, victim, (0.0, target_recall), max_sweeps, floor
        )
    for c in reversed(relaxed[:-1]):  # classes relaxed early may get some recall back now
        t, found = _highest(logp, y, targets, c, (targets[c], target_recall), max_sweeps, floor)
        if found is not None:
            targets[c], lw = t, found
    return targets, np.zeros(logp.shape[1]) if lw is None else lw


def fit(
    probs: np.ndarray,
    y: np.ndarray,
    target_recall: float = 0.9,
    classes: Sequence[int] | None = None,
    max_sweeps: int = 200,
    *,
    min_normal_recall: float = 0.95,
    normal_class: int = 0,
    raise_normal: bool = True,
) -> OperatingPoint:
    """Fit weights so each class in ``classes`` reaches ``target_recall`` on ``(probs, y)``,
    never pushing the recall of ``normal_class`` below ``min_normal_recall`` there.

    Args:
        probs: ``(N, C)`` class probabilities (the ensemble mean on the validation split).
        y: ``(N,)`` true labels.
        target_recall: recall to reach for each class in ``classes``, in (0, 1].
        classes: classes with a recall target, in priority order; default every class but
            ``normal_class`` (the disease classes; N keeps weight 1).
        max_sweeps: passes over the classes before the targets count as conflicting.
        min_normal_recall: the false-alarm budget, in [0, 1]; 0 switches it off.
        normal_class: the class whose recall the budget protects (N).
        raise_normal: when argmax is below the floor, raise N's weight up to it first.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = len(y); got {probs.shape} and {y.shape}")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if not 0.0 <= min_normal_recall <= 1.0:
        raise ValueError(f"min_normal_recall must be in [0, 1], got {min_normal_recall}")
    num_classes = probs.shape[1]
    if not 0 <= normal_class < num_classes:
        raise ValueError(f"normal_class {normal_class} outside [0, {num_classes})")
    if classes is None:
        classes = [c for c in range(num_classes) if c != normal_class]
    classes = [int(c) for c in classes]
    if any(c < 0 or c >= num_classes for c in classes):
        raise ValueError(f"classes {classes} outside [0, {num_classes})")
    logp = _log(probs)
    # A class absent here has no recall to fit; it keeps weight 1.
    wanted = {c: float(target_recall) for c in classes if np.any(y == c)}
    has_normal = bool(np.any(y == normal_class))
    argmax_n = float(_recall(logp.argmax(-1), y, num_classes)[normal_class])
    boost = 0.0
    if raise_normal and has_normal and argmax_n < min_normal_recall:
        # The least log-weight of N that reaches the floor, the disease weights at 1.
        boost = max(
            0.0, _least_log_weight(logp, y, np.zeros(num_classes), normal_class, min_normal_recall)
        )
        logp = logp.copy()
        logp[:, normal_class] += boost
    # Still below the floor (raise_normal off): never lower N recall further than argmax.
    base_n = float(_recall(logp.argmax(-1), y, num_classes)[normal_class])
    floor = _Floor(normal_class, logp[y == normal_class], min(min_normal_recall, base_n))
    targets, lw = _fit(logp, y, target_recall, wanted, max_sweeps, floor)
    recall = _recall((logp + lw).argmax(-1), y, num_classes)
    reached = [bool(c not in targets or recall[c] >= target_recall - 1e-12) for c in classes]
    free_n: float | None = None
    blocked: list[int] = []
    if min_normal_recall > 0 and not all(reached):  # what did the budget cost?
        _, free = _fit(logp, y, target_recall, wanted, max_sweeps, None)
        free_recall = _recall((logp + free).argmax(-1), y, num_classes)
        free_n = float(free_recall[normal_class])
        blocked = [
            c
            for c, ok in zip(classes, reached, strict=True)
            if not ok and free_recall[c] >= target_recall - 1e-12
        ]
    lw = lw - boost  # N keeps weight 1: the boost shows as disease weights below 1
    lw[normal_class] = 0.0
    return OperatingPoint(
        weights=[float(w) for w in np.exp(lw)],
        target_recall=float(target_recall),
        classes=classes,
        targets=[targets.get(c, float(target_recall)) for c in classes],
        fitted_recall=[float(recall[c]) for c in classes],
        reached=reached,
        min_normal_recall=float(min_normal_recall),
        normal_class=normal_class,
        normal_recall=float(recall[normal_class]) if has_normal else None,
        argmax_normal_recall=argmax_n if has_normal else None,
        unconstrained_normal_recall=free_n,
        blocked_by_floor=blocked,
        normal_boost=float(np.exp(boost)),
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
