"""AAMI EC57-style statistics against scikit-learn on hand-made cases, and the record bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, multilabel_confusion_matrix

from ecgjax.scoring import aami, aami_tables

NAMES = ["N", "S", "V", "F", "Q"]


def sk_stats(y: np.ndarray, pred: np.ndarray, c: int) -> dict[str, float | None]:
    """Se, +P, FPR of class ``c`` from sklearn's one-vs-rest confusion (None if undefined)."""
    (tn, fp), (fn, tp) = multilabel_confusion_matrix(y, pred, labels=[c])[0]
    return {
        "se": tp / (tp + fn) if tp + fn else None,
        "ppv": tp / (tp + fp) if tp + fp else None,
        "fpr": fp / (fp + tn) if fp + tn else None,
    }


def case(seed: int = 0, n: int = 900, records: int = 9) -> tuple[np.ndarray, ...]:
    """Labels with Q rare and S concentrated in a few records, a noisy predictor."""
    rng = np.random.default_rng(seed)
    record = np.repeat([f"r{i}" for i in range(records)], n // records)
    y = rng.choice(5, size=len(record), p=[0.7, 0.1, 0.12, 0.06, 0.02])
    y[(y == 1) & ~np.isin(record, ["r0", "r1", "r2"])] = 0  # S only in three patients
    wrong = rng.random(len(y)) < 0.25
    pred = np.where(wrong, rng.integers(0, 5, size=len(y)), y)
    return y, pred, record


def approx(a: float | None, b: float | None) -> bool:
    return a is b is None or (a is not None and b is not None and a == pytest.approx(b))


def test_gross_statistics_equal_sklearn() -> None:
    y, pred, record = case()
    out = aami.report(y, pred, NAMES, record, n_boot=0)
    gross = out["gross"]
    assert gross["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for c, name in enumerate(NAMES):
        ref = sk_stats(y, pred, c)
        for stat in aami.STATS:
            assert approx(gross["classes"][name][stat], ref[stat]), (name, stat)
        cls = gross["classes"][name]
        assert cls["tp"] + cls["fn"] == cls["beats"] == int((y == c).sum())
        assert cls["tp"] + cls["fn"] + cls["fp"] + cls["tn"] == len(y)
    # Macro summaries leave Q out (AAMI EC57), but Q keeps its row.
    assert out["macro_classes"] == ["N", "S", "V", "F"]
    assert gross["macro"]["se"] == pytest.approx(
        np.mean([gross["classes"][n]["se"] for n in "NSVF"])
    )
    header, rows = aami_tables.gross_rows(out)
    assert header[:5] == ["class", "beats", "Se", "+P", "FPR"]
    assert [r[0] for r in rows[:5]] == ["N", "S", "V", "F", "Q*"]


def test_record_average_and_per_record_table_equal_sklearn_per_record() -> None:
    y, pred, record = case(1)
    # One record that never holds S but where the model calls S: +P 0, Se undefined there.
    fake = (record == "r5") & (y == 0)
    pred = np.where(fake & (np.arange(len(y)) % 7 == 0), 1, pred)
    out = aami.report(y, pred, NAMES, record, n_boot=0)
    rows = {row["record"]: row for row in out["per_record"]}
    assert sorted(rows) == sorted(set(record))
    for name_c, name in enumerate(NAMES):
        for stat in aami.STATS:
            per = []
            for r, row in rows.items():
                m = record == r
                ref = sk_stats(y[m], pred[m], name_c)[stat]
                assert approx(row[stat][name], ref), (r, name, stat)
                assert row["beats"][name] == int((y[m] == name_c).sum())
                if ref is not None:
                    per.append(ref)
            got = out["record_average"]["classes"][name]
            assert approx(got[stat], float(np.mean(per)) if per else None), (name, stat)
            assert got["records"][stat] == len(per)
    assert rows["r5"]["se"]["S"] is None and rows["r5"]["ppv"]["S"] == 0.0
    assert out["record_average"]["classes"]["S"]["records"]["se"] == 3
    accs = [accuracy_score(y[record == r], pred[record == r]) for r in rows]
    assert out["record_average"]["accuracy"] == pytest.approx(np.mean(accs))


def test_undefined_values_and_probabilities_and_no_records() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(5)[[0, 1, 1, 1, 0, 2]] * 0.9 + 0.02  # argmax: 0 1 1 1 0 2
    out = aami.report(y, probs, NAMES)
    g = out["gross"]["classes"]
    assert g["S"]["se"] == 1.0 and g["S"]["ppv"] == pytest.approx(2 / 3)
    assert g["F"]["se"] is None and g["F"]["ppv"] is None and g["F"]["fpr"] == 0.0
    assert out["per_record"] is None and out["ci"] is None and "no 'record'" in out["note"]
    only_n = aami.report(np.zeros(4, int), np.zeros(4, int), NAMES, np.array(["a"] * 4))
    assert only_n["gross"]["classes"]["N"]["fpr"] is None  # no negatives at all
    with pytest.raises(ValueError, match="outside"):
        aami.report(y, np.full(6, 7), NAMES)
    with pytest.raises(ValueError, match="one length"):
        aami.report(y, y[:3], NAMES)


def test_bootstrap_equals_a_plain_loop_over_resampled_records() -> None:
    y, pred, record = case(2, n=600, records=6)
    n_boot, seed = 40, 3
    ci = aami.report(y, pred, NAMES, record, n_boot=n_boot, seed=seed)["ci"]
    records = np.unique(record)
    draws = np.random.default_rng(seed).integers(0, len(records), size=(n_boot, len(records)))
    se_v, acc = [], []
    for row in draws:
        idx = np.concatenate([np.flatnonzero(record == records[i]) for i in row])
        se_v.append(sk_stats(y[idx], pred[idx], 2)["se"])
        acc.append(accuracy_score(y[idx], pred[idx]))
    assert ci["classes"]["V"]["se"] == pytest.approx(np.percentile(se_v, [2.5, 97.5]).tolist())
    assert ci["accuracy"] == pytest.approx(np.percentile(acc, [2.5, 97.5]).tolist())
    assert ci["n_boot"] == n_boot and ci["unit"] == "records"


def test_bootstrap_ci_contains_the_estimate_and_is_narrow_for_identical_records() -> None:
    y, pred, record = case(3, n=2000, records=20)
    out = aami.report(y, pred, NAMES, record, n_boot=500)
    for name in ("N", "V", "F"):
        for stat in aami.STATS:
            low, high = out["ci"]["classes"][name][stat]
            assert low <= out["gross"]["classes"][name][stat] <= high, (name, stat)
            assert high - low > 0.005  # patients differ: the interval has width
    # S sits in 3 of 20 records: a resample may draw none of them; those are left out.
    assert 0 < out["ci"]["classes"]["S"]["defined"]["se"] < 500
    # Twenty copies of one record: every resample is the same set of beats.
    one = record == "r0"
    same_y, same_pred = np.tile(y[one], 20), np.tile(pred[one], 20)
    same_record = np.repeat([f"c{i}" for i in range(20)], one.sum())
    ident = aami.report(same_y, same_pred, NAMES, same_record, n_boot=200)
    for stat in aami.STATS:
        low, high = ident["ci"]["classes"]["V"][stat]
        assert high - low < 1e-12
        assert low == pytest.approx(ident["gross"]["classes"]["V"][stat])
    # Seeded: the same seed gives the same intervals.
    again = aami.report(y, pred, NAMES, record, n_boot=500)
    assert again["ci"] == out["ci"]
    with pytest.raises(ValueError, match="n_boot"):
        aami.bootstrap_ci(np.ones((2, 5, 5)), NAMES, n_boot=-1)


def test_flat_metrics_round_trip_to_the_same_table() -> None:
    y, pred, record = case(4)
    out = aami.report(y, pred, NAMES, record, n_boot=100, protocol="inter-patient (new patients)")
    flat = aami_tables.flat_metrics(out, "eval/test/aami")
    assert flat["eval/test/aami/se_S"] == out["gross"]["classes"]["S"]["se"]
    assert flat["eval/test/aami/record_avg/se_S"] == out["record_average"]["classes"]["S"]["se"]
    back = aami_tables.from_flat(flat, "eval/test/aami", NAMES, out["protocol"])
    assert back is not None
    rows, back_rows = aami_tables.gross_rows(out)[1], aami_tables.gross_rows(back)[1]
    for row, again in zip(rows, back_rows, strict=True):
        assert row[:5] == again[:5] or row[0].startswith("macro")  # macro CI is not logged
    assert aami_tables.from_flat({}, "eval/test/aami", NAMES, None) is None
    caption = aami_tables.store_table(
        flat, {"ecgjax.eval.test.patients": "seen"}, "test", NAMES, "test split"
    )
    assert caption is not None and "Seen patients" in caption[0]
