"""The configured data set as train, validation and test beats, prepared first if missing.

This module sits above :mod:`ecgjax.data.prepare` (which writes files through
:mod:`ecgjax.data.beats`), so preparing on demand needs no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections

from ecgjax import paths
from ecgjax.data.attach import attach_inputs, joint_context
from ecgjax.data.beats import BeatData, DataError, load_parquet
from ecgjax.data.download import offline
from ecgjax.data.splits import record_split, stratified_split, stratified_subsample


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
    return shrink(train.subset(tr), train.subset(va), test, d)


def shrink(train: BeatData, val: BeatData, test: BeatData, data_cfg: Any) -> Splits:
    """Subsample (stratified) to ``data.max_train`` / ``data.max_eval`` when set (smoke runs)."""
    d = data_cfg
    if d.max_train > 0:
        train = train.subset(stratified_subsample(train.y, d.max_train, d.split_seed))
    if d.max_eval > 0:
        val = val.subset(stratified_subsample(val.y, d.max_eval, d.split_seed))
        test = test.subset(stratified_subsample(test.y, d.max_eval, d.split_seed))
    return Splits(train, val, test)


def ensure_data(config: ml_collections.ConfigDict) -> None:
    """Make sure the configured files exist, preparing them if they can be built here.

    MIT-BIH files are prepared from ``ECGJAX_MITDB_DIR`` when it is set, else from a
    PhysioNet download into ``data/mitdb`` (resumed and verified; never with
    ``ECGJAX_OFFLINE=1``).

    Raises:
        DataError: the files are missing and cannot be built here; one line with the options.
    """
    d: Any = config.data  # ConfigDict attributes are untyped
    files = [_resolve(d.train_file), _resolve(d.test_file)]
    missing = [f for f in files if not f.is_file()]
    if not missing:
        return
    mitbih = d.dataset in ("mitbih", "interpatient")
    source = paths.mitdb_dir()
    reason = ""
    if mitbih and (source is not None or not offline()):
        from ecgjax.data.prepare import PrepareError, prepare  # heavy (wfdb, scipy): on demand

        if source is not None:
            prepare(source, paths.data_dir())
        else:
            try:
                prepare(None, paths.data_dir(), download=True)
            except PrepareError as e:
                reason = f" ({e})"
    elif mitbih:
        reason = " (ECGJAX_OFFLINE is set, so nothing was downloaded)"
    missing = [f for f in files if not f.is_file()]
    if not missing:
        return
    if source is not None and mitbih:
        raise DataError(f"{missing[0]}: still missing after preparing from {source}")
    options = [
        f"copy the seed's parquet files ({', '.join(f.name for f in files)}) into {files[0].parent}"
    ]
    if mitbih:
        options = [
            "set ECGJAX_MITDB_DIR=DIR to local MIT-BIH records "
            "(or `uv run scripts/prepare_data.py --source DIR`)",
            ("unset ECGJAX_OFFLINE and run again online" if offline() else "run again online")
            + " to download them from PhysioNet (or `uv run scripts/prepare_data.py --download`)",
            *options,
        ]
    raise DataError(
        f"{missing[0]}: data file not found (dataset {d.dataset!r}){reason}; options: "
        + "; ".join(options)
    )
