"""The AAMI section (:mod:`ecgjax.scoring.aami`) as tables and as MLflow metrics, and back.

The console, the report and the RR study print the same gross table, so it is built once here.
The report reads its numbers back from the MLflow store (never recomputes them), so the
section also has a flat metric form and a reader for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table

from ecgjax.scoring.aami import STAT_LABELS, STATS, macro_classes, nanmean, number


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(ci: list[float | None] | None) -> str:
    return "" if not ci else f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def gross_rows(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the gross table: beats, Se, +P, FPR (with CIs when present) per class,
    the macro mean over ``macro_classes`` and the accuracy; a ``*`` marks classes outside it."""
    g, ci, avg = section["gross"], section["ci"], section["record_average"]
    header = ["class", "beats", *(STAT_LABELS[s] for s in STATS)]
    if avg is not None:
        header += ["rec. avg Se", "rec. avg +P"]
    macro = set(section["macro_classes"])
    rows = []
    for n in section["class_names"]:
        cls = g["classes"][n]
        cells = [
            n if n in macro else f"{n}*",
            str(cls["beats"]),
            *(_fmt(cls[s]) + _ci(ci["classes"][n][s] if ci else None) for s in STATS),
        ]
        if avg is not None:
            cells += [_fmt(avg["classes"][n]["se"]), _fmt(avg["classes"][n]["ppv"])]
        rows.append(cells)
    m = [_fmt(g["macro"][s]) + _ci(ci["macro"][s] if ci else None) for s in STATS]
    rows.append([f"macro ({'/'.join(section['macro_classes'])})", "", *m])
    acc = _fmt(g["accuracy"]) + _ci(ci["accuracy"] if ci else None)
    rows.append(["accuracy", str(g["beats"]), acc, "", ""])
    if avg is not None:
        rows[-2] += [_fmt(avg["macro"]["se"]), _fmt(avg["macro"]["ppv"])]
        rows[-1] += [_fmt(avg["accuracy"]), ""]
    return header, rows


def gross_table(section: dict[str, Any], what: str) -> Table:
    """The gross table as the scripts print it, titled with :func:`title`."""
    header, rows = gross_rows(section)
    table = Table(title=title(section, what))
    for col in header:
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def title(section: dict[str, Any], what: str) -> str:
    """A table title that names the protocol, so the numbers never travel without it."""
    protocol = section.get("protocol") or "protocol unknown"
    ci = section.get("ci")
    unit = f", 95% CI over {ci['n_boot']} resamples of records" if ci else ""
    return f"{what}: AAMI gross statistics, {protocol}{unit}"


def flat_metrics(section: dict[str, Any], prefix: str) -> dict[str, float]:
    """Gross statistics, their intervals and the record averages as MLflow metrics
    (``<prefix>/se_S``, ``<prefix>/se_S_ci_low``, ``<prefix>/record_avg/se_S``, ...).

    Undefined values are left out: a missing metric reads as undefined, a 0 would not.
    """
    out: dict[str, float] = {}
    g, ci, avg = section["gross"], section["ci"], section["record_average"]

    def put(key: str, value: float | None) -> None:
        if value is not None:
            out[f"{prefix}/{key}"] = float(value)

    put("accuracy", g["accuracy"])
    for n in section["class_names"]:
        put(f"beats_{n}", g["classes"][n]["beats"])
        for s in STATS:
            put(f"{s}_{n}", g["classes"][n][s])
            if avg is not None:
                put(f"record_avg/{s}_{n}", avg["classes"][n][s])
            interval = ci["classes"][n][s] if ci else None
            if interval:
                put(f"{s}_{n}_ci_low", interval[0])
                put(f"{s}_{n}_ci_high", interval[1])
    if ci and ci["accuracy"]:
        put("accuracy_ci_low", ci["accuracy"][0])
        put("accuracy_ci_high", ci["accuracy"][1])
        put("ci_n_boot", ci["n_boot"])
    return out


def from_flat(
    metrics: dict[str, float], prefix: str, class_names: Sequence[str], protocol: str | None
) -> dict[str, Any] | None:
    """The gross part of a section read back from :func:`flat_metrics` (``None`` if absent),
    so a report can print the table from the store's values rather than recompute them."""
    if f"{prefix}/accuracy" not in metrics:
        return None

    def get(key: str) -> float | None:
        return metrics.get(f"{prefix}/{key}")

    def interval(key: str) -> list[float | None] | None:
        low, high = get(f"{key}_ci_low"), get(f"{key}_ci_high")
        return None if low is None or high is None else [low, high]

    names = list(class_names)
    classes: dict[str, dict[str, Any]] = {
        n: {s: get(f"{s}_{n}") for s in STATS} | {"beats": int(get(f"beats_{n}") or 0)}
        for n in names
    }
    macro = macro_classes(names)

    def mean(stat: str) -> float | None:
        values = [classes[m][stat] for m in macro]
        return number(nanmean(np.array([np.nan if v is None else v for v in values])))

    gross_part = {
        "accuracy": get("accuracy"),
        "beats": sum(int(c["beats"]) for c in classes.values()),
        "classes": classes,
        "macro": {s: mean(s) for s in STATS},
    }
    has_ci = get("accuracy_ci_low") is not None
    ci = None
    if has_ci:
        ci = {
            "accuracy": interval("accuracy"),
            "classes": {n: {s: interval(f"{s}_{n}") for s in STATS} for n in names},
            "macro": dict.fromkeys(STATS),
            "n_boot": int(get("ci_n_boot") or 0),
        }
    return {
        "protocol": protocol,
        "class_names": names,
        "macro_classes": macro,
        "gross": gross_part,
        "record_average": None,
        "per_record": None,
        "ci": ci,
        "note": None,
    }


def store_table(
    metrics: dict[str, float],
    tags: dict[str, str],
    name: str,
    class_names: Sequence[str],
    what: str,
) -> tuple[str, list[str], list[list[str]]] | None:
    """Caption, header and rows of the gross table of evaluation ``name`` as an MLflow run
    holds it (metrics ``eval/<name>/aami/...``, tags ``ecgjax.eval.<name>.protocol`` and
    ``.patients``); ``None`` when the run has none."""
    section = from_flat(
        metrics, f"eval/{name}/aami", class_names, tags.get(f"ecgjax.eval.{name}.protocol")
    )
    if section is None:
        return None
    header, rows = gross_rows(section)
    caption = (
        title(section, what) + ". Se = recall, +P = precision, FPR = false positive rate, "
        "pooled over beats; * = left out of the macro mean (AAMI EC57)."
    )
    if tags.get(f"ecgjax.eval.{name}.patients") == "seen":
        caption += (
            " Seen patients: the test records also appear in the training file, so these "
            "are beat-level numbers, not new-patient (inter-patient) ones."
        )
    return caption, header, rows
