"""The tree model: patient-normalised features, fit/predict, blend, and its saved file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ecgjax.data import BeatData, DataError
from ecgjax.data.rr import RR_FEATURES
from ecgjax.data.synthetic import make_records
from ecgjax.data.tabular import SPAN, STEP, beat_features, feature_names
from ecgjax.training import trees

SMALL = trees.TreeParams(max_iter=10, min_samples_leaf=5)


def _data(seed: int, records: int = 6, lead2: bool = True) -> BeatData:
    x, y, record, sample = make_records(records, 60, 5, seed)
    return BeatData(
        x=x,
        y=y.astype(np.int32),
        num_classes=5,
        source=f"synthetic{seed}.parq",
        record=record,
        sample=sample,
        lead2=(0.5 - 0.4 * x).astype(np.float32) if lead2 else None,
    )


def test_features_are_relative_to_each_record() -> None:
    data = _data(0)
    feats = beat_features(data)
    names = feature_names()
    assert feats.shape == (len(data), len(names)) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    per_lead = 2 * (SPAN // STEP) + 3
    assert len(names) == len(RR_FEATURES) + 2 * per_lead
    col = names.index("lead1_x2")
    np.testing.assert_array_equal(feats[:, col], data.x[:, 2])
    # The template part: shifting one record's signal moves its raw samples, not its
    # beat-minus-median-beat samples (each record is measured against its own median beat).
    shifted = _data(0)
    rows = np.asarray(shifted.record) == "100"
    shifted.x[rows] += 0.25
    again = beat_features(shifted)
    dx = names.index("lead1_dx4")
    np.testing.assert_allclose(again[:, dx], feats[:, dx], atol=1e-6)
    assert not np.allclose(again[rows, col], feats[rows, col])
    # One-lead data: the second lead's columns are those of a zero signal, not an error.
    one = beat_features(_data(0, lead2=False))
    assert one.shape == feats.shape
    np.testing.assert_array_equal(one[:, names.index("lead2_x0")], 0.0)


def test_features_need_the_record_columns() -> None:
    data = dataclasses.replace(_data(0), record=None)
    with pytest.raises(DataError, match=r"synthetic0\.parq: .*'record' and 'sample'"):
        beat_features(data)


def test_fit_predict_learns_the_synthetic_classes(tmp_path: Path) -> None:
    train, test = _data(1), _data(2)
    model = trees.fit(train, SMALL)
    probs = model.predict(test)
    assert probs.shape == (len(test), 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    chance = np.bincount(test.y, minlength=5).max() / len(test)
    assert (probs.argmax(1) == test.y).mean() > chance + 0.1
    # Classes the training file lacks get zero probability, in their own column.
    only = train.subset(np.flatnonzero(np.isin(train.y, [0, 2])))
    two = trees.fit(only, SMALL).predict(test)
    assert two.shape == (len(test), 5)
    np.testing.assert_array_equal(two[:, [1, 3, 4]], 0.0)
    with pytest.raises(DataError, match="at least two classes"):
        trees.fit(train.subset(np.flatnonzero(train.y == 0)), SMALL)

    # Saved and loaded, it predicts the same; a damaged file is a clear error, not a crash.
    path = trees.save(model, tmp_path / "fold0")
    assert path.name == trees.MODEL_FILE
    back = trees.load(tmp_path / "fold0")
    assert back.params == SMALL and back.features == feature_names()
    np.testing.assert_array_equal(back.predict(test), probs)
    with pytest.raises(DataError, match="no tree model"):
        trees.load(tmp_path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"trees\.pkl: not a readable tree model"):
        trees.load(tmp_path / "fold0")


def test_blend_weights_and_bounds() -> None:
    cnn = np.full((3, 4, 5), 0.2)  # seeds, beats, classes
    tree = np.eye(5)[[0, 1, 2, 3]]
    out = trees.blend(cnn, tree, 0.25)
    assert out.shape == cnn.shape
    np.testing.assert_allclose(out[1, 2], 0.75 * 0.2 + 0.25 * np.eye(5)[2])
    np.testing.assert_array_equal(trees.blend(cnn, tree, 0.0), cnn)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="blend weight"):
            trees.blend(cnn, tree, bad)
