"""Figures for evaluation, comparison and the sweep report (matplotlib, headless).

Each shows spread, not just a point: seed-to-seed variation decides whether a difference
between two settings means anything, so every bar carries its seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, NullFormatter
from sklearn.metrics import average_precision_score, precision_recall_curve

from ecgjax.scoring import plots


def _save(fig: Any, path: Path, dpi: int = 120) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def evaluation_pngs(
    report: Mapping[str, Any], probs: np.ndarray, y: np.ndarray, out: Path
) -> list[Path]:
    """The figures of one evaluation report: confusion, recall with seed spread, PR curves."""
    name, names = report["name"], report["class_names"]
    title = (
        f"{report['label']} ({report['which']}) on {Path(report['data']['file']).name}\n"
        f"{report['protocol']}"
    )
    cm = np.asarray(report["metrics"]["ensemble"]["confusion"])
    return [
        plots.confusion_png(cm, names, out / f"{name}_confusion.png", f"{title}, ensemble"),
        recall_spread_png(report["metrics"], names, out / f"{name}_recall.png", title),
        pr_curves_png(probs, y, names, out / f"{name}_pr.png", title),
    ]


def recall_spread_png(
    report: Mapping[str, Any], class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Per-class recall: seed mean bar with +-std, a dot per seed, the ensemble as a red tick."""
    seeds = np.array([m["recall"] for m in report["seeds"]])
    mean, std = seeds.mean(0), seeds.std(0)
    x = np.arange(len(class_names))
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.bar(x, mean, yerr=std, capsize=4, color="#9ecae1", label="seed mean +- std")
    for k, row in enumerate(seeds):
        jitter = (k - (len(seeds) - 1) / 2) * 0.08
        ax.scatter(
            x + jitter, row, s=14, color="#08519c", zorder=3, label="seeds" if k == 0 else None
        )
    ax.scatter(
        x,
        report["ensemble"]["recall"],
        marker="_",
        s=600,
        color="#d62728",
        zorder=4,
        label="ensemble",
    )
    ax.set_xticks(x, class_names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def pr_curves_png(
    probs: np.ndarray, y: np.ndarray, class_names: Sequence[str], path: Path, title: str
) -> Path:
    """One-vs-rest precision-recall curve per class from the ensemble probabilities ``(N, C)``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for c, name in enumerate(class_names):
        truth = np.asarray(y) == c
        if not truth.any():
            continue  # no positives: the curve is undefined
        precision, recall, _ = precision_recall_curve(truth, probs[:, c])
        ap = average_precision_score(truth, probs[:, c])
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f}, n={int(truth.sum())})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compare_png(
    reports: Mapping[str, Mapping[str, Any]], class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Grouped bars per class plus macro recall: each run's seed mean +- std and its ensemble."""
    labels = [*class_names, "macro"]
    x = np.arange(len(labels))
    width = 0.8 / max(len(reports), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) * max(len(reports), 1) * 0.5), 3.6))
    for i, (run, rep) in enumerate(reports.items()):
        seeds = np.array([[*m["recall"], m["macro_recall"]] for m in rep["seeds"]])
        ens = [*rep["ensemble"]["recall"], rep["ensemble"]["macro_recall"]]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, seeds.mean(0), width * 0.9, yerr=seeds.std(0), capsize=3, label=run)
        ax.scatter(
            pos,
            ens,
            marker="_",
            s=200,
            color="black",
            zorder=4,
            label="ensemble" if i == 0 else None,
        )
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def learning_curves_png(
    curves: Mapping[str, Sequence[tuple[int, float]]],
    max_epochs: int,
    metric: str,
    path: Path,
    best: str | None,
) -> Path:
    """Validation metric per epoch for every trial; a cross marks a trial ASHA stopped early."""
    fig, ax = plt.subplots(figsize=(4.6, 3.1))
    for trial, points in curves.items():
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        is_best = trial == best
        ax.plot(
            epochs,
            values,
            lw=2.2 if is_best else 1.0,
            alpha=1.0 if is_best else 0.6,
            label=f"{trial} (best)" if is_best else None,
            color="#d62728" if is_best else None,
        )
        if epochs[-1] < max_epochs:
            ax.scatter([epochs[-1]], [values[-1]], marker="x", color="black", s=18, zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (x = stopped early)")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves: {metric}", fontsize=9)
    if best is not None:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def hparam_scatter_png(
    rows: Sequence[Mapping[str, Any]], params: Sequence[str], metric: str, path: Path
) -> Path:
    """Each tuned hyper-parameter against the trials' metric (log x-axis for wide ranges),
    five panels to a row; the best trial is the red point."""
    shown = list(params) or ["(none)"]
    ncols = min(5, len(shown))
    nrows = -(-len(shown) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.3 * ncols + 0.4, 2.1 * nrows), squeeze=False, sharey=True
    )
    ys = [r["metric"] for r in rows]
    for ax, name in zip(axes.flat, shown, strict=False):
        values = [r["params"].get(name) for r in rows]
        numeric = [_number(v) for v in values]
        if all(v is not None for v in numeric):
            xs: list[Any] = numeric
            positive = [v for v in numeric if v is not None and v > 0]
            if len(positive) == len(numeric) and max(positive) / min(positive) > 5:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4))
        else:
            cats = sorted({str(v) for v in values})
            xs = [cats.index(str(v)) for v in values]
            ax.set_xticks(range(len(cats)), cats, fontsize=7, rotation=20)
        ax.scatter(xs[1:], ys[1:], s=14, color="#1f77b4")
        ax.scatter(xs[:1], ys[:1], s=18, color="#d62728", zorder=3)  # the best, on top
        ax.set_xlabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(metric, fontsize=8)
    return _save(fig, path)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
