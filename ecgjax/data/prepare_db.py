"""Any beat-annotated WFDB database (INCART, SVDB, European ST-T, ...) as one data set.

``prepare_database(DIR, data/, "incart")`` writes ``data/incart.parq`` (the prepared layout:
187 beat columns, ``target``, ``record``, ``sample`` at 125 Hz, ``symbol``, and the second lead)
and ``data/incart.json`` (source checksums, parameters, per-record rate, leads and class counts,
and the records that were skipped with the reason). The beats are cut exactly as for MIT-BIH
(:func:`ecgjax.data.mitbih.extract_beats`) after resampling from the record's own rate to 125 Hz.

The lead is chosen by name, in the order of :data:`ecgjax.data.mitbih.LEAD_ORDER` (MLII, II, ML2,
V5, V1, then the first channel), ignoring case and spaces; ``lead`` forces one (records without
it are skipped). A record that cannot be read, or has no beat annotation, is skipped and named;
``strict`` refuses to write anything then. Like the MIT-BIH path, a second run with the same
inputs does nothing and the two files are replaced together, the JSON last.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from ecgjax.data import mitbih
from ecgjax.data.beats import write_parquet
from ecgjax.data.prepare import (
    FORMAT_VERSION,
    OUTPUTS,
    PrepareError,
    record_inputs,
    stack_beats,
)
from ecgjax.data.prepare_store import read_manifest, remove_stale_temps, sha256, staged, versions
from ecgjax.data.splits import class_counts

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_RESERVED = {Path(f).stem for f in OUTPUTS.values()} | {"manifest", "summary"}


@dataclass
class DatabaseResult:
    """What a :func:`prepare_database` call did (or found already done)."""

    data_file: Path
    summary_file: Path
    up_to_date: bool  # True: the outputs already matched the inputs, nothing was written
    records: list[dict[str, Any]] = field(default_factory=list)  # one row per extracted record
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"record", "reason"}
    counts: list[int] = field(default_factory=list)  # beats per class
    seconds: float = 0.0


def parameters(lead: str | None, annotator: str) -> dict[str, object]:
    """Everything besides the input files that determines the outputs."""
    return {
        "format_version": FORMAT_VERSION,
        "method": "Kachuee et al. 2018, annotated R-peaks",
        "fs": mitbih.FS,
        "resample": f"scipy.signal.resample_poly, 125/fs (denominator <= {mitbih.MAX_DENOMINATOR})",
        "window_s": mitbih.WINDOW_S,
        "segment_rr": mitbih.SEGMENT_RR,
        "max_segment": mitbih.MAX_SEGMENT,
        "feature_len": mitbih.FEATURE_LEN,
        "lead": lead if lead is not None else [*mitbih.LEAD_ORDER, "first channel"],
        "lead2": "first channel other than the lead",
        "annotator": annotator,
        "aami": mitbih.AAMI,
    }


def prepare_database(
    source: Path,
    out_dir: Path,
    name: str,
    *,
    lead: str | None = None,
    annotator: str = "atr",
    force: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> DatabaseResult:
    """Prepare ``out_dir/NAME.parq`` and ``out_dir/NAME.json`` from the records in ``source``.

    Raises:
        PrepareError: a bad name or folder, no usable record, or skipped records under ``strict``.
    """
    start = time.perf_counter()
    console = Console()
    if not _NAME.fullmatch(name) or name in _RESERVED:
        raise PrepareError(
            f"--name {name!r}: use letters, digits, '_', '-' or '.', and none of "
            f"{sorted(_RESERVED)} (the MIT-BIH outputs)"
        )
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise PrepareError(f"{source}: records folder not found")
    names, inputs = record_inputs(source, annotator)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_file, summary_file = out_dir / f"{name}.parq", out_dir / f"{name}.json"
    if remove_stale_temps([data_file, summary_file]):
        console.print(f"[yellow]Removed the temp files an interrupted run left in {out_dir}.")
    params = parameters(lead, annotator)
    done = None if force else read_manifest(summary_file, inputs, params, {"data"})
    if done is not None:
        console.print(f"[green]Nothing to do: {data_file} is up to date with {source}.")
        result = DatabaseResult(
            data_file, summary_file, True, done["records"], done["skipped"], done["counts"]
        )
        _report(console, result, len(names))
        return _finish(result, start)

    beats, skipped = _extract_all(source, names, lead, annotator, progress, console)
    if skipped and strict:
        listing = "\n  ".join(f"record {s['record']}: {s['reason']}" for s in skipped)
        raise PrepareError(f"skipped records (strict, nothing written):\n  {listing}")
    if not beats:
        raise PrepareError(f"{source}: no usable records ({len(skipped)} skipped)")
    data, has_lead2 = stack_beats(beats, str(source))
    counts = class_counts(data.y, len(mitbih.CLASS_NAMES)).tolist()
    rows = [_row(b) for b in beats]
    with staged([data_file, summary_file]) as temps:
        write_parquet(temps[data_file], data, has_lead2=has_lead2)
        summary = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "name": name,
            "source": str(source),
            "inputs": inputs,
            "parameters": params,
            "class_names": list(mitbih.CLASS_NAMES),
            "counts": counts,
            "records": rows,
            "skipped": skipped,
            "outputs": {
                "data": {
                    "file": data_file.name,
                    "sha256": sha256(temps[data_file]),
                    "beats": len(data),
                    "class_counts": counts,
                }
            },
            "versions": versions(),
        }
        temps[summary_file].write_text(json.dumps(summary, indent=1))
    result = DatabaseResult(data_file, summary_file, False, rows, skipped, counts)
    _report(console, result, len(names))
    return _finish(result, start)


def _finish(result: DatabaseResult, start: float) -> DatabaseResult:
    result.seconds = time.perf_counter() - start
    return result


def _extract_all(
    source: Path,
    names: list[str],
    lead: str | None,
    annotator: str,
    progress: bool,
    console: Console,
) -> tuple[list[mitbih.RecordBeats], list[dict[str, str]]]:
    beats, skipped = [], []
    it = track(names, description="Extracting beats", console=console) if progress else names
    for name in it:
        try:
            raw = mitbih.read_record(
                source,
                name,
                fs=None,
                leads=mitbih.LEAD_ORDER,
                force_lead=lead,
                annotator=annotator,
            )
            rb = mitbih.extract_beats(raw)
        except mitbih.RecordError as e:
            reason = str(e).removeprefix(f"record {name}: ")
            skipped.append({"record": name, "reason": reason})
            continue
        if len(rb.y) == 0:
            kinds = "".join(sorted(set(raw.ann_symbol)))
            reason = f"no beat annotations ({len(raw.ann_symbol)} non-beat: {kinds!r})"
            skipped.append({"record": name, "reason": reason})
            continue
        beats.append(rb)
    return beats, skipped


def _row(b: mitbih.RecordBeats) -> dict[str, Any]:
    counts = class_counts(b.y, len(mitbih.CLASS_NAMES)).tolist()
    return {
        "record": b.record,
        "fs": b.fs,
        "lead": b.lead,
        "lead2": b.lead2_name,
        "beats": len(b.y),
        "counts": counts,
        "note": b.note,
    }


def _report(console: Console, result: DatabaseResult, num_records: int) -> None:
    """The per-record table (skipped records in red) and one closing line."""
    table = Table(title=f"{result.data_file.name}: beats per record and class")
    for col in ("record", "fs", "lead", "lead2"):
        table.add_column(col)
    for col in (*mitbih.CLASS_NAMES, "beats"):
        table.add_column(col, justify="right")
    table.add_column("note")
    for r in result.records:
        cells = (f"{v:,}" for v in r["counts"])
        lead2 = r["lead2"] or "-"
        table.add_row(
            r["record"], f"{r['fs']:g}", r["lead"], lead2, *cells, f"{r['beats']:,}", r["note"]
        )
    for s in result.skipped:
        blank = [""] * (len(mitbih.CLASS_NAMES) + 4)
        table.add_row(s["record"], *blank, f"skipped: {s['reason']}", style="red")
    total = sum(result.counts)
    table.add_row("all", "", "", "", *(f"{v:,}" for v in result.counts), f"{total:,}", "")
    console.print(table)
    for s in result.skipped:  # in full: a narrow terminal cuts the table's notes
        console.print(f"[red]record {s['record']} skipped: {s['reason']}", soft_wrap=True)
    line = (
        f"{result.data_file} ({total:,} beats from {len(result.records)} of {num_records} "
        f"records) and {result.summary_file.name}"
    )
    if result.skipped:
        names = ", ".join(s["record"] for s in result.skipped)
        line += f"; skipped {len(result.skipped)} record(s): {names}"
    style = "yellow" if result.skipped else "green"
    console.print(
        f"[{style}]{'Up to date' if result.up_to_date else 'Wrote'}: {line}", soft_wrap=True
    )
