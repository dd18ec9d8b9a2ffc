"""Which patients a checkpoint has seen: the protocol label that every test number carries.

A beat-level split scatters each patient's beats over train and test, so a model evaluated
there is scored on patients it has learnt; the inter-patient protocol (DS1 -> DS2) tests on new
ones, and its numbers are far lower. The two are easily mixed up: a file's name does not say
which records it holds, and a beat-level model evaluated on ``mitbih_ds2.parq`` looks like an
inter-patient result. So the protocol is decided from the data: the record ids of the
evaluated file against those of the checkpoint's training file (``meta.json`` names it; the
validation split is carved from it, so the whole file counts as seen). Only the ``record``
(and ``sample``) columns are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecgjax import paths
from ecgjax.data import DataError
from ecgjax.errors import UserError

SEEN, NEW, UNKNOWN = "seen", "new", "unknown"
PROTOCOLS = {
    SEEN: "beat-level (patients seen in training)",
    NEW: "inter-patient (new patients)",
    UNKNOWN: "protocol unknown (no record ids to compare)",
}


class SeenPatientsError(UserError, RuntimeError):
    """The evaluated file shares patients with the training data (or cannot be checked)."""


def read_ids(path: str | Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``record`` and ``sample`` columns of a parquet file (``None`` where absent).

    Raises:
        DataError: the file is missing or not readable parquet.
    """
    path = Path(path)
    try:
        names = pq.read_schema(path).names
        columns = [c for c in ("record", "sample") if c in names]
        table = pq.read_table(path, columns=columns) if "record" in columns else None
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: cannot read its record ids: {err}") from err
    if table is None:
        return None, None
    record = np.asarray([str(r) for r in table.column("record").to_pylist()], dtype=object)
    sample = None
    if "sample" in columns:
        sample = np.asarray(table.column("sample").to_numpy(zero_copy_only=False), np.float64)
    return record, sample


def training_file(meta: dict[str, Any]) -> Path | None:
    """The checkpoint's training file (``meta["data"]["train"]``), here or under ``data/``."""
    name = (meta.get("data") or {}).get("train")
    if not name:
        return None
    for path in (Path(name), paths.data_dir() / Path(name).name):
        if path.is_file():
            return path
    return None


def _identical(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> int:
    """Beats of ``test`` whose (record, sample) also occurs in ``train``."""
    _, member = np.unique(np.concatenate([train[0], test[0]]).astype(str), return_inverse=True)
    sample = np.concatenate([train[1], test[1]]).astype(np.int64)
    key = member.astype(np.int64) * (int(sample.max()) + 1) + sample
    n = len(train[0])
    return int(np.isin(key[n:], key[:n]).sum())


def overlap(
    train_file: str | Path | None,
    test_file: str,
    record: np.ndarray | None,
    sample: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare the evaluated beats' records with the training file's.

    Returns a JSON-ready dict: ``patients`` (seen / new / unknown), ``protocol`` (its label),
    the files, the evaluated records and beats, how many of them come from records of the
    training file, how many beats are the very same beats (same record and sample), and a
    ``reason`` when the overlap is unknown.
    """
    out: dict[str, Any] = {
        "patients": UNKNOWN,
        "protocol": PROTOCOLS[UNKNOWN],
        "train_file": None if train_file is None else str(train_file),
        "test_file": test_file,
        "beats": None if record is None else len(record),
        "records": None,
        "overlapping_records": None,
        "overlapping_record_ids": None,
        "beats_from_seen_records": None,
        "identical_beats": None,
        "reason": None,
    }
    if train_file is None:
        out["reason"] = "the checkpoint's training file is not here (meta.json data.train)"
        return out
    if record is None:
        out["reason"] = f"{Path(test_file).name} has no 'record' column"
        return out
    train_record, train_sample = read_ids(train_file)
    if train_record is None:
        out["reason"] = f"{Path(train_file).name} has no 'record' column"
        return out
    test_ids = np.unique(np.asarray(record).astype(str))
    shared = np.intersect1d(test_ids, np.unique(train_record.astype(str)))
    out |= {
        "patients": SEEN if len(shared) else NEW,
        "protocol": PROTOCOLS[SEEN if len(shared) else NEW],
        "records": len(test_ids),
        "overlapping_records": len(shared),
        "overlapping_record_ids": [str(r) for r in shared],
        "beats_from_seen_records": int(np.isin(np.asarray(record).astype(str), shared).sum()),
    }
    if sample is not None and train_sample is not None:
        out["identical_beats"] = _identical(
            (train_record, train_sample), (np.asarray(record), np.asarray(sample))
        )
    return out


def describe(info: dict[str, Any]) -> str:
    """One line saying what was measured (for the console warning and the report)."""
    test, train = Path(info["test_file"]).name, Path(info["train_file"] or "?").name
    if info["patients"] == UNKNOWN:
        return f"patients unknown: {info['reason']}"
    seen = (
        f"{info['overlapping_records']} of the {info['records']} records of {test} "
        f"({info['beats_from_seen_records']:,} of its {info['beats']:,} beats"
    )
    if info["identical_beats"] is not None:
        seen += f"; {info['identical_beats']:,} of them the very same beats"
    seen += f") are in the training file {train}"
    if info["patients"] == SEEN:
        return f"seen patients: {seen}: these are {PROTOCOLS[SEEN]} numbers, not inter-patient"
    return f"new patients: none of the {info['records']} records of {test} are in {train}"


def require_new(info: dict[str, Any], source: str) -> None:
    """Refuse (``--new_patients_only``) unless the evaluated records are all new.

    Raises:
        SeenPatientsError: a one-line message naming the files and the overlap.
    """
    if info["patients"] == NEW:
        return
    test, train = info["test_file"], info["train_file"] or "?"
    if info["patients"] == SEEN:
        raise SeenPatientsError(
            f"--new_patients_only: {test} shares {info['overlapping_records']} of its "
            f"{info['records']} records ({info['beats_from_seen_records']} beats) with the "
            f"training file {train} of {source}"
        )
    raise SeenPatientsError(
        f"--new_patients_only: cannot tell whether {test} holds new patients for {source}: "
        f"{info['reason']}"
    )
