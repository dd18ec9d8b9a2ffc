"""Class decision offsets fitted on training patients' out-of-fold predictions (pure numpy).

A model trained with inverse-frequency class weights over-calls the rare classes on patients
it has never seen: inside DS1, the out-of-fold pool (every record predicted by a model that
never saw it) calls 1,620 normal beats F, and F is right on 0.2% of its calls, because the F
beats sit in one record. Argmax cannot know that; a prior shift can. The rule here is
``argmax_c(log p_c + b_c)`` with ``b`` of the first (normal) class fixed at 0.

The offsets are chosen on the out-of-fold pool of a leave-records-out CV of the *training*
patients, never on a test file, by one objective: the mean over named goals (for example
"N Se >= .95", "S +P >= .45") of ``min(value / goal, 1)``. Each goal counts only up to its
goal, so the fit spends precision of one class only where another still misses its goal.
Classes with a goal are searched over ``[-2, 2]``; classes without one may only be muted
(``{-3, -2, -1, 0}``): favouring a class nobody asked for can only cost. The search is a
full grid (ties: higher accuracy, then smaller offsets), so the result does not depend on a
starting point.

:func:`cross_fitted` says whether it generalises: each CV fold's records are decided by
offsets fitted on the other folds only, so the pooled figures are out of sample twice over.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax.errors import UserError
from ecgjax.scoring import aami

FILE = "decision.json"

GOAL_RANGE = tuple(np.round(np.arange(-2.0, 2.0001, 0.25), 2))
MUTE_RANGE = (-3.0, -2.0, -1.0, 0.0)
STATS = {"Se": "se", "+P": "ppv"}
# The DS1 -> DS2 targets (issue 11) as the default objective: what new patients need.
DEFAULT_GOALS = "Se:N=0.95,Se:S=0.85,+P:S=0.45,Se:V=0.92,+P:V=0.85"


@dataclass(frozen=True)
class Goal:
    """One gross statistic of one class and the value it should reach."""

    stat: str  # "Se" or "+P"
    cls: str
    value: float

    @property
    def label(self) -> str:
        return f"{self.cls} {self.stat} >= {self.value:g}"


def parse_goals(text: str, class_names: Sequence[str]) -> list[Goal]:
    """``"Se:N=0.95,+P:S=0.45"`` -> goals.

    Raises:
        ValueError: a malformed item, an unknown statistic or class, or a goal outside (0, 1].
    """
    goals = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        found = re.fullmatch(r"(Se|\+P):(\w+)=([0-9.]+)", item)
        if not found:
            raise ValueError(f"goal {item!r}: write STAT:CLASS=VALUE with STAT Se or +P")
        stat, cls, value = found[1], found[2], float(found[3])
        if cls not in class_names:
            raise ValueError(f"goal {item!r}: class {cls!r} is not one of {list(class_names)}")
        if not 0.0 < value <= 1.0:
            raise ValueError(f"goal {item!r}: the value must be in (0, 1]")
        goals.append(Goal(stat, cls, value))
    if not goals:
        raise ValueError("no goals given")
    return goals


def apply(probs: np.ndarray, offsets: Sequence[float]) -> np.ndarray:
    """Probabilities re-weighted by ``exp(offsets)`` and renormalised (any leading axes).

    Argmax of the result is the offset decision; the rows stay distributions, so every
    downstream table (AAMI, confusion, ensembles) reads them as before.
    """
    probs = np.asarray(probs, dtype=np.float64)
    b = np.asarray(offsets, dtype=np.float64)
    if b.shape != (probs.shape[-1],):
        raise ValueError(f"{b.shape[0]} offsets for {probs.shape[-1]} classes")
    w = probs * np.exp(b - b.max())
    return w / np.maximum(w.sum(-1, keepdims=True), 1e-300)


def decide(probs: np.ndarray, offsets: Sequence[float] | np.ndarray) -> np.ndarray:
    """The offset decision ``argmax_c(log p_c + b_c)`` per beat."""
    return (np.log(np.maximum(np.asarray(probs, np.float64), 1e-300)) + offsets).argmax(-1)


def goal_values(cm: np.ndarray, goals: Sequence[Goal], class_names: Sequence[str]) -> np.ndarray:
    """Each goal's statistic from confusion matrices ``(..., C, C)`` -> ``(..., goals)``
    (0 where undefined: nothing called)."""
    r = aami.rates(np.asarray(cm, dtype=np.float64))
    out = [r[STATS[g.stat]][..., list(class_names).index(g.cls)] for g in goals]
    return np.nan_to_num(np.stack(out, -1), nan=0.0)


def objective(values: np.ndarray, goals: Sequence[Goal]) -> float:
    """Mean over goals of ``min(value / goal, 1)``: 1.0 exactly when every goal is met."""
    target = np.array([g.value for g in goals])
    return float(np.minimum(np.asarray(values) / target, 1.0).mean())


@dataclass(frozen=True)
class Fit:
    """Fitted offsets and what they reach on the data they were fitted on."""

    offsets: list[float]
    objective: float
    values: list[float]  # one per goal
    accuracy: float
    argmax_objective: float
    argmax_values: list[float]


def _grid(class_names: Sequence[str], goals: Sequence[Goal]) -> list[tuple[float, ...]]:
    wanted = {g.cls for g in goals}
    axes = [GOAL_RANGE if c in wanted else MUTE_RANGE for c in class_names[1:]]
    return list(itertools.product(*axes))


def fit(probs: np.ndarray, y: np.ndarray, class_names: Sequence[str], goals: Sequence[Goal]) -> Fit:
    """The grid point with the best :func:`objective` on ``(probs, y)`` (see the module doc)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y), n):
        raise ValueError(f"probs {probs.shape} must be (beats={len(y)}, classes={n})")
    logp = np.log(np.maximum(probs, 1e-300)).astype(np.float32)
    grid = np.array(_grid(class_names, goals), dtype=np.float32)
    grid = np.concatenate([np.zeros((len(grid), 1), np.float32), grid], axis=1)
    target = np.array([g.value for g in goals])
    best: tuple[float, float, float] | None = None
    best_b = np.zeros(n)
    chunk = max(1, 4_000_000 // max(1, len(y) * n))  # bound the (chunk, beats, classes) block
    for start in range(0, len(grid), chunk):
        b = grid[start : start + chunk]
        pred = (logp[None] + b[:, None, :]).argmax(-1)  # (chunk, beats)
        flat = (np.arange(len(b))[:, None] * n + y[None]) * n + pred
        cms = np.bincount(flat.ravel(), minlength=len(b) * n * n).reshape(len(b), n, n)
        values = goal_values(cms, goals, class_names)
        scores = np.minimum(values / target, 1.0).mean(1)
        accuracy = np.trace(cms, axis1=1, axis2=2) / len(y)
        for j in range(len(b)):
            key = (float(scores[j]), float(accuracy[j]), -float(np.abs(b[j]).sum()))
            if best is None or key > best:
                best, best_b = key, b[j].astype(np.float64)
    base_cm = aami.confusion(y, probs.argmax(1), n)
    cm = aami.confusion(y, decide(probs, best_b), n)
    values = goal_values(cm, goals, class_names)
    base = goal_values(base_cm, goals, class_names)
    return Fit(
        offsets=[float(v) for v in best_b],
        objective=objective(values, goals),
        values=values.tolist(),
        accuracy=float(np.trace(cm) / len(y)),
        argmax_objective=objective(base, goals),
        argmax_values=base.tolist(),
    )


def cross_fitted(
    probs: np.ndarray,
    y: np.ndarray,
    record: np.ndarray,
    folds: Sequence[Sequence[str]],
    class_names: Sequence[str],
    goals: Sequence[Goal],
) -> tuple[np.ndarray, list[list[float]]]:
    """Predictions where each fold's records are decided by offsets fitted on the others.

    Returns ``(pred, offsets per fold)``. Every beat must belong to exactly one fold.
    """
    record = np.asarray(record).astype(str)
    pred = np.full(len(y), -1, dtype=np.int64)
    per_fold = []
    for fold in folds:
        held = np.isin(record, [str(r) for r in fold])
        if not held.any() or held.all():
            raise ValueError(f"fold {sorted(fold)}: needs beats both inside and outside it")
        f = fit(probs[~held], y[~held], class_names, goals)
        pred[held] = decide(probs[held], f.offsets)
        per_fold.append(f.offsets)
    if (pred < 0).any():
        missing = sorted(set(record[pred < 0]))
        raise ValueError(f"records {missing[:5]} are in no fold")
    return pred, per_fold


class DecisionError(UserError, ValueError):
    """A decision file that is missing, damaged or fitted for another model."""


def load(path: str | Path) -> dict[str, Any]:
    """A ``decision.json`` (or the CV folder holding one), with ``offset_list`` in class order.

    Raises:
        DecisionError: missing or unreadable file, or offsets that do not match its classes.
    """
    p = Path(path)
    p = p / FILE if p.is_dir() else p
    try:
        d = json.loads(p.read_text())
        names, offsets = list(d["class_names"]), d["offsets"]
        if sorted(offsets) != sorted(names):
            raise ValueError(f"offsets for {sorted(offsets)}, classes {names}")
        d["offset_list"] = [float(offsets[n]) for n in names]
    except FileNotFoundError:
        raise DecisionError(
            f"{p}: no decision file; run scripts/decision_study.py on a CV run"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DecisionError(f"{p}: not a decision file ({err})") from None
    d["path"] = str(p)
    return d
