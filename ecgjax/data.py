"""Beat datasets: loading and validating parquet files, model views, splits and weights.

Everything downstream (training, evaluation, tuning) gets plain numpy arrays from here.
Files follow the seed layout: 187 numeric feature columns (names are not relied on) and an
integer ``target``; optional ``record``/``sample``/``symbol`` columns carry per-beat metadata
and are never treated as features. Bad files fail with a :class:`DataError` that starts with
the file path, so a user sees at once which file to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecgjax import inputs as inputs_lib
from ecgjax import paths
from ecgjax.rr import rr_features

FEATURE_LEN = 187
PADDED_LEN = 192
META_COLUMNS = ("record", "sample", "symbol")
TARGET = "target"
LEAD2_PREFIX = "lead2_"  # lead2_0 ... lead2_186: the second lead, cut like the beat
HAS_LEAD2 = "has_lead2"  # 1 where the beat's record has a second lead (else zeros in lead2_*)


class DataError(ValueError):
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
    inputs: np.ndarray | None = None  # (N, 187, C) model channels, ecgjax.inputs
    lead2: np.ndarray | None = None  # float32 (N, 187) second lead; zeros where a record has none

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
    if record is not None and sample is not None:
        context = rr_features(record, sample)
    lead2 = _read_lead2(path, table)
    return BeatData(x, y, num_classes, str(path), record, sample, symbol, context, lead2=lead2)


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


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class keeps its share; every class with 2+ beats is on both sides."""
    y = np.asarray(y)
    key = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = key.permutation(np.flatnonzero(y == c))
        k = round(val_fraction * len(idx))
        if len(idx) >= 2 and val_fraction > 0:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def record_split(
    record: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, tries: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Split by patient, keeping class shares as close to ``val_fraction`` as records allow.

    Whole records go to validation until it holds ``val_fraction`` of the beats. A single
    random order often leaves a rare class (V, S) out of validation entirely, which makes
    its recall unmeasurable; so ``tries`` seeded orders are drawn and the best wins: fewest
    classes missing from one side, then per-class shares closest to ``val_fraction``.
    At least one record stays on each side when there are two or more.
    """
    record = np.asarray(record).astype(str)
    y = np.asarray(y)
    if len(record) != len(y):
        raise ValueError(f"record ({len(record)}) and y ({len(y)}) differ in length")
    names, inverse = np.unique(record, return_inverse=True)
    per_record = np.zeros((len(names), int(y.max()) + 1 if len(y) else 1))
    np.add.at(per_record, (inverse, y), 1)
    totals = per_record.sum(axis=0)
    key = np.random.default_rng(seed)
    best, best_score = np.zeros(len(names), dtype=bool), np.inf
    for _ in range(tries):
        chosen = np.zeros(len(names), dtype=bool)
        for r in key.permutation(len(names)):
            if per_record[chosen].sum() >= val_fraction * len(y) or chosen.sum() >= len(names) - 1:
                break
            chosen[r] = True
        share = per_record[chosen].sum(axis=0)[totals > 0] / totals[totals > 0]
        one_sided = np.count_nonzero((share == 0) | (share == 1))  # a class missing on a side
        score = one_sided + np.abs(share - val_fraction).sum()
        if score < best_score:
            best, best_score = chosen, score
    is_val = best[inverse]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def stratified_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` indices in class proportion, keeping every class where ``n`` allows."""
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts * n / len(y)).astype(int)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # the minimum of one per class may overshoot: trim the largest
        quota[np.argmax(quota)] -= 1
    rest = n - quota.sum()
    for i in np.argsort(-(counts * n / len(y) - quota))[:rest]:
        quota[i] += 1
    key = np.random.default_rng(seed)
    picks = [
        key.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Beats per class, int64 ``(C,)``."""
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.int64)


def class_weights(y: np.ndarray, num_classes: int, power: float = 1.0) -> np.ndarray:
    """Inverse-frequency weights ``(1/freq)**power`` with a beat-weighted mean of 1.

    The normalisation keeps the loss scale (and so the learning rate) comparable to plain CE;
    absent classes get weight 0 since they contribute nothing.
    """
    counts = class_counts(y, num_classes).astype(np.float64)
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = (counts.sum() / counts[present]) ** power
    w /= (w * counts).sum() / counts.sum()
    return w.astype(np.float32)


@dataclass(frozen=True)
class Splits:
    """Train, validation (carved from train) and test beats."""

    train: BeatData
    val: BeatData
    test: BeatData


def _resolve(name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else paths.data_dir() / p


def load_splits(config: ml_collections.ConfigDict) -> Splits:
    """Load train/test from ``config.data``, carve validation from train, subsample if asked."""
    d: Any = config.data  # ConfigDict attributes are untyped
    ensure_data(config)
    train = load_parquet(_resolve(d.train_file), d.num_classes)
    test = load_parquet(_resolve(d.test_file), d.num_classes)
    train, test = attach_inputs(*joint_context(train, test), d)
    if d.val_split == "record":
        if train.record is None:
            raise DataError(f"{train.source}: val_split='record' needs a 'record' column")
        tr, va = record_split(train.record, train.y, d.val_fraction, d.split_seed)
    elif d.val_split == "stratified":
        tr, va = stratified_split(train.y, d.val_fraction, d.split_seed)
    else:
        raise ValueError(f"data.val_split must be 'stratified' or 'record', got {d.val_split!r}")
    train, val = train.subset(tr), train.subset(va)
    if d.max_train > 0:
        train = train.subset(stratified_subsample(train.y, d.max_train, d.split_seed))
    if d.max_eval > 0:
        val = val.subset(stratified_subsample(val.y, d.max_eval, d.split_seed))
        test = test.subset(stratified_subsample(test.y, d.max_eval, d.split_seed))
    return Splits(train, val, test)


def joint_context(train: BeatData, test: BeatData) -> tuple[BeatData, BeatData]:
    """Recompute RR context over train and test together.

    A beat-level split scatters each record's beats over both files, so RR intervals taken
    within one file would skip the neighbours that sit in the other. Over the union every
    record is whole again; for record-disjoint files (DS1/DS2) nothing changes.
    """
    if train.record is None or train.sample is None or test.record is None or test.sample is None:
        return train, test
    record = np.concatenate([train.record, test.record])
    sample = np.concatenate([train.sample, test.sample])
    context = rr_features(record, sample)
    n = len(train)
    return replace(train, context=context[:n]), replace(test, context=context[n:])


def attach_inputs(train: BeatData, test: BeatData, data_cfg: Any) -> tuple[BeatData, BeatData]:
    """Give ``train`` and ``test`` the model channels of ``data.channels`` (:mod:`ecgjax.inputs`)
    and, with ``data.rr_causal``, RR context from past beats only; built over both together so a
    beat-level split's records are whole again (as in :func:`joint_context`).

    Raises:
        DataError: a channel needs columns a file lacks.
    """
    if inputs_lib.is_plain(data_cfg):
        return train, test

    def joined(field: str) -> np.ndarray | None:
        a, b = getattr(train, field), getattr(test, field)
        return None if a is None or b is None else np.concatenate([a, b])

    record, sample = joined("record"), joined("sample")
    n = len(train)
    source = f"{train.source} + {test.source}" if train.source != test.source else train.source
    if inputs_lib.parse_channels(data_cfg.channels) != ("beat",):
        try:
            channels = inputs_lib.build_channels(
                np.concatenate([train.x, test.x]), record, sample, joined("lead2"), data_cfg, source
            )
        except ValueError as e:
            raise DataError(str(e)) from e
        train, test = replace(train, inputs=channels[:n]), replace(test, inputs=channels[n:])
    if data_cfg.rr_causal and record is not None and sample is not None:
        context = rr_features(record, sample, causal=True)
        train, test = replace(train, context=context[:n]), replace(test, context=context[n:])
    return train, test


def with_inputs(data: BeatData, data_cfg: Any) -> BeatData:
    """:func:`attach_inputs` for one file of whole records (a new database, DS2, ...)."""
    return attach_inputs(data, data.subset(np.arange(0)), data_cfg)[0]


def model_view(data: BeatData) -> np.ndarray:
    """The model input ``(N, 192, C)``: the built channels, or the plain beat, zero-padded."""
    x = data.inputs if data.inputs is not None else np.asarray(data.x)[..., None]
    out = np.zeros((x.shape[0], PADDED_LEN, x.shape[2]), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def ensure_data(config: ml_collections.ConfigDict) -> None:
    """Make sure the configured files exist, preparing them from local records if possible.

    Raises:
        DataError: the files are missing and cannot be built here; lists the options.
    """
    d: Any = config.data  # ConfigDict attributes are untyped
    files = [_resolve(d.train_file), _resolve(d.test_file)]
    missing = [f for f in files if not f.is_file()]
    if not missing:
        return
    source = paths.mitdb_dir()
    if d.dataset in ("mitbih", "interpatient") and source is not None:
        from ecgjax.prepare import prepare  # local import: prepare depends on this module

        prepare(source, paths.data_dir())
        missing = [f for f in files if not f.is_file()]
        if not missing:
            return
        raise DataError(f"{missing[0]}: still missing after preparing from {source}")
    options = [
        f"copy the seed's parquet files ({', '.join(f.name for f in files)}) into {files[0].parent}"
    ]
    if d.dataset in ("mitbih", "interpatient"):
        options += [
            "point at local MIT-BIH records: set ECGJAX_MITDB_DIR=DIR, or run "
            "`uv run scripts/prepare_data.py --source DIR`",
            "when online, download them: `uv run scripts/prepare_data.py --download`",
        ]
    listing = "".join(f"\n  - {o}" for o in options)
    raise DataError(f"{missing[0]}: data file not found (dataset {d.dataset!r}). Options:{listing}")
