"""Compare two cross-validation runs on the same training patients, paired by beat.

Choosing inputs or training changes for new patients means comparing CV runs' out-of-fold
pools (``oof.npz``: every training record predicted once by a fold that never saw it), never
the test file. Both pools hold the same beats, so the difference is bootstrapped over records
with the same resampled records for both (:func:`ecgjax.evaluation.compare.paired_bootstrap`),
a far narrower interval than two separate ones. That interval does not include seed variance:
compare a second seed of the baseline (``--config.seed=1``) to see how far the seed alone moves
each number. Each pool gets its run's cluster smoothing (or the one given), as evaluation
would apply it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax import config as config_lib
from ecgjax.data import DataError
from ecgjax.evaluation.compare import paired_bootstrap
from ecgjax.scoring import aami
from ecgjax.scoring.af_gate import GateSettings
from ecgjax.studies.cluster_study import load_oof
from ecgjax.training.crossval import pooled_probs

PAIRED = ("recall_N", "recall_S", "precision_S", "recall_V", "precision_V", "accuracy")


@dataclass
class Pool:
    """A CV run's out-of-fold pool after its post-processing (cluster smoothing, AF gate):
    what evaluation would see."""

    cv: dict[str, Any]
    class_names: list[str]
    y: np.ndarray
    record: np.ndarray
    x: np.ndarray
    probs: np.ndarray
    smoothing: float
    k: int


def smoothed_pool(cv_dir: Path, smoothing: float | None = None, k: int | None = None) -> Pool:
    """Load ``cv_dir``'s pool and apply the CV config's cluster smoothing (or ``smoothing``/``k``)
    and AF gate.

    Raises:
        DataError: ``cv_dir`` is not a CV run (no ``cv.json``, ``oof.npz`` or fold config).
    """
    cv_path = cv_dir / "cv.json"
    if not cv_path.is_file():
        raise DataError(
            f"{cv_path}: not a cross-validation run (train with --config.data.cv_folds)"
        )
    config_path = cv_dir / "fold0" / "config.json"
    if not config_path.is_file():
        raise DataError(f"{config_path}: missing; the CV run is incomplete or damaged")
    config = config_lib.from_json(config_path.read_text())
    names = list(config.data.class_names)
    oof = load_oof(cv_dir)
    record = oof["record"].astype(str)
    strength = float(config.data.cluster_smoothing if smoothing is None else smoothing)
    k = int(config.data.cluster_k if k is None else k)
    arrays = dict(oof) | {"record": record}
    gate = GateSettings.from_config(config.data)
    sv_split = float(config.data.get("sv_split", 0.0))
    probs = pooled_probs(arrays, names, strength, k, gate, str(cv_dir), sv_split)
    return Pool(
        json.loads(cv_path.read_text()),
        names,
        oof["y"],
        record,
        oof["x"],
        probs,
        strength,
        k,
    )


def pool_epoch(pool: Pool) -> str:
    """The epoch a pool was scored at: ``last`` or ``best`` (runs before ``data.cv_epoch``)."""
    return str(pool.cv.get("epoch", "best"))


def gross(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Gross Se/+P per class and accuracy of one decision."""
    g = aami.gross(aami.confusion(y, pred, len(names)), names)["classes"]
    out: dict[str, Any] = {n: {"se": g[n]["se"], "ppv": g[n]["ppv"]} for n in names}
    out["accuracy"] = float(np.mean(pred == y))
    return out


def compare(
    a_dir: Path,
    b_dir: Path,
    resamples: int = 2000,
    smoothing: float | None = None,
    k: int | None = None,
) -> dict[str, Any]:
    """B minus A on the beats both pools hold, with 95% CIs over records (argmax decisions).

    Raises:
        DataError: either folder is not a CV run, the pools hold different beats (another
            training file, other records or another beat order), or their configs smooth
            differently and no ``smoothing``/``k`` is given for both.
    """
    a, b = smoothed_pool(a_dir, smoothing, k), smoothed_pool(b_dir, smoothing, k)
    if (a.smoothing, a.k) != (b.smoothing, b.k) and a.smoothing + b.smoothing > 0:
        raise DataError(
            f"{a_dir} and {b_dir} have different cluster smoothing in their configs "
            f"({a.smoothing:g}, k={a.k} vs {b.smoothing:g}, k={b.k}); pass --cluster_smoothing "
            "and --cluster_k to score both alike"
        )
    same = (
        a.class_names == b.class_names
        and a.y.shape == b.y.shape
        and bool(np.array_equal(a.y, b.y))
        and bool(np.array_equal(a.record, b.record))
        and bool(np.array_equal(a.x[:, :32], b.x[:, :32]))
    )
    if not same:
        raise DataError(
            f"{a_dir / 'oof.npz'} and {b_dir / 'oof.npz'} hold different beats "
            f"({len(a.y):,} vs {len(b.y):,}); compare CV runs of the same training file"
        )
    names = a.class_names
    epochs = [pool_epoch(a), pool_epoch(b)]
    pred_a, pred_b = a.probs.argmax(1), b.probs.argmax(1)
    diffs = {}
    for metric in PAIRED:
        boot = paired_bootstrap(a.y, pred_b, pred_a, names, metric, resamples, groups=a.record)
        diffs[metric] = [boot.diff, boot.ci_low, boot.ci_high]
    return {
        "a": str(a_dir),
        "b": str(b_dir),
        "class_names": names,
        "beats": len(a.y),
        "records": sorted(set(a.record.tolist())),
        "cluster_smoothing": [a.smoothing, b.smoothing],
        "cluster_k": [a.k, b.k],
        "epochs": epochs,
        "warning": (
            f"the pools are scored at different epochs ({epochs[0]} vs {epochs[1]}): a best-epoch "
            "pool was selected on its scored records; re-score one with scripts/cv_rescore.py "
            "--epoch"
            if epochs[0] != epochs[1]
            else None
        ),
        "protocol": "out-of-fold pools of the training patients (no test file read)",
        "gross": {"a": gross(a.y, pred_a, names), "b": gross(a.y, pred_b, names)},
        "b_minus_a": diffs,
        "resamples": resamples,
        "note": "95% CIs resample records (patients); seed variance is not in them",
    }
