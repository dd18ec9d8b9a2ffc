"""Choose the cluster smoothing (strength, k) on training patients: a CV run's out-of-fold pool.

``scripts/train.py --config.data.cv_folds=k`` saves ``oof.npz``: every training beat predicted
once by the fold that held its record out. Each (k, strength) is scored on that pool with
the AAMI gross statistics, and against no smoothing with a paired bootstrap over records
(:func:`ecgjax.evaluation.compare.paired_bootstrap`), so the choice never looks at a test file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax.data import DataError
from ecgjax.evaluation.compare import paired_bootstrap
from ecgjax.scoring import aami, clusters

KEYS = ("N", "S", "V", "F")
PAIRED = ("recall_V", "precision_V", "recall_N", "accuracy")


def load_oof(cv_dir: Path) -> dict[str, np.ndarray]:
    path = cv_dir / "oof.npz"
    if not path.is_file():
        raise DataError(f"{path}: no out-of-fold pool; train with --config.data.cv_folds=4 first")
    with np.load(path) as z:  # "sample" (beat positions) only in pools written since 2026-12
        return {k: z[k] for k in ("probs", "y", "record", "x", "sample") if k in z.files}


def study(
    oof: dict[str, np.ndarray],
    class_names: Sequence[str],
    strengths: Sequence[float],
    ks: Sequence[int],
    resamples: int = 1000,
) -> list[dict[str, Any]]:
    """One row per (k, strength): gross Se/+P per class, accuracy, and paired CIs vs off."""
    y, record = oof["y"], oof["record"].astype(str)
    base = oof["probs"].argmax(1)
    rows = []
    for k in ks:
        ids = clusters.record_clusters(oof["x"], record, k=k)
        for strength in strengths:
            pred = clusters.smooth(oof["probs"], ids, class_names, strength).argmax(1)
            gross = aami.gross(aami.confusion(y, pred, len(class_names)), class_names)
            row: dict[str, Any] = {
                "k": k,
                "strength": strength,
                "accuracy": float(np.mean(pred == y)),
            }
            for c in KEYS:
                row[f"Se_{c}"] = gross["classes"][c]["se"]
                row[f"+P_{c}"] = gross["classes"][c]["ppv"]
            if strength > 0:
                for metric in PAIRED:
                    b = paired_bootstrap(
                        y, pred, base, class_names, metric, resamples, groups=record
                    )
                    row[f"diff_{metric}"] = [b.diff, b.ci_low, b.ci_high]
            rows.append(row)
    return rows


def write(cv_dir: Path, rows: list[dict[str, Any]]) -> Path:
    out = cv_dir / "cluster_study.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    return out
