"""Fit class decision offsets on a CV run's out-of-fold pool (training patients only).

``scripts/train.py --config.data.cv_folds=k`` saves ``oof.npz``. The config's cluster smoothing
is applied first (offsets act on what evaluation would see), the offsets are fitted on the
whole pool (:func:`ecgjax.scoring.decision.fit`) and, to tell a real gain from a fitted one,
cross-fitted over the CV's own folds, with paired record-bootstrap CIs against argmax. The
result, ``decision.json`` in the CV folder, is what ``scripts/evaluate.py --decision`` applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgjax.data import DataError
from ecgjax.evaluation.compare import paired_bootstrap
from ecgjax.scoring import aami, decision
from ecgjax.studies.cv_compare import PAIRED, gross, smoothed_pool
from ecgjax.training import checkpoint as ckpt


def study(
    cv_dir: Path,
    goals_text: str = decision.DEFAULT_GOALS,
    resamples: int = 1000,
    smoothing: float | None = None,
    k: int | None = None,
) -> dict:
    """Fit, cross-fit and compare; returns what :func:`write` stores.

    ``smoothing``/``k`` override the CV config's cluster smoothing: the offsets must be fitted
    on what the final checkpoint's evaluation will see (``evaluate.py --decision`` checks).

    Raises:
        DataError: no ``oof.npz``/``cv.json`` in ``cv_dir``, or a goal that does not parse.
    """
    pool = smoothed_pool(cv_dir, smoothing, k)
    cv, names, y, record, probs = pool.cv, pool.class_names, pool.y, pool.record, pool.probs
    strength, k = pool.smoothing, pool.k
    try:
        goals = decision.parse_goals(goals_text, names)
    except ValueError as err:
        raise DataError(f"--goals: {err}") from None
    fitted = decision.fit(probs, y, names, goals)
    folds = [f["val_records"] for f in cv["folds"]]
    pred, per_fold = decision.cross_fitted(probs, y, record, folds, names, goals)
    base = probs.argmax(1)
    diffs = {}
    for metric in PAIRED:
        b = paired_bootstrap(y, pred, base, names, metric, resamples, groups=record)
        diffs[metric] = [b.diff, b.ci_low, b.ci_high]
    in_sample = decision.decide(probs, fitted.offsets)
    crossed = decision.objective(
        decision.goal_values(aami.confusion(y, pred, len(names)), goals, names), goals
    )
    adopted = crossed > fitted.argmax_objective
    return {
        # Adopted only when offsets fitted without a fold beat argmax on it: otherwise the
        # fit has learnt the training records, not a rule for new ones, and argmax stays.
        "adopted": adopted,
        "offsets": dict(zip(names, fitted.offsets if adopted else [0.0] * len(names), strict=True)),
        "fitted_offsets": dict(zip(names, fitted.offsets, strict=True)),
        "class_names": names,
        "goals": [g.label for g in goals],
        "goals_spec": goals_text,
        "train_file": Path(str(cv["train_file"])).name,
        "cv_dir": str(cv_dir),
        "records": sorted(set(record.tolist())),
        "beats": len(y),
        "cluster_smoothing": strength,
        "cluster_k": k,
        "protocol": "out-of-fold pool of the training patients (no test file read)",
        "argmax": gross(y, base, names) | {"objective": fitted.argmax_objective},
        "fitted": gross(y, in_sample, names) | {"objective": fitted.objective},
        "cross_fitted": gross(y, pred, names)
        | {
            "objective": crossed,
            "offsets_per_fold": [dict(zip(names, o, strict=True)) for o in per_fold],
            "diff_vs_argmax": diffs,
            "resamples": resamples,
        },
    }


def write(cv_dir: Path, result: dict[str, Any]) -> Path:
    out = cv_dir / decision.FILE
    ckpt.write_json_atomic(out, result)
    return out
