"""Compare saved ensembles on one test file: seed spread side by side, and a paired bootstrap.

A single test number per run hides two sources of noise: the seeds (training) and the test
beats (sampling). The table shows the first (mean +- std over seeds, worst seed, ensemble);
the paired bootstrap the second: beats are resampled with replacement, the *same* indices for
A and B, so "A is better than B" comes with a 95% interval of the difference.

Each run also gets its gross AAMI Se/+P/FPR (:mod:`ecgjax.scoring.aami`) and its own protocol: the
runs may have been trained on different files, so one test file can hold new patients for one
run and seen patients for another (:mod:`ecgjax.evaluation.patients`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.evaluation import evaluate as eval_lib
from ecgjax.evaluation import plots as eval_plots
from ecgjax.scoring import aami, af_gate
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.validate import validate

SUMMARY_METRICS = ("macro_recall", "macro_f1", "balanced_accuracy", "accuracy")


@dataclass
class Candidate:
    """One restored ensemble and its predictions on the shared test file."""

    label: str
    run_dir: Path
    class_names: list[str]
    probs: np.ndarray  # (S, N, C)
    report: dict[str, Any]  # metrics.ensemble_report
    patients: dict[str, Any]  # patients.overlap of the test file with this run's training file

    @property
    def ensemble_pred(self) -> np.ndarray:
        return self.probs.mean(0).argmax(-1)


@dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap of ``metric(A) - metric(B)`` over test beats."""

    a: str
    b: str
    metric: str
    value_a: float
    value_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_not_better: float  # fraction of resamples where A is not better than B
    resamples: int

    @property
    def clear(self) -> bool:
        """The 95% interval excludes 0: a difference the test set can vouch for."""
        return self.ci_low > 0 or self.ci_high < 0


def split_source(source: str) -> tuple[str, str]:
    """``checkpoints/run@af_gate=true,af_gate_pwave=0.5`` -> ``(checkpoints/run, af_gate=...)``:
    a checkpoint and the prediction-time settings to change on it ("" for none)."""
    path, at, spec = source.rpartition("@")
    return (path, spec) if at and "=" in spec else (source, "")


def load_candidates(
    sources: Sequence[str], data_path: str | Path | None = None
) -> tuple[list[Candidate], data_lib.BeatData]:
    """Restore every source and predict on one test file (default: the first one's test split).

    A source may carry prediction-time settings after ``@`` (:func:`split_source`,
    :data:`ecgjax.config.PREDICTION_KEYS`), so one checkpoint can be paired with itself under
    another setting: ``run run@af_gate=true``. The label shows them.

    Raises:
        ValueError: fewer than two sources, or a setting that is not prediction-time or mistyped.
    """
    if len(sources) < 2:
        raise ValueError("compare needs at least two runs, trials or sweeps")
    parsed = [split_source(s) for s in sources]
    loaded = [eval_lib.load_ensemble(path) for path, _ in parsed]
    for ld, (path, spec) in zip(loaded, parsed, strict=True):
        try:
            ld.config.update_from_flattened_dict(config_lib.prediction_overrides(ld.config, spec))
            validate(ld.config)
        except ValueError as err:
            raise ValueError(f"{path}@{spec}: {err}") from None
    test, _ = eval_lib.load_data(loaded[0], data_path)
    classes = {tuple(ld.class_names) for ld in loaded}
    if len(classes) > 1:
        raise ckpt.CheckpointError(f"runs disagree on the classes: {sorted(classes)}")
    out: list[Candidate] = []
    for ld, (_, spec) in zip(loaded, parsed, strict=True):
        patients = eval_lib.patients_of(ld, test)
        if af_gate.GateSettings.from_config(ld.config.data).active:
            eval_lib.whole_records(test, patients, None)  # its RR intervals need whole records
        own = _inputs_for(ld, loaded[0], test, data_path)
        probs = eval_lib.predict(ld, own)
        label = eval_lib.checkpoint_label(ld.run_dir) + (f"@{spec}" if spec else "")
        if any(c.label == label for c in out):
            label = f"{label} #{len(out) + 1}"
        report = metrics_lib.ensemble_report(probs, test.y, ld.num_classes)
        out.append(Candidate(label, ld.run_dir, ld.class_names, probs, report, patients))
    return out, test


def _inputs_for(
    ld: eval_lib.Loaded,
    first: eval_lib.Loaded,
    test: data_lib.BeatData,
    data_path: str | Path | None,
) -> data_lib.BeatData:
    """The test beats in ``ld``'s own input channels (runs may use different ``data.channels``)."""
    keys = (
        "channels",
        "template",
        "template_beats",
        "rr_causal",
        "rr_irregularity",
        "template_features",
        "p_wave_features",
    )
    if all(ld.config.data.get(k) == first.config.data.get(k) for k in keys):
        return test
    own, _ = eval_lib.load_data(ld, data_path if data_path is not None else test.source)
    if not np.array_equal(own.y, test.y):
        raise data_lib.DataError(
            f"{test.source}: {ld.run_dir} and {first.run_dir} see different beats of this file "
            "(a subsampled smoke run?); pass --data to compare on one whole file"
        )
    return own


def _columns(
    y: np.ndarray, pred: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indicator columns ``(N, C)``: true class, correct hit, predicted class; and ``(N,)`` hit."""
    onehot_y = np.eye(num_classes)[y]
    onehot_p = np.eye(num_classes)[pred]
    hit = pred == y
    return onehot_y, onehot_y * hit[:, None], onehot_p, hit.astype(np.float64)


def metric_from_counts(
    weights: np.ndarray, y: np.ndarray, pred: np.ndarray, metric: str, class_names: Sequence[str]
) -> np.ndarray:
    """``metric`` for each row of beat multiplicities ``weights`` ``(B, N)`` (NaN if undefined).

    Conventions follow :mod:`ecgjax.scoring.metrics`: macro means cover the classes present.
    """
    num_classes = len(class_names)
    onehot_y, tp_cols, onehot_p, hit = _columns(y, pred, num_classes)
    support, tp, predicted = weights @ onehot_y, weights @ tp_cols, weights @ onehot_p
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1e-300), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(support > 0, f1, np.nan)
    if metric in ("macro_recall", "balanced_accuracy"):
        return np.nanmean(recall, axis=1)
    if metric == "macro_f1":
        return np.nanmean(f1, axis=1)
    if metric == "accuracy":
        return (weights @ hit) / weights.sum(axis=1)
    found = re.fullmatch(r"(recall|precision|f1)_(\w+)", metric)
    if found and found[2] in class_names:
        c = list(class_names).index(found[2])
        table = {"recall": recall, "precision": precision, "f1": f1}[found[1]]
        return table[:, c]
    names = ", ".join(class_names)
    raise ValueError(
        f"unknown metric {metric!r}; use macro_recall, macro_f1, accuracy or "
        f"recall_/precision_/f1_<class> with class in {names}"
    )


def paired_bootstrap(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    class_names: Sequence[str],
    metric: str = "macro_recall",
    resamples: int = 2000,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
    groups: np.ndarray | None = None,
) -> Bootstrap:
    """Resample beats with replacement (same indices for A and B) and bootstrap the difference.

    With ``groups`` (e.g. the record of each beat) whole groups are resampled instead: beats
    of one patient are not independent, and when a class sits mostly in one patient the
    beat-level interval is too narrow; the group bootstrap asks whether the difference holds
    across patients.
    """
    y, pred_a, pred_b = (np.asarray(v, dtype=np.int64) for v in (y, pred_a, pred_b))
    if not (y.shape == pred_a.shape == pred_b.shape) or y.ndim != 1 or y.size == 0:
        raise ValueError(f"y, pred_a, pred_b must be equal-length 1-D; {y.shape}, {pred_a.shape}")
    if groups is not None and np.shape(groups) != y.shape:
        raise ValueError(f"groups {np.shape(groups)} must have one entry per beat {y.shape}")
    n = y.shape[0]
    _, member = (
        np.unique(np.asarray(groups), return_inverse=True) if groups is not None else (None, None)
    )
    units = n if member is None else int(member.max()) + 1
    full = np.ones((1, n))
    value_a = float(metric_from_counts(full, y, pred_a, metric, class_names)[0])
    value_b = float(metric_from_counts(full, y, pred_b, metric, class_names)[0])
    key = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, min(resamples, 2_000_000 // n))  # bound the (chunk, N) count matrix
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        idx = key.integers(0, units, size=(rows, units)) + (np.arange(rows) * units)[:, None]
        counts = np.bincount(idx.ravel(), minlength=rows * units).reshape(rows, units)
        weights = (counts if member is None else counts[:, member]).astype(np.float64)
        a = metric_from_counts(weights, y, pred_a, metric, class_names)
        b = metric_from_counts(weights, y, pred_b, metric, class_names)
        diffs.append(a - b)
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]  # a resample without the class has no per-class recall
    if d.size == 0:
        raise ValueError(f"{metric}: undefined on this test file (class absent?)")
    low, high = np.percentile(d, [2.5, 97.5])
    return Bootstrap(
        a=labels[0],
        b=labels[1],
        metric=metric,
        value_a=value_a,
        value_b=value_b,
        diff=value_a - value_b,
        ci_low=float(low),
        ci_high=float(high),
        p_not_better=float(np.mean(d <= 0)),
        resamples=int(d.size),
    )


_VIEWS = (
    ("mean", "seed_mean"),
    ("std", "seed_std"),
    ("worst", "seed_worst"),
    ("ensemble", "ensemble"),
)


def summary(candidate: Candidate, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per metric: seed mean, std, worst and the ensemble value."""
    rep = candidate.report
    out: dict[str, dict[str, float]] = {}
    for k in SUMMARY_METRICS:
        out[k] = {v: rep[src][k] for v, src in _VIEWS}
    for c, name in enumerate(class_names):
        out[f"recall_{name}"] = {v: rep[src]["recall"][c] for v, src in _VIEWS}
    return out


def compare(
    sources: Sequence[str],
    *,
    data_path: str | Path | None = None,
    metric: str = "macro_recall",
    resamples: int = 2000,
    name: str | None = None,
    seed: int = 0,
    by_record: bool = False,
) -> dict[str, Any]:
    """Table, bootstrap of the first source against each other one, JSON and a figure.

    ``by_record`` resamples whole records (patients) instead of beats. Files go to
    ``report/compare/<name>.json`` and ``.png``.
    """
    candidates, test = load_candidates(sources, data_path)
    if by_record and test.record is None:
        raise data_lib.DataError(
            f"{test.source}: --by_record needs a 'record' column; this file has none"
        )
    first = candidates[0]
    names = first.class_names
    tests = [
        paired_bootstrap(
            test.y,
            first.ensemble_pred,
            other.ensemble_pred,
            names,
            metric,
            resamples,
            seed,
            labels=(first.label, other.label),
            groups=test.record if by_record else None,
        )
        for other in candidates[1:]
    ]
    name = name or re.sub(r"[^\w.\-]+", "_", "_vs_".join(c.label for c in candidates))[:120]
    out_dir = paths.report_dir() / "compare"
    figure = eval_plots.compare_png(
        {c.label: c.report for c in candidates},
        names,
        out_dir / f"{name}.png",
        f"test recall on {Path(test.source).name} (n={len(test)})",
    )
    result = {
        "data": {
            "file": test.source,
            "n": len(test),
            "resampled": "records" if by_record else "beats",
        },
        "class_names": names,
        "runs": [
            {
                "label": c.label,
                "checkpoint": str(c.run_dir),
                "summary": summary(c, names),
                "patients": c.patients["patients"],
                "protocol": c.patients["protocol"],
                "aami_gross": aami.gross(
                    aami.confusion(test.y, c.ensemble_pred, len(names)), names
                ),
            }
            for c in candidates
        ],
        "bootstrap": [{**asdict(t), "clear": t.clear} for t in tests],
        "figure": str(figure),
    }
    ckpt.write_json_atomic(out_dir / f"{name}.json", result)
    result["json"] = str(out_dir / f"{name}.json")
    return result
