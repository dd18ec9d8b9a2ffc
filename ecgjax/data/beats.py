"""Beat files: the :class:`BeatData` record, reading and validating parquet, the model view.

Everything downstream (training, evaluation, tuning) gets plain numpy arrays from here.
Files follow the seed layout: 187 numeric feature columns (names are not relied on) and an
integer ``target``; optional ``record``/``sample``/``symbol``/``rhythm`` columns carry per-beat metadata
and are never treated as features. Bad files fail with a :class:`DataError` that starts with
the file path, so a user sees at once which file to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecgjax.data.rr import rr_features
from ecgjax.errors import UserError

FEATURE_LEN = 187
PADDED_LEN = 192
META_COLUMNS = ("record", "sample", "symbol", "rhythm")
TARGET = "target"
LEAD2_PREFIX = "lead2_"  # lead2_0 ... lead2_186: the second lead, cut like the beat
HAS_LEAD2 = "has_lead2"  # 1 where the beat's record has a second lead (else zeros in lead2_*)


class DataError(UserError, ValueError):
    """A dataset file is missing or malformed; the message starts with the file path."""


@dataclass(frozen=True)
class BeatData:
    """Beats of one split with their labels and optional per-beat metadata."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    source: str
    record: np.ndarray | None = None
    sample: np.ndarray | None = None
    symbol: np.ndarray | None = None
    context: np.ndarray | None = None
    inputs: np.ndarray | None = None  # (N, 187, C) model channels, ecgjax.data.inputs
    lead2: np.ndarray | None = None  # float32 (N, 187) second lead; zeros where a record has none
    rhythm: np.ndarray | None = None  # str (N,) annotated rhythm ('AFIB', 'N', ...; '' unknown)

    def subset(self, idx: np.ndarray) -> BeatData:
        """Return the beats at ``idx``; context is kept, not recomputed on the subset."""
        idx = np.asarray(idx)
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kwargs[f.name] = value[idx] if isinstance(value, np.ndarray) else value
        return BeatData(**kwargs)

    def __len__(self) -> int:
        return len(self.y)


def load_parquet(path: str | Path, num_classes: int) -> BeatData:
    """Load and validate a seed-layout parquet file.

    RR context is computed when ``record`` and ``sample`` exist, assuming the file holds whole
    records; :func:`load_splits` recomputes it over train+test (see :func:`joint_context`).

    Raises:
        DataError: the file is missing, unreadable, or its columns or labels are invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file (empty or truncated?): {e}") from e
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no rows")
    names = table.column_names
    if TARGET not in names:
        raise DataError(f"{path}: missing column 'target' (columns: {_short(names)})")
    feats = [c for c in names if c != TARGET and c not in META_COLUMNS and not _is_lead2(c)]
    if len(feats) != FEATURE_LEN:
        raise DataError(
            f"{path}: expected {FEATURE_LEN} feature columns besides 'target', "
            f"{list(META_COLUMNS)} and the second lead, found {len(feats)}"
        )
    bad = [c for c in feats if not _is_numeric(table.schema.field(c).type)]
    if bad:
        raise DataError(f"{path}: non-numeric feature columns: {_short(bad)}")
    x = np.column_stack([_to_float(table.column(c)) for c in feats]).astype(np.float32)
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise DataError(f"{path}: {len(rows)} rows with NaN/inf features (first row {rows[0]})")
    y = _labels(path, table.column(TARGET), num_classes)
    record = sample = symbol = context = None
    if "record" in names:
        record = np.array([str(r) for r in table.column("record").to_pylist()], dtype=object)
    if "sample" in names:
        sample = _to_float(table.column("sample"))
        if not np.isfinite(sample).all():
            raise DataError(f"{path}: column 'sample' has missing or non-finite values")
        sample = sample.astype(np.int64)
    if "symbol" in names:
        symbol = np.asarray(table.column("symbol").to_pylist(), dtype=object).astype(str)
    rhythm = None
    if "rhythm" in names:
        rhythm = np.array([str(r or "") for r in table.column("rhythm").to_pylist()], dtype=str)
    if record is not None and sample is not None:
        context = rr_features(record, sample)
    lead2 = _read_lead2(path, table)
    return BeatData(
        x, y, num_classes, str(path), record, sample, symbol, context, lead2=lead2, rhythm=rhythm
    )


def _is_lead2(name: str) -> bool:
    return name.startswith(LEAD2_PREFIX) or name == HAS_LEAD2


def _read_lead2(path: Path, table: pa.Table) -> np.ndarray | None:
    """The second lead: ``lead2_0..186`` and ``has_lead2`` all present, or none of them."""
    found = [c for c in table.column_names if _is_lead2(c)]
    if not found:
        return None
    cols = [f"{LEAD2_PREFIX}{i}" for i in range(FEATURE_LEN)]
    if sorted(found) != sorted([*cols, HAS_LEAD2]):
        raise DataError(
            f"{path}: second-lead columns must be {cols[0]}..{cols[-1]} and {HAS_LEAD2!r}, "
            f"found {_short(found)}"
        )
    bad = [c for c in found if not _is_numeric(table.schema.field(c).type)]
    if bad:
        raise DataError(f"{path}: non-numeric second-lead columns: {_short(bad)}")
    has = _to_float(table.column(HAS_LEAD2))
    if not np.isin(has, (0, 1)).all():
        raise DataError(f"{path}: column {HAS_LEAD2!r} holds values other than 0 and 1")
    lead2 = np.column_stack([_to_float(table.column(c)) for c in cols]).astype(np.float32)
    lead2[has == 0] = 0.0
    if not np.isfinite(lead2).all():
        raise DataError(f"{path}: missing or non-finite second-lead values in rows with one")
    return lead2


def _short(names: list[str], k: int = 8) -> str:
    return ", ".join(names[:k]) + (f", ... ({len(names)} in all)" if len(names) > k else "")


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _to_float(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _labels(path: Path, col: pa.ChunkedArray, num_classes: int) -> np.ndarray:
    if not _is_numeric(col.type):
        raise DataError(f"{path}: column 'target' is not numeric ({col.type})")
    y = _to_float(col)
    if not np.isfinite(y).all():
        raise DataError(f"{path}: column 'target' has missing or non-finite labels")
    frac = y != np.round(y)
    if frac.any():
        raise DataError(f"{path}: non-integer labels in 'target', e.g. {y[frac][0]!r}")
    out = (y < 0) | (y >= num_classes)
    if out.any():
        raise DataError(
            f"{path}: labels outside [0, {num_classes}): {sorted(set(y[out].astype(int)))[:5]}"
        )
    return y.astype(np.int32)


def write_parquet(path: str | Path, data: BeatData, has_lead2: np.ndarray | None = None) -> None:
    """Write ``data`` in the seed layout (plus metadata and second-lead columns), atomically.

    ``has_lead2`` flags the beats whose record has a second lead; by default a beat has one
    when its ``lead2`` row is not all zeros (what :func:`load_parquet` gives for "none").
    """
    path = Path(path)
    x = np.asarray(data.x, dtype=np.float64)
    cols: dict[str, pa.Array] = {str(i): pa.array(x[:, i]) for i in range(x.shape[1])}
    cols[TARGET] = pa.array(np.asarray(data.y, dtype=np.int64))
    if data.record is not None:
        cols["record"] = pa.array([str(r) for r in data.record], type=pa.string())
    if data.sample is not None:
        cols["sample"] = pa.array(np.asarray(data.sample, dtype=np.int64))
    if data.symbol is not None:
        cols["symbol"] = pa.array([str(s) for s in data.symbol], type=pa.string())
    if data.rhythm is not None:
        cols["rhythm"] = pa.array([str(s) for s in data.rhythm], type=pa.string())
    if data.lead2 is not None:
        lead2 = np.asarray(data.lead2, dtype=np.float64)
        has = (lead2 != 0).any(axis=1) if has_lead2 is None else np.asarray(has_lead2, dtype=bool)
        cols |= {f"{LEAD2_PREFIX}{i}": pa.array(lead2[:, i]) for i in range(lead2.shape[1])}
        cols[HAS_LEAD2] = pa.array(has.astype(np.int64))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(pa.table(cols), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def view_1d(x: np.ndarray) -> np.ndarray:
    """``(N, 187)`` -> ``(N, 192, 1)`` float32, zero-padded at the end like the reference."""
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], PADDED_LEN), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out[..., None]


def view_2d(x: np.ndarray) -> np.ndarray:
    """``(N, 187)`` -> ``(N, 16, 12, 1)``: the padded beat read row by row (reference 2D CNN)."""
    return view_1d(x).reshape(-1, 16, 12, 1)


def model_view(data: BeatData) -> np.ndarray:
    """The model input ``(N, 192, C)``: the built channels, or the plain beat, zero-padded."""
    x = data.inputs if data.inputs is not None else np.asarray(data.x)[..., None]
    out = np.zeros((x.shape[0], PADDED_LEN, x.shape[2]), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out
