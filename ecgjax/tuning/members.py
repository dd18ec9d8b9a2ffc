"""A population trial's members as a user reads them: every setting that trained, best first.

A population trial records, per epoch, one row per member (setting, seed, values, score; see
:func:`ecgjax.training.population.member_table`) and the selection events that epoch ended
with. A setting slot's values change when PBT or halving moves it, so the user-facing unit is
a *lineage*: one slot with one set of values, from the epoch it started training them to the
epoch a selection replaced them (or the end). Every lineage is a row, including the replaced
ones, so no setting that spent compute disappears from the table. Rows are ranked by their
best epoch's score (seed mean of the per-member validation metric), so the first row is the
setting the trial exported as its best.

The same rows serve the console at the end of a sweep, ``sweep.json``, the MLflow run's
``population/members.json`` and the report; this module only reads recorded tables (Tune's
per-epoch results or MLflow's per-epoch artifacts) and imports neither Ray nor JAX.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MEMBERS_KEY = "population_members"  # the per-epoch result keys of a population trial
EVENTS_KEY = "population_events"
BEST_VALUES_KEY = "population_best_values"
BEST_MEMBER = "ecgjax.best_member."  # MLflow tag + a traced key: the best member's value
BEST_MEMBER_META = "ecgjax.best_member_"  # MLflow tag + epoch, setting, seeds, score
_META = ("member", "setting", "seed", "train_loss")
_TABLE_NAME = re.compile(r"members_epoch(\d+)\.json$")


def _loads(value: Any) -> Any:
    """A JSON string as Tune's result.json keeps it, or an already decoded value."""
    if isinstance(value, str):
        return json.loads(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return value


def epochs_from_results(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch ``{"epoch", "members", "events"}`` from a trial's Tune results (dicts with the
    ``population_members`` / ``population_events`` entries; rows of ``metrics_dataframe``)."""
    out = []
    for r in results:
        members = _loads(r.get(MEMBERS_KEY))
        if not members:
            continue
        epoch = r.get("epoch", r.get("training_iteration"))
        out.append(
            {"epoch": int(epoch), "members": members, "events": _loads(r.get(EVENTS_KEY)) or []}
        )
    return out


def epochs_from_folder(folder: Path) -> list[dict[str, Any]]:
    """Per-epoch tables from the MLflow artifacts ``members_epochNNN.json`` in ``folder``.

    Raises ``ValueError`` naming the file when a table is not valid JSON.
    """
    out = []
    for path in sorted(Path(folder).glob("members_epoch*.json")):
        match = _TABLE_NAME.search(path.name)
        if match is None:
            continue
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a member table ({err})") from None
        out.append(
            {
                "epoch": int(match.group(1)),
                "members": table.get(MEMBERS_KEY) or [],
                "events": table.get(EVENTS_KEY) or [],
            }
        )
    return out


def score_key(members: Sequence[Mapping[str, Any]]) -> str:
    """The per-member validation score column (``val_<select_metric>``)."""
    keys = [k for k in members[0] if k.startswith("val_")]
    if not keys:
        raise ValueError(f"member rows have no val_* score column: {sorted(members[0])}")
    return keys[0]


def lineages(epochs: Sequence[Mapping[str, Any]], mode: str = "max") -> list[dict[str, Any]]:
    """One row per lineage (a setting slot with one set of values), ranked best first.

    ``epochs`` as :func:`epochs_from_results` returns them; a repeated epoch (a restored
    trial reports it again) keeps its last record. A row: ``setting``, ``seeds``, ``values``,
    ``start``/``end`` epochs, ``best`` (score) at ``best_epoch``, ``final`` score,
    ``origin`` (``drawn``, or how selection created it), ``fate`` (``trained to the end``, or
    how selection ended it), ``copies`` (how often PBT/halving copied its weights) and
    ``alive`` (it holds the slot at the last epoch).
    """
    by_epoch = {int(e["epoch"]): e for e in epochs if e["members"]}
    if not by_epoch:
        return []
    sign = 1.0 if mode == "max" else -1.0
    score = score_key(next(iter(by_epoch.values()))["members"])
    open_rows: dict[int, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    last = max(by_epoch)
    for epoch in sorted(by_epoch):
        groups: dict[int, list[Mapping[str, Any]]] = {}
        for m in by_epoch[epoch]["members"]:
            groups.setdefault(int(m["setting"]), []).append(m)
        for setting, members in sorted(groups.items()):
            row = open_rows.get(setting)
            if row is None:
                row = open_rows[setting] = _new_row(setting, epoch, "drawn")
            if not row["scores"]:
                row["start"] = epoch
                row["seeds"] = [int(m["seed"]) for m in members]
                row["values"] = {
                    k: v for k, v in members[0].items() if k not in _META and k != score
                }
            value = sum(float(m[score]) for m in members) / len(members)
            row["scores"].append((epoch, value))
        for event in by_epoch[epoch]["events"]:
            kind, target, source = str(event["kind"]), int(event["target"]), int(event["source"])
            if source in open_rows:
                open_rows[source]["copies"] += 1
            old = open_rows.pop(target, None)
            if old is not None:
                verb = "stopped" if kind == "halving" else "replaced"
                old["fate"] = f"{verb} e{epoch} ({kind}: setting {source}'s weights)"
                done.append(old)
            how = "new draw" if kind == "halving" else "perturbed"
            open_rows[target] = _new_row(target, epoch, f"{kind} e{epoch}: s{source}, {how}")
    for row in open_rows.values():
        row["alive"] = bool(row["scores"]) and row["scores"][-1][0] == last
        done.append(row)
    rows = [_finish(r, sign) for r in done if r["scores"]]
    # Ties as the trial breaks them when it keeps its best: the earlier epoch, then the lower
    # setting, so the first row is the setting the trial exported.
    rows.sort(key=lambda r: (-sign * r["best"], r["best_epoch"], r["setting"]))
    return rows


def _new_row(setting: int, epoch: int, origin: str) -> dict[str, Any]:
    return {
        "setting": setting,
        "seeds": [],
        "values": {},
        "start": epoch,
        "origin": origin,
        "fate": "trained to the end",
        "copies": 0,
        "alive": False,
        "scores": [],
    }


def _finish(row: dict[str, Any], sign: float) -> dict[str, Any]:
    scores = row.pop("scores")
    best_epoch, best = max(scores, key=lambda p: (sign * p[1], -p[0]))
    row.update(end=scores[-1][0], best=best, best_epoch=best_epoch, final=scores[-1][1])
    return row


def varied_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Value keys of the rows, the learning rate first, then by how much they vary."""
    keys = sorted({k for r in rows for k in r["values"]})

    def spread(key: str) -> float:
        xs = [float(r["values"][key]) for r in rows if key in r["values"]]
        lo, hi = min(xs), max(xs)
        if lo > 0:
            return math.log(hi / lo)
        return (hi - lo) / (abs(hi) + abs(lo) or 1.0)

    return sorted(keys, key=lambda k: (k != "optim.learning_rate", -spread(k), k))


def short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def history(row: Mapping[str, Any]) -> str:
    """``origin -> fate`` in one cell; the plain case (drawn, trained to the end) is empty."""
    parts = [] if row["origin"] == "drawn" else [row["origin"]]
    if row["fate"] != "trained to the end":
        parts.append(row["fate"])
    if row["copies"]:
        parts.append(f"copied {row['copies']}x")
    return "; ".join(parts)


def table_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[list[str]]:
    """Cells of the member table: #, setting, seeds, values, best (epoch), final, history."""
    return [
        [
            str(i),
            f"s{r['setting']}",
            ",".join(str(s) for s in r["seeds"]),
            *(short_value(r["values"].get(k, "")) for k in keys),
            f"{r['best']:.4f} (e{r['best_epoch']})",
            f"{r['final']:.4f}",
            history(r),
        ]
        for i, r in enumerate(rows, 1)
    ]
