"""Class decision offsets (ecgjax/scoring/decision.py) on small synthetic predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgjax.scoring import aami, decision

NAMES = ["N", "S", "V", "F", "Q"]


def _over_called_f(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N beats of which a fifth get an F score above N (the new-patient failure), plus S/V."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2, 3], [800, 60, 100, 5])
    logits = rng.normal(0.0, 0.3, (len(y), 5))
    logits[np.arange(len(y)), y] += 2.0
    false_f = (y == 0) & (rng.random(len(y)) < 0.2)
    logits[false_f, 3] += 2.5  # F wins, but only by a margin an offset can take back
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    record = np.array([f"r{i % 6}" for i in range(len(y))])
    return probs, y, record


def test_fit_mutes_an_over_called_class_and_never_scores_below_argmax() -> None:
    probs, y, _ = _over_called_f()
    goals = decision.parse_goals("Se:N=0.95,Se:S=0.85,Se:V=0.9", NAMES)
    f = decision.fit(probs, y, NAMES, goals)
    assert f.offsets[0] == 0.0 and f.offsets[3] < 0  # N is the reference; F is muted
    assert f.objective >= f.argmax_objective  # zero offsets are on the grid
    assert f.values[0] > f.argmax_values[0] >= 0.75  # N recall won back from F
    pred = (np.log(probs) + f.offsets).argmax(1)
    cm = aami.confusion(y, pred, 5)
    np.testing.assert_allclose(f.values, decision.goal_values(cm, goals, NAMES))
    np.testing.assert_array_equal(decision.apply(probs, f.offsets).argmax(1), pred)


def test_apply_keeps_distributions_over_leading_axes() -> None:
    probs, _, _ = _over_called_f()
    seeds = np.stack([probs, probs[::-1]])
    out = decision.apply(seeds, [0.0, 1.0, -1.0, -3.0, 0.0])
    assert out.shape == seeds.shape
    np.testing.assert_allclose(out.sum(-1), 1.0)
    with pytest.raises(ValueError, match="4 offsets for 5 classes"):
        decision.apply(probs, [0.0, 0.0, 0.0, 0.0])


def test_cross_fitting_decides_each_fold_without_it() -> None:
    probs, y, record = _over_called_f()
    goals = decision.parse_goals(decision.DEFAULT_GOALS, NAMES)
    folds = [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
    pred, per_fold = decision.cross_fitted(probs, y, record, folds, NAMES, goals)
    assert len(per_fold) == 2 and pred.shape == y.shape and (pred >= 0).all()
    held = np.isin(record, folds[0])
    other = decision.fit(probs[~held], y[~held], NAMES, goals)
    np.testing.assert_array_equal(pred[held], (np.log(probs[held]) + other.offsets).argmax(1))
    with pytest.raises(ValueError, match="in no fold"):
        decision.cross_fitted(probs, y, record, [*folds[:1], ["r3"]], NAMES, goals)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Se:X=0.9", "class 'X'"),
        ("Sp:N=0.9", "STAT:CLASS=VALUE"),
        ("Se:N=1.5", r"\(0, 1\]"),
        ("", "no goals"),
    ],
)
def test_bad_goals_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decision.parse_goals(text, NAMES)


def test_load_names_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(decision.DecisionError, match="no decision file"):
        decision.load(tmp_path)
    bad = tmp_path / "decision.json"
    bad.write_text(json.dumps({"class_names": NAMES, "offsets": {"N": 0.0}}))
    with pytest.raises(decision.DecisionError, match=f"{bad}: not a decision file"):
        decision.load(tmp_path)
    bad.write_text("{")
    with pytest.raises(decision.DecisionError, match="not a decision file"):
        decision.load(bad)
    bad.write_text(json.dumps({"class_names": NAMES, "offsets": dict.fromkeys(NAMES, -1.0)}))
    assert decision.load(tmp_path)["offset_list"] == [-1.0] * 5
