"""A second learner for new patients: gradient-boosted trees on patient-normalised features.

The CNN ensemble's members differ only by seed, so they tend to miss the same beats. Trees on
hand-made features (:mod:`ecgjax.data.tabular`: RR against the patient's rate, the QRS against
the patient's median beat) are the family the published global methods use, and their errors
can differ. :func:`blend` averages the two probability sets.

The settings are fixed (:class:`TreeParams`), not tuned: they were written in
``report/journal.md`` before the first fit, and the class weights are the recipe's
inverse-frequency weights (power 1), so both learners aim at the same balance.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax.data.beats import BeatData, DataError
from ecgjax.data.splits import class_weights
from ecgjax.data.tabular import beat_features, feature_names
from ecgjax.training.checkpoint import write_atomic

MODEL_FILE = "trees.pkl"


@dataclass(frozen=True)
class TreeParams:
    """scikit-learn ``HistGradientBoostingClassifier`` settings and the class-weight power."""

    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    class_weight_power: float = 1.0
    random_state: int = 0


@dataclass
class TreeModel:
    """A fitted classifier with what it needs to predict: class count and feature names."""

    classifier: Any
    num_classes: int
    features: list[str]
    params: TreeParams

    def predict(self, data: BeatData) -> np.ndarray:
        """float64 ``(N, num_classes)`` probabilities; classes absent in training get 0."""
        feats = beat_features(data)
        if feats.shape[1] != len(self.features):
            raise DataError(
                f"{data.source}: {feats.shape[1]} tree features, the model has {len(self.features)}"
            )
        out = np.zeros((len(feats), self.num_classes))
        if len(feats):
            out[:, self.classifier.classes_] = self.classifier.predict_proba(feats)
        return out


def fit(data: BeatData, params: TreeParams | None = None) -> TreeModel:
    """Fit the trees on every beat of ``data`` (the training patients).

    Raises:
        DataError: ``data`` lacks the per-record columns, or holds a single class.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    params = params or TreeParams()
    y = np.asarray(data.y, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise DataError(f"{data.source}: the trees need at least two classes to learn")
    feats = beat_features(data)
    weights = class_weights(y, data.num_classes, params.class_weight_power)[y]
    clf = HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=False,
        random_state=params.random_state,
    )
    clf.fit(feats, y, sample_weight=weights)
    return TreeModel(clf, data.num_classes, feature_names(), params)


def blend(cnn: np.ndarray, trees: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * cnn + weight * trees``: the mean of two calibrated-alike opinions.

    ``cnn`` may carry leading axes (seeds); ``trees`` broadcasts against it.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the tree blend weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * cnn + weight * trees


def save(model: TreeModel, directory: Path) -> Path:
    """Write ``directory/trees.pkl`` atomically (a stopped write leaves the old file whole)."""
    path = directory / MODEL_FILE
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "classifier": model.classifier,
        "num_classes": model.num_classes,
        "features": model.features,
        "params": asdict(model.params),
    }
    write_atomic(path, lambda f: pickle.dump(payload, f), binary=True)  # type: ignore[arg-type]
    return path


def load(directory: Path) -> TreeModel:
    """Read ``directory/trees.pkl``.

    Raises:
        DataError: the file is missing or not a tree model written by :func:`save`.
    """
    path = directory / MODEL_FILE
    if not path.is_file():
        raise DataError(f"{path}: no tree model (scripts/tree_study.py writes one per fold)")
    try:
        with path.open("rb") as f:
            payload = pickle.load(f)
        return TreeModel(
            payload["classifier"],
            int(payload["num_classes"]),
            list(payload["features"]),
            TreeParams(**payload["params"]),
        )
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable tree model ({e})") from e
