"""Build the prepared MIT-BIH parquet files from raw WFDB records, idempotently and atomically.

Outputs (in ``out_dir``): ``heart_big_{train,test}.parq`` (stratified beat-level 80/20 split,
seed 42, the Kaggle recipe), ``mitbih_ds{1,2}.parq`` (de Chazal's inter-patient split),
``summary.json``/``summary.png`` and ``manifest.json``. Every file is first written to a temp
file in ``out_dir`` and only renamed over the old one once all of them are complete, with the
manifest renamed last: a crash leaves the earlier outputs untouched, and a half-renamed set
never matches its manifest, so the next run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from ecgjax import mitbih
from ecgjax.data import BeatData, class_counts, stratified_split, write_parquet

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
FORMAT_VERSION = 1  # bump when the extraction changes so old outputs are rebuilt


class PrepareError(RuntimeError):
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
        "aami": mitbih.AAMI,
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "ds1": list(mitbih.DS1_RECORDS),
        "ds2": list(mitbih.DS2_RECORDS),
    }


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    if download:
        source = _download(out_dir / "mitdb", console)
    if source is None or not Path(source).is_dir():
        raise PrepareError(f"{source}: records folder not found (give --source DIR or --download)")
    source = Path(source)
    names = mitbih.list_records(source)
    if not names:
        raise PrepareError(f"{source}: no WFDB records (no RECORDS file and no *.hea)")
    inputs = {
        f.name: sha256(f) if f.is_file() else None
        for n in names
        for f in mitbih.record_files(source, n)
    }
    params = parameters()
    if not force and _up_to_date(out_dir, inputs, params):
        console.print(
            f"[green]Nothing to do: {out_dir} is up to date with {source}.", soft_wrap=True
        )
        return PrepareResult(
            out_dir, True, _out_files(out_dir), seconds=time.perf_counter() - start
        )

    beats, damaged = _extract_all(source, names, progress, console)
    if damaged and strict:
        raise PrepareError("damaged records (strict, nothing written):\n  " + "\n  ".join(damaged))
    if not beats:
        raise PrepareError(f"{source}: no usable records")
    splits = _splits(beats, str(source))
    counts = {k: class_counts(v.y, len(mitbih.CLASS_NAMES)).tolist() for k, v in splits.items()}
    _write_all(out_dir, splits, counts, inputs, params, damaged, str(source))
    _print_table(console, counts)
    seconds = time.perf_counter() - start
    console.print(f"Wrote {len(OUTPUTS)} datasets to {out_dir} in {seconds:.1f} s.")
    return PrepareResult(out_dir, False, _out_files(out_dir), counts, damaged, seconds)


def _download(dest: Path, console: Console) -> Path:
    """Fetch ``mitdb`` from PhysioNet (needs internet); reuse a completed download."""
    if not (dest / "RECORDS").is_file():
        import wfdb

        console.print(f"Downloading mitdb from PhysioNet into {dest} ...")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            wfdb.dl_database("mitdb", str(dest))
        except Exception as e:  # network errors come in many types; the advice is the same
            raise PrepareError(
                f"{dest}: downloading mitdb from PhysioNet failed ({type(e).__name__}: {e}); "
                "check the connection, or use --source DIR with local records"
            ) from e
        records = sorted(p.stem for p in dest.glob("*.hea"))
        (dest / "RECORDS").write_text("".join(f"{r}\n" for r in records))
    return dest


def _out_files(out_dir: Path) -> dict[str, Path]:
    names = {**OUTPUTS, "summary_json": SUMMARY_JSON, "summary_png": SUMMARY_PNG}
    return {k: out_dir / v for k, v in names.items()} | {"manifest": out_dir / MANIFEST}


def _up_to_date(out_dir: Path, inputs: dict, params: dict) -> bool:
    """Same inputs and parameters as the manifest, and every output present and intact."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("inputs") != inputs or manifest.get("parameters") != json.loads(
        json.dumps(params)
    ):
        return False
    outputs = manifest.get("outputs", {})
    expected = set(_out_files(out_dir)) - {"manifest"}
    if set(outputs) != expected:
        return False
    for entry in outputs.values():
        path = out_dir / entry["file"]
        if not path.is_file() or sha256(path) != entry["sha256"]:
            return False
    return True


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


def _splits(beats: list[mitbih.RecordBeats], source: str) -> dict[str, BeatData]:
    """The beat-level 80/20 split and the record-disjoint DS1/DS2 sets."""
    record = np.concatenate([np.full(len(b.y), b.record, dtype=object) for b in beats])
    data = BeatData(
        x=np.concatenate([b.x for b in beats]),
        y=np.concatenate([b.y for b in beats]).astype(np.int32),
        num_classes=len(mitbih.CLASS_NAMES),
        source=source,
        record=record,
        sample=np.concatenate([b.sample for b in beats]),
        symbol=np.concatenate([b.symbol for b in beats]),
    )
    train_idx, test_idx = stratified_split(data.y, TEST_FRACTION, SPLIT_SEED)
    return {
        "train": data.subset(train_idx),
        "test": data.subset(test_idx),
        "ds1": data.subset(np.flatnonzero(np.isin(record, mitbih.DS1_RECORDS))),
        "ds2": data.subset(np.flatnonzero(np.isin(record, mitbih.DS2_RECORDS))),
    }


def _write_all(
    out_dir: Path,
    splits: dict[str, BeatData],
    counts: dict[str, list[int]],
    inputs: dict,
    params: dict,
    damaged: list[str],
    source: str,
) -> None:
    """Write every output to a temp file, then rename them all (manifest last)."""
    tag = f".tmp{os.getpid()}"
    final = _out_files(out_dir)
    temps = {k: p.with_name(f".{p.name}{tag}") for k, p in final.items()}
    try:
        for key in OUTPUTS:
            write_parquet(temps[key], splits[key])
        all_x = np.concatenate([splits["train"].x, splits["test"].x])
        all_y = np.concatenate([splits["train"].y, splits["test"].y])
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
            for k in final
            if k != "manifest"
        }
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source,
            "inputs": inputs,
            "parameters": params,
            "skipped_records": damaged,
            "outputs": outputs,
            "versions": _versions(),
        }
        temps["manifest"].write_text(json.dumps(manifest, indent=1))
        for key in [k for k in final if k != "manifest"] + ["manifest"]:
            os.replace(temps[key], final[key])
    finally:
        for t in temps.values():
            t.unlink(missing_ok=True)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ecgjax", "numpy", "scipy", "wfdb", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


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


def _print_table(console: Console, counts: dict[str, list[int]]) -> None:
    table = Table(title="Beats per class")
    table.add_column("split")
    for n in (*mitbih.CLASS_NAMES, "total"):
        table.add_column(n, justify="right")
    for split, c in counts.items():
        table.add_row(split, *(f"{v:,}" for v in c), f"{sum(c):,}")
    total = np.sum([counts["train"], counts["test"]], axis=0)
    table.add_row("all", *(f"{v:,}" for v in total), f"{total.sum():,}", style="bold")
    console.print(table)
