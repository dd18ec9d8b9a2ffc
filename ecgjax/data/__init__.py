"""The data layer: beat files, splits, model inputs, WFDB preparation, folds, augmentation.

The names below are the layer's public API (``from ecgjax import data as data_lib``);
each lives in the module of its concern:

- :mod:`ecgjax.data.beats`: :class:`BeatData`, parquet reading/validation/writing, model view;
- :mod:`ecgjax.data.splits`: stratified and by-patient splits, subsamples, class weights;
- :mod:`ecgjax.data.attach`: RR context and input channels attached to loaded files;
- :mod:`ecgjax.data.load`: the configured splits, prepared from local records when missing;
- :mod:`ecgjax.data.rr`, :mod:`ecgjax.data.inputs`: RR features and patient-adaptive channels;
- :mod:`ecgjax.data.mitbih`, :mod:`ecgjax.data.prepare`, :mod:`ecgjax.data.prepare_db`,
  :mod:`ecgjax.data.prepare_store`: beats from WFDB records, written as prepared data sets;
- :mod:`ecgjax.data.folds`: leave-records-out cross-validation folds;
- :mod:`ecgjax.data.augment`, :mod:`ecgjax.data.synthetic`: on-device augmentation, test beats.

Only the light modules are imported here; WFDB preparation loads on demand.
"""

from __future__ import annotations

from ecgjax.data.attach import attach_inputs, joint_context, with_inputs
from ecgjax.data.beats import (
    FEATURE_LEN,
    HAS_LEAD2,
    LEAD2_PREFIX,
    META_COLUMNS,
    PADDED_LEN,
    TARGET,
    BeatData,
    DataError,
    load_parquet,
    model_view,
    view_1d,
    view_2d,
    write_parquet,
)
from ecgjax.data.load import Splits, ensure_data, load_splits
from ecgjax.data.splits import (
    class_counts,
    class_weights,
    patient_factors,
    record_split,
    stratified_split,
    stratified_subsample,
)

__all__ = [
    "FEATURE_LEN",
    "HAS_LEAD2",
    "LEAD2_PREFIX",
    "META_COLUMNS",
    "PADDED_LEN",
    "TARGET",
    "BeatData",
    "DataError",
    "Splits",
    "attach_inputs",
    "class_counts",
    "class_weights",
    "ensure_data",
    "joint_context",
    "load_parquet",
    "load_splits",
    "model_view",
    "patient_factors",
    "record_split",
    "stratified_split",
    "stratified_subsample",
    "view_1d",
    "view_2d",
    "with_inputs",
    "write_parquet",
]
