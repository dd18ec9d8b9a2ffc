"""Metrics against scikit-learn on hand-made cases, absent classes included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from ecgjax.scoring.metrics import (
    RECALL_FLOOR_N,
    RECALL_FLOOR_PENALTY,
    classification_metrics,
    confusion_matrix,
    ensemble_report,
    flat_metrics,
    objectives,
)

C = 5
NAMES = ("N", "S", "V", "F", "Q")
# Class 4 (Q) never occurs in y_true but is predicted once; class 3 (F) is never predicted.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 0])
Y_PRED = np.array([0, 0, 1, 0, 1, 0, 2, 2, 4, 2, 0, 0])


def test_confusion_matches_sklearn():
    np.testing.assert_array_equal(
        confusion_matrix(Y_TRUE, Y_PRED, C), skm.confusion_matrix(Y_TRUE, Y_PRED, labels=range(C))
    )
    assert confusion_matrix(Y_TRUE, Y_PRED, C).dtype == np.int64


def test_classification_metrics_match_sklearn():
    m = classification_metrics(Y_TRUE, Y_PRED, C)
    present = [0, 1, 2, 3]
    kw = {"labels": present, "average": "macro", "zero_division": 0}
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y_TRUE, Y_PRED))
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class
        bal = skm.balanced_accuracy_score(Y_TRUE, Y_PRED)
    assert m["balanced_accuracy"] == pytest.approx(bal)
    assert m["macro_recall"] == pytest.approx(skm.recall_score(Y_TRUE, Y_PRED, **kw))
    assert m["macro_recall"] == m["balanced_accuracy"]
    assert m["macro_precision"] == pytest.approx(skm.precision_score(Y_TRUE, Y_PRED, **kw))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, **kw))
    per = {"labels": list(range(C)), "average": None, "zero_division": 0}
    np.testing.assert_allclose(m["recall"], skm.recall_score(Y_TRUE, Y_PRED, **per))
    np.testing.assert_allclose(m["precision"], skm.precision_score(Y_TRUE, Y_PRED, **per))
    np.testing.assert_allclose(m["f1"], skm.f1_score(Y_TRUE, Y_PRED, **per))
    assert m["support"] == [5, 2, 3, 2, 0]
    assert m["precision"][3] == 0.0  # never predicted
    assert m["recall"][4] == 0.0  # absent: reported 0, excluded from the means


def test_perfect_and_bad_inputs():
    y = np.array([0, 1, 2, 2])
    m = classification_metrics(y, y, 3)
    assert m["accuracy"] == m["macro_recall"] == m["macro_f1"] == 1.0
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics(np.array([], int), np.array([], int), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def probs_from(pred: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    p = np.full((pred.size, C), (1 - confidence) / (C - 1))
    p[np.arange(pred.size), pred] = confidence
    return p


def test_ensemble_of_identical_seeds_equals_single_seed():
    single = classification_metrics(Y_TRUE, Y_PRED, C)
    probs = np.stack([probs_from(Y_PRED)] * 3)
    report = ensemble_report(probs, Y_TRUE, C)
    assert report["ensemble"] == single
    assert all(s == single for s in report["seeds"])
    for key in ("macro_recall", "accuracy", "macro_f1"):
        assert report["seed_mean"][key] == pytest.approx(single[key])
        assert report["seed_worst"][key] == pytest.approx(single[key])
        assert report["seed_std"][key] == pytest.approx(0.0)
    np.testing.assert_allclose(report["seed_mean"]["recall"], single["recall"])


def test_ensemble_mean_worst_and_vote():
    other = Y_TRUE.copy()  # a perfect second seed
    probs = np.stack([probs_from(Y_PRED, 0.6), probs_from(other, 0.9)])
    report = ensemble_report(probs, Y_TRUE, C)
    a = classification_metrics(Y_TRUE, Y_PRED, C)
    assert report["seed_mean"]["macro_recall"] == pytest.approx((a["macro_recall"] + 1) / 2)
    assert report["seed_worst"]["macro_recall"] == pytest.approx(a["macro_recall"])
    assert report["seed_worst"]["recall"] == pytest.approx(a["recall"])
    assert report["ensemble"]["accuracy"] == 1.0  # the confident member wins every vote


def test_flat_metrics_keys_and_values():
    probs = np.stack([probs_from(Y_PRED), probs_from(Y_TRUE)])
    flat = flat_metrics(ensemble_report(probs, Y_TRUE, C), "val", NAMES)
    for key in (
        "val/macro_recall",
        "val/worst/macro_recall",
        "val/std/macro_recall",
        "val/ensemble/macro_recall",
        "val/seed1/macro_recall",
        "val/accuracy",
        "val/worst/balanced_accuracy",
        "val/ensemble/macro_f1",
        "val/recall_S",
        "val/worst/recall_S",
        "val/ensemble/recall_S",
        "val/seed0/recall_Q",
        "val/precision_F",
    ):
        assert key in flat
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    assert flat["val/seed1/macro_recall"] == 1.0
    assert flat["val/recall_Q"] == 0.0
    with pytest.raises(ValueError, match="class names"):
        flat_metrics(ensemble_report(probs, Y_TRUE, C), "val", NAMES[:3])


def test_macro_f2_matches_sklearn_fbeta_without_q() -> None:
    # Q (4) is predicted once but absent from y_true; F (3) is present but never predicted.
    m = classification_metrics(Y_TRUE, Y_PRED, C)
    kw = {"beta": 2, "average": "macro", "zero_division": 0}
    got = objectives(m, NAMES)["macro_f2"]
    assert got == pytest.approx(skm.fbeta_score(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3], **kw))
    # Q present in y_true is still left out; the same labels without the name Q count it.
    y_true = np.append(Y_TRUE, [4, 4])
    y_pred = np.append(Y_PRED, [4, 0])
    m = classification_metrics(y_true, y_pred, C)
    nsvf = skm.fbeta_score(y_true, y_pred, labels=[0, 1, 2, 3], **kw)
    assert objectives(m, NAMES)["macro_f2"] == pytest.approx(nsvf)
    all5 = skm.fbeta_score(y_true, y_pred, labels=range(5), **kw)
    assert objectives(m, ("N", "S", "V", "F", "P"))["macro_f2"] == pytest.approx(all5)
    assert nsvf != pytest.approx(all5)


def test_macro_f2_weighs_recall_over_precision() -> None:
    y_true = np.array([0] * 8 + [1] * 2)
    over = np.array([0] * 6 + [1] * 2 + [1] * 2)  # S found, at the price of two false alarms
    under = np.array([0] * 8 + [1, 0])  # no false alarm, half the S beats missed
    f2 = {
        k: objectives(classification_metrics(y_true, p, 2), ("N", "S"))
        for k, p in (("over", over), ("under", under))
    }
    assert f2["over"]["macro_f2"] > f2["under"]["macro_f2"]
    for p in (over, under):
        ref = skm.fbeta_score(y_true, p, beta=2, average="macro", zero_division=0)
        assert objectives(classification_metrics(y_true, p, 2), ("N", "S"))["macro_f2"] == (
            pytest.approx(ref)
        )


def test_recall_floor_is_abnormal_recall_above_the_floor_and_penalised_below() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, C)  # N recall 4/5 = 0.8 < the floor
    recall = skm.recall_score(Y_TRUE, Y_PRED, labels=[1, 2, 3], average=None, zero_division=0)
    expected = recall.mean() - RECALL_FLOOR_PENALTY * (RECALL_FLOOR_N - 0.8)
    assert objectives(m, NAMES)["recall_floor"] == pytest.approx(expected)
    y_true = np.array([0] * 20 + [1, 1, 2, 2])
    y_pred = np.array([0] * 19 + [1] + [1, 0, 2, 2])  # N recall 0.95: no penalty
    got = objectives(classification_metrics(y_true, y_pred, C), NAMES)["recall_floor"]
    assert got == pytest.approx((0.5 + 1.0) / 2)
    no_normal = classification_metrics(np.array([1, 2]), np.array([1, 1]), C)
    assert objectives(no_normal, NAMES)["recall_floor"] == pytest.approx(0.5)


def test_objectives_are_flat_metrics_in_every_view() -> None:
    probs = np.stack([probs_from(Y_PRED), probs_from(Y_TRUE)])
    report = ensemble_report(probs, Y_TRUE, C)
    flat = flat_metrics(report, "val", NAMES)
    seeds = [objectives(m, NAMES) for m in report["seeds"]]
    for k in ("macro_f2", "recall_floor"):
        assert flat[f"val/{k}"] == pytest.approx((seeds[0][k] + seeds[1][k]) / 2)
        assert flat[f"val/worst/{k}"] == pytest.approx(min(seeds[0][k], seeds[1][k]))
        assert flat[f"val/std/{k}"] == pytest.approx(abs(seeds[0][k] - seeds[1][k]) / 2)
        assert flat[f"val/seed1/{k}"] == seeds[1][k]
        assert flat[f"val/ensemble/{k}"] == objectives(report["ensemble"], NAMES)[k]
    assert flat["val/seed1/macro_f2"] == 1.0 and flat["val/seed1/recall_floor"] == 1.0
