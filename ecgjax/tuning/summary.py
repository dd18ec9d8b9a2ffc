"""What a finished sweep tells the user: the ranked trial table, the best run folder, sweep.json.

Trials are ranked by the best epoch of each (the epoch whose state the trial's ``best/``
checkpoint holds), not by the last epoch a scheduler happened to stop it at.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import ml_collections
from ray import tune
from ray.tune import ResultGrid
from rich.console import Console
from rich.table import Table

from ecgjax import config as config_lib
from ecgjax.tuning import members as members_lib
from ecgjax.tuning.tracking import error_reason
from ecgjax.tuning.trainable import flatten_params


def metric_keys(metric: str, normal: str = "N") -> dict[str, str]:
    """Seed-mean metric, its worst-seed / seed-std / ensemble companions, and the context a
    recall-first objective is read against: macro recall, macro F1, the normal class's recall."""
    prefix, _, name = metric.partition("/")
    return {
        "metric": metric,
        "worst": f"{prefix}/worst/{name}",
        "std": f"{prefix}/std/{name}",
        "ensemble": f"{prefix}/ensemble/{name}",
        "macro_recall": f"{prefix}/macro_recall",
        "macro_f1": f"{prefix}/macro_f1",
        "recall_normal": f"{prefix}/recall_{normal}",
        "fold_std": f"{prefix}/fold_std/{name}",  # cross-validated sweeps only
    }


def trial_rows(
    grid: ResultGrid, config: ml_collections.ConfigDict, checkpoint_root: Path, sweep_id: str
) -> list[dict[str, Any]]:
    """One row per trial, ranked best first; failed trials last, with their reason."""
    keys = metric_keys(str(config.tune.metric), str(config.data.class_names[0]))
    sign = 1.0 if config.tune.mode == "max" else -1.0
    rows = []
    for result in (grid[i] for i in range(len(grid))):
        trial_id = Path(result.path).name
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": "ok",
            "params": flatten_params(result.config or {}),
            "run_dir": str(checkpoint_root / sweep_id / trial_id),
            "epochs": 0,
        }
        best_values = (result.metrics or {}).get("population_best_values")
        if isinstance(best_values, dict):  # a population trial: show its best member's values
            row["params"].update(best_values)
            members = (result.metrics or {}).get("population_members") or "[]"
            row["population"] = len(json.loads(members) if isinstance(members, str) else members)
        df = result.metrics_dataframe
        if df is not None and members_lib.MEMBERS_KEY in df:  # every setting it trained
            epochs = members_lib.epochs_from_results(df.to_dict("records"))
            row["members"] = members_lib.lineages(epochs, str(config.tune.mode))
        if df is not None and len(df) and keys["metric"] in df:
            df = df[df[keys["metric"]].notna()]
            best = df.loc[(sign * df[keys["metric"]]).idxmax()]
            # the epoch, not Tune's iteration count: a trial restored at its last epoch
            # (PBT) reports that epoch once more
            row["epochs"] = int(df["epoch" if "epoch" in df else "training_iteration"].max())
            row["best_epoch"] = int(best.get("epoch", best["training_iteration"]))
            for name, key in keys.items():
                row[name] = float(best[key]) if key in best else float("nan")
        if result.error is not None:
            row["status"] = "error"
            row["error"] = error_reason(str(result.error))
        rows.append(row)

    def rank(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get("metric", float("nan"))
        ok = row["status"] == "ok" and not math.isnan(value)
        return (0 if ok else 1, -sign * value if ok else 0.0)

    return sorted(rows, key=rank)


def differing_params(rows: list[dict[str, Any]]) -> list[str]:
    """Searched keys whose values are not the same in every trial."""
    keys = sorted({k for r in rows for k in r["params"]})
    return [k for k in keys if len({repr(r["params"].get(k)) for r in rows}) > 1]


def print_table(rows: list[dict[str, Any]], metric: str, console: Console, top: int = 10) -> None:
    """The top trials with their seed spread, and the failed ones with the reason."""
    varied = differing_params(rows)
    table = Table(
        title=f"top trials by {metric} at their best epoch (seed mean; worst seed, std; "
        "validation macro recall, macro F1, normal-class recall)"
    )
    ok = [r for r in rows if r["status"] == "ok" and "metric" in r]
    cv = any(not math.isnan(r.get("fold_std", float("nan"))) for r in ok)
    head = (metric.split("/")[-1], "worst", "std", "ens.", "recall", "F1", "N rec.")
    for col in ("#", "trial", *head, *(("fold std",) if cv else ()), "epoch"):
        table.add_column(col, justify="left" if col == "trial" else "right", no_wrap=col == "trial")
    for col in varied:
        table.add_column(column_label(col), justify="right")
    shown = ["metric", "worst", "std", "ensemble", "macro_recall", "macro_f1", "recall_normal"]
    shown += ["fold_std"] if cv else []
    for i, r in enumerate(ok[:top], 1):
        name = r["trial_id"] + (" *" if r.get("baseline") else "")
        cells = [f"{r.get(k, float('nan')):.4f}" for k in shown]
        values = [_short(r["params"].get(k)) for k in varied]
        table.add_row(str(i), name, *cells, f"{r['best_epoch']}/{r['epochs']}", *values)
    console.print(table)
    if any(r.get("baseline") for r in ok):
        console.print("* baseline: the config file's own values")
    for r in rows:
        if r["status"] == "error":
            console.print(f"[red]trial {r['trial_id']} failed[/red]: {r['error']}")


def print_members(
    row: dict[str, Any], metric: str, console: Console, where: Path, top: int = 10
) -> None:
    """A population trial's member table (every setting it trained, best first), the top
    ``top`` rows; the rest are in ``where`` (``sweep.json``)."""
    rows = row.get("members") or []
    if not rows:
        return
    keys = members_lib.varied_keys(rows)
    alive = sum(r["alive"] for r in rows)
    console.print(
        f"members of trial {row['trial_id']}: {alive} settings x {len(rows[0]['seeds'])} seeds "
        f"at the end, {len(rows) - alive} replaced on the way; ranked by {metric} (seed mean) "
        "at their best epoch"
    )
    table = Table()
    for col in ("#", "setting", "seeds", *map(column_label, keys), "best (epoch)", "final"):
        table.add_column(col, justify="right")
    table.add_column("history (selection)", justify="left")
    for cells in members_lib.table_rows(rows[:top], keys):
        table.add_row(*cells)
    console.print(table)
    if len(rows) > top:
        console.print(f"{len(rows) - top} more in {where} (trials -> members)")


_ABBREV = {
    "learning_rate": "lr",
    "class_weight_power": "cw_power",
    "num_blocks": "blocks",
    "batch_size": "batch",
    "weight_decay": "wd",
    "balance_power": "bal_power",
}


def column_label(key: str) -> str:
    """Short column name: ``loss.name`` -> ``loss``, ``optim.learning_rate`` -> ``lr``."""
    section, _, leaf = key.rpartition(".")
    if leaf == "name":
        return section.split(".")[-1]
    return _ABBREV.get(leaf, leaf)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def copy_best(row: dict[str, Any], sweep_dir: Path) -> Path:
    """Copy the best trial's run folder to ``<sweep>/best`` (replacing an older copy).

    A copy rather than a link, so the folder stays valid when trial folders are cleaned.
    """
    src, dst = Path(row["run_dir"]), sweep_dir / "best"
    tmp = sweep_dir / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.orbax-checkpoint-tmp*"))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def result_lines(
    rows: list[dict[str, Any]], metric: str, base: ml_collections.ConfigDict
) -> list[str]:
    """The journal's summary of a sweep: best trial, its spread, the baseline, the failures."""
    ok = [r for r in rows if r["status"] == "ok" and "metric" in r]
    failed = [r for r in rows if r["status"] == "error"]
    lines = [f"{len(rows)} trials, {len(ok)} ok, {len(failed)} failed"]
    if not ok:
        return [*lines, "no trial produced a result"]
    best = ok[0]
    flat = config_lib.flatten(base)
    changed = {k: v for k, v in best["params"].items() if flat.get(k) != v}
    lines.append(
        f"best trial {best['trial_id']}: {metric} {best['metric']:.4f} (worst seed "
        f"{best['worst']:.4f}, seed std {best['std']:.4f}, ensemble {best['ensemble']:.4f}, "
        f"macro F1 {best['macro_f1']:.4f}) at epoch {best['best_epoch']}"
    )
    lines.append(f"best differs from the config file in: {changed or 'nothing'}")
    for r in ok:
        if r.get("baseline"):
            lines.append(
                f"baseline (config file values) trial {r['trial_id']}: {metric} {r['metric']:.4f}"
            )
    lines += [f"failed {r['trial_id']}: {r['error']}" for r in failed]
    return lines


def progress_reporter(config: ml_collections.ConfigDict, space: dict[str, Any]) -> tune.CLIReporter:
    """Live table: the tuned metric with its worst seed and seed spread, and the searched values."""
    keys = metric_keys(str(config.tune.metric))
    metrics = {
        keys["metric"]: keys["metric"].split("/")[-1],
        keys["worst"]: "worst",
        keys["std"]: "std",
        keys["macro_f1"]: "F1",
        "training_iteration": "epoch",
    }
    params = {k.replace(".", "/"): column_label(k) for k in space}
    return tune.CLIReporter(
        metric_columns=metrics,
        parameter_columns=params,
        sort_by_metric=True,
        max_report_frequency=30,
    )


def budget(config: ml_collections.ConfigDict) -> str:
    tc = config.tune
    return (
        f"{tc.num_samples} samples x <= {tc.max_epochs} epochs x {config.train.steps_per_epoch or 'full'} "
        f"steps, {tc.seeds_per_trial} seeds/trial, metric {tc.metric} ({tc.mode})"
    )
