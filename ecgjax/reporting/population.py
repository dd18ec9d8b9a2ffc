"""The report's members section for a population sweep (``tune.population >= 2``).

A population trial reports only its best setting to Tune, so the trial table alone hides the
P - 1 other settings it trained. This section shows them, read back from the per-epoch member
tables each trial run holds in the MLflow store (``population/members_epochNNN.json``): the
best trial's members by their values and score (every lineage, replaced ones included;
:mod:`ecgjax.tuning.members`), and one figure of every member of every trial, score against
each varied value (the learning rate first).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ecgjax.evaluation import plots as eval_plots
from ecgjax.reporting.render import Block
from ecgjax.reporting.store import ReportError, Sweep
from ecgjax.tracking import Tracker
from ecgjax.tuning import members as members_lib

TOP = 10  # member rows in the body; the rest go to the appendix


def is_population(sweep: Sweep) -> bool:
    """Whether the sweep's config trains populations (the parent run's ``tune.population``)."""
    try:
        return int(float(sweep.parent.data.params.get("tune.population", "1"))) >= 2
    except ValueError:
        return False


def load_members(sweep: Sweep, tracker: Tracker) -> dict[str, list[dict[str, Any]]]:
    """Trial id -> its member rows (best first), for the trials whose run holds member tables.

    Raises :class:`ReportError` naming the trial when a stored table cannot be read.
    """
    if not is_population(sweep):
        return {}
    out = {}
    for t in sweep.ok:
        if not tracker.client.list_artifacts(t.run_id, "population"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = tracker.client.download_artifacts(t.run_id, "population", tmp)
            try:
                epochs = members_lib.epochs_from_folder(Path(folder))
                rows = members_lib.lineages(epochs, sweep.mode)
            except (ValueError, KeyError) as err:
                raise ReportError(f"trial {t.trial_id}: bad member table ({err})") from None
        if rows:
            out[t.trial_id] = rows
    return out


def _short(key: str) -> str:
    leaf = key.split(".")[-1]
    return {"learning_rate": "lr", "weight_decay": "wd", "class_weight_power": "cw power"}.get(
        leaf, leaf.replace("_", " ")
    )


def _table(sweep: Sweep, trial_id: str, rows: list[dict[str, Any]], limit: int | None) -> Block:
    keys = members_lib.varied_keys(rows)
    name = sweep.metric.split("/")[-1].replace("_", " ")
    header = ["#", "setting", "seeds", *map(_short, keys), f"best {name} (epoch)", "final"]
    header.append("history")
    shown = rows if limit is None else rows[:limit]
    cells = members_lib.table_rows(shown, keys)
    alive = sum(r["alive"] for r in rows)
    more = (
        f" {len(rows) - limit} more in the appendix."
        if limit is not None and len(rows) > limit
        else ""
    )
    caption = (
        f"Members of trial {trial_id}: {alive} settings x {len(rows[0]['seeds'])} seeds at the "
        f"end, {len(rows) - alive} replaced on the way; one row per setting as long as it kept "
        f"its values, ranked by {sweep.metric} (seed mean) at its best epoch. history: how "
        "selection created the setting (s = the setting whose weights it took) and ended it; "
        f"copied = how often its weights were taken. The first row is the exported best.{more}"
    )
    align = "RLL" + "R" * (len(header) - 4) + "L"
    return Block("table", caption, header, cells, {0}, align=align, size=6.5)


def blocks(
    sweep: Sweep, members: dict[str, list[dict[str, Any]]], fig_dir: Path
) -> tuple[list[Block], list[Block]]:
    """The body's members section and the appendix's full table ([] each without members)."""
    best = next((t.trial_id for t in sweep.ok if t.trial_id in members), None)
    if best is None:
        return [], []
    rows = members[best]
    everyone = [r for trial_rows in members.values() for r in trial_rows]
    sign = 1.0 if sweep.mode == "max" else -1.0
    everyone.sort(key=lambda r: -sign * r["best"])
    keys = members_lib.varied_keys(everyone)
    png = eval_plots.hparam_scatter_png(
        [{"params": r["values"], "metric": r["best"]} for r in everyone],
        keys,
        sweep.metric,
        fig_dir / "members.png",
    )
    body = [
        Block("h2", "Population members"),
        _table(sweep, best, rows, TOP),
        Block(
            "figure",
            f"Every member of every trial ({len(everyone)} settings in {len(members)} trials, "
            f"replaced ones included): its best {sweep.metric} against each varied value "
            "(red: the best member).",
            figures=[(png, min(186.0, 14.0 + 36.0 * len(keys)))],
        ),
    ]
    appendix = []
    if len(rows) > TOP:
        appendix = [Block("h2", f"Members of trial {best}"), _table(sweep, best, rows, None)]
    return body, appendix
