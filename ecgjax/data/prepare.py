"""Build the prepared MIT-BIH parquet files from raw WFDB records, idempotently and atomically.

Outputs (in ``out_dir``): ``heart_big_{train,test}.parq`` (stratified beat-level 80/20 split,
seed 42, the Kaggle recipe), ``mitbih_ds{1,2}.parq`` (de Chazal's inter-patient split),
``summary.json``/``summary.png`` and ``manifest.json``. Each beat also carries the record's
second lead (``lead2_*``, ``has_lead2``). The files are replaced all at once, manifest last
(:func:`ecgjax.data.prepare_store.staged`); other WFDB databases go through :mod:`ecgjax.data.prepare_db`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from ecgjax.data import mitbih
from ecgjax.data.beats import BeatData, write_parquet
from ecgjax.data.download import DownloadError, download_mitdb
from ecgjax.data.prepare_store import (
    input_checksums,
    read_manifest,
    remove_stale_temps,
    sha256,
    staged,
    versions,
)
from ecgjax.data.splits import class_counts, stratified_split
from ecgjax.errors import UserError

OUTPUTS = {
    "train": "heart_big_train.parq",
    "test": "heart_big_test.parq",
    "ds1": "mitbih_ds1.parq",
    "ds2": "mitbih_ds2.parq",
}
SUMMARY_JSON = "summary.json"
SUMMARY_PNG = "summary.png"
MANIFEST = "manifest.json"
TEST_FRACTION = 0.2
SPLIT_SEED = 42
# 2: second-lead columns; 3: the rhythm column. Bump when the extraction changes so old
# outputs are rebuilt.
FORMAT_VERSION = 3


class PrepareError(UserError, RuntimeError):
    """Preparation cannot proceed (no records, damaged records under ``strict``, ...)."""


@dataclass
class PrepareResult:
    """What a :func:`prepare` call did."""

    out_dir: Path
    up_to_date: bool  # True: outputs already matched the inputs, nothing was written
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)  # one message per skipped record
    seconds: float = 0.0


def parameters() -> dict[str, object]:
    """Everything besides the input files that determines the outputs."""
    return {
        "format_version": FORMAT_VERSION,
        "method": "Kachuee et al. 2018, annotated R-peaks",
        "fs": mitbih.FS,
        "window_s": mitbih.WINDOW_S,
        "segment_rr": mitbih.SEGMENT_RR,
        "max_segment": mitbih.MAX_SEGMENT,
        "feature_len": mitbih.FEATURE_LEN,
        "lead": mitbih.LEAD,
        "lead2": "first channel other than the lead",
        "aami": mitbih.AAMI,
        "rhythm": "aux note of the last '+' annotation before each beat",
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "ds1": list(mitbih.DS1_RECORDS),
        "ds2": list(mitbih.DS2_RECORDS),
    }


def prepare(
    source: Path | None,
    out_dir: Path,
    *,
    download: bool = False,
    force: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Prepare the MIT-BIH datasets in ``out_dir`` from ``source`` (or a PhysioNet download).

    Raises:
        PrepareError: no usable records, or damaged records while ``strict``.
    """
    start = time.perf_counter()
    console = Console()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temps(list(_out_files(out_dir).values()))
    if stale:
        console.print(
            f"[yellow]Removed {len(stale)} temp file(s) left in {out_dir} by an interrupted run."
        )
    if download:
        source = _download(out_dir / "mitdb", console, progress)
    if source is None or not Path(source).is_dir():
        raise PrepareError(f"{source}: records folder not found (give --source DIR or --download)")
    source = Path(source)
    names, inputs = record_inputs(source)
    params = parameters()
    expected = set(_out_files(out_dir)) - {"manifest"}
    done = None if force else read_manifest(out_dir / MANIFEST, inputs, params, expected)
    if done is not None:
        skipped = list(done.get("skipped_records", []))
        console.print(
            f"[green]Nothing to do: {out_dir} is up to date with {source}"
            + (f" [red](built without {_skipped_names(skipped)})" if skipped else "")
            + ".",
            soft_wrap=True,
        )
        return PrepareResult(
            out_dir, True, _out_files(out_dir), damaged=skipped, seconds=time.perf_counter() - start
        )

    beats, damaged = _extract_all(source, names, progress, console)
    if damaged and strict:
        raise PrepareError("damaged records (strict, nothing written):\n  " + "\n  ".join(damaged))
    if not beats:
        raise PrepareError(f"{source}: no usable records")
    data, has_lead2, splits = _splits(beats, str(source))
    counts = {
        k: class_counts(data.y[v], len(mitbih.CLASS_NAMES)).tolist() for k, v in splits.items()
    }
    leads = {b.record: {"lead": b.lead, "lead2": b.lead2_name, "note": b.note} for b in beats}
    meta = {"source": str(source), "inputs": inputs, "parameters": params, "records": leads}
    _write_all(out_dir, data, has_lead2, splits, counts, meta | {"skipped_records": damaged})
    _print_table(console, counts, damaged)
    seconds = time.perf_counter() - start
    line = f"Wrote {len(OUTPUTS)} datasets to {out_dir} in {seconds:.1f} s"
    if damaged:
        line = f"[red]{line}; skipped {len(damaged)} record(s): {_skipped_names(damaged)}"
    console.print(line + ".", soft_wrap=True)
    return PrepareResult(out_dir, False, _out_files(out_dir), counts, damaged, seconds)


def record_inputs(source: Path, annotator: str = "atr") -> tuple[list[str], dict[str, str | None]]:
    """The records in ``source`` and the checksums of every file they need: the inputs a
    manifest records, so that a changed or added record file makes the outputs stale.

    Raises:
        PrepareError: ``source`` holds no WFDB record.
    """
    names = mitbih.list_records(source)
    if not names:
        raise PrepareError(f"{source}: no WFDB records (no RECORDS file and no *.hea)")
    files = [f for n in names for f in mitbih.input_files(source, n, annotator)]
    return names, input_checksums(source, files)


def _download(dest: Path, console: Console, progress: bool) -> Path:
    """Fetch ``mitdb`` from PhysioNet into ``dest``, resuming and verifying (reuses a verified copy)."""
    try:
        result = download_mitdb(dest, console=console, progress=progress)
    except DownloadError as e:
        raise PrepareError(
            f"downloading mitdb failed: {e}; check the connection, "
            "or use --source DIR with local records"
        ) from e
    if result.fetched:
        console.print(
            f"Downloaded {len(result.fetched)} files ({result.bytes / 1e6:.1f} MB) to {dest}."
        )
    return dest


def _out_files(out_dir: Path) -> dict[str, Path]:
    names = {**OUTPUTS, "summary_json": SUMMARY_JSON, "summary_png": SUMMARY_PNG}
    return {k: out_dir / v for k, v in names.items()} | {"manifest": out_dir / MANIFEST}


def _extract_all(
    source: Path, names: list[str], progress: bool, console: Console
) -> tuple[list[mitbih.RecordBeats], list[str]]:
    beats, damaged = [], []
    it = track(names, description="Extracting beats", console=console) if progress else names
    for name in it:
        try:
            rb = mitbih.extract_record(source, name)
        except mitbih.RecordError as e:
            damaged.append(str(e))
            console.print(f"[red]{e}; skipped")
            continue
        if rb.note:
            console.print(f"[yellow]record {name}: {rb.note}")
        beats.append(rb)
    return beats, damaged


def stack_beats(beats: list[mitbih.RecordBeats], source: str) -> tuple[BeatData, np.ndarray]:
    """All records' beats in one :class:`BeatData`, and which beats have a second lead.

    Records without a second lead get zeros in ``lead2`` (and ``False`` in the flags).
    """
    data = BeatData(
        x=np.concatenate([b.x for b in beats]),
        y=np.concatenate([b.y for b in beats]).astype(np.int32),
        num_classes=len(mitbih.CLASS_NAMES),
        source=source,
        record=np.concatenate([np.full(len(b.y), b.record, dtype=object) for b in beats]),
        sample=np.concatenate([b.sample for b in beats]),
        symbol=np.concatenate([b.symbol for b in beats]),
        lead2=np.concatenate(
            [b.lead2 if b.lead2 is not None else np.zeros_like(b.x) for b in beats]
        ),
        rhythm=np.concatenate(
            [b.rhythm if b.rhythm is not None else np.full(len(b.y), "") for b in beats]
        ).astype(str),
    )
    has_lead2 = np.concatenate([np.full(len(b.y), b.lead2 is not None) for b in beats])
    return data, has_lead2


def _splits(
    beats: list[mitbih.RecordBeats], source: str
) -> tuple[BeatData, np.ndarray, dict[str, np.ndarray]]:
    """All beats, their second-lead flags, and the indices of the beat-level 80/20 split and
    the record-disjoint DS1/DS2 sets."""
    data, has_lead2 = stack_beats(beats, source)
    train_idx, test_idx = stratified_split(data.y, TEST_FRACTION, SPLIT_SEED)
    record = np.asarray(data.record)
    return (
        data,
        has_lead2,
        {
            "train": train_idx,
            "test": test_idx,
            "ds1": np.flatnonzero(np.isin(record, mitbih.DS1_RECORDS)),
            "ds2": np.flatnonzero(np.isin(record, mitbih.DS2_RECORDS)),
        },
    )


def _write_all(
    out_dir: Path,
    data: BeatData,
    has_lead2: np.ndarray,
    splits: dict[str, np.ndarray],
    counts: dict[str, list[int]],
    meta: dict,
) -> None:
    """Write every output to a temp file, then rename them all (manifest last)."""
    final = _out_files(out_dir)
    keys = [k for k in final if k != "manifest"] + ["manifest"]
    with staged([final[k] for k in keys]) as staging:
        temps = {k: staging[final[k]] for k in keys}
        for key in OUTPUTS:
            write_parquet(temps[key], data.subset(splits[key]), has_lead2=has_lead2[splits[key]])
        every = np.concatenate([splits["train"], splits["test"]])
        all_x, all_y = data.x[every], data.y[every]
        means = [all_x[all_y == c].mean(axis=0) if (all_y == c).any() else None for c in range(5)]
        summary = {
            "class_names": list(mitbih.CLASS_NAMES),
            "counts": counts,
            "mean_beat": [m.round(5).tolist() if m is not None else None for m in means],
        }
        temps["summary_json"].write_text(json.dumps(summary, indent=1))
        _plot(temps["summary_png"], counts, means)
        outputs = {
            k: {"file": final[k].name, "sha256": sha256(temps[k])}
            | ({"beats": len(splits[k]), "class_counts": counts[k]} if k in OUTPUTS else {})
            for k in keys[:-1]
        }
        manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
        manifest |= {"outputs": outputs, "versions": versions()}
        temps["manifest"].write_text(json.dumps(manifest, indent=1))


def _plot(path: Path, counts: dict[str, list[int]], means: list[np.ndarray | None]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = mitbih.CLASS_NAMES
    width = 0.8 / len(counts)
    for i, (split, c) in enumerate(counts.items()):
        ax1.bar(np.arange(len(names)) + i * width, c, width, label=f"{split} ({sum(c):,})")
    ax1.set(
        xticks=np.arange(len(names)) + 0.4 - width / 2,
        xticklabels=names,
        yscale="log",
        ylabel="beats (log)",
        title="Beats per class and split",
    )
    ax1.legend()
    t = np.arange(mitbih.FEATURE_LEN) / mitbih.FS
    for name, m in zip(names, means, strict=True):
        if m is not None:
            ax2.plot(t, m, label=name)
    ax2.set(
        xlabel="seconds after R-peak", ylabel="normalised amplitude", title="Mean beat per class"
    )
    ax2.legend()
    fig.tight_layout()
    with open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _skipped_names(damaged: list[str]) -> str:
    """``232, 233``: the record names of :class:`mitbih.RecordError` messages."""
    return ", ".join(m.removeprefix("record ").split(":", 1)[0] for m in damaged)


def _print_table(console: Console, counts: dict[str, list[int]], damaged: list[str]) -> None:
    caption = f"[red]skipped (damaged): {'; '.join(damaged)}" if damaged else None
    table = Table(title="Beats per class", caption=caption)
    table.add_column("split")
    for n in (*mitbih.CLASS_NAMES, "total"):
        table.add_column(n, justify="right")
    for split, c in counts.items():
        table.add_row(split, *(f"{v:,}" for v in c), f"{sum(c):,}")
    total = np.sum([counts["train"], counts["test"]], axis=0)
    table.add_row("all", *(f"{v:,}" for v in total), f"{total.sum():,}", style="bold")
    console.print(table)
