"""Model inputs attached to beat files: RR context and patient-adaptive channels.

Both are built over the train and test files together, so a beat-level split's records are
whole again; the channels themselves are defined in :mod:`ecgjax.data.inputs`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ecgjax.data import inputs as inputs_lib
from ecgjax.data.beats import BeatData, DataError
from ecgjax.data.rr import rr_features, rr_irregularity


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
    """Give ``train`` and ``test`` the model channels of ``data.channels`` (:mod:`ecgjax.data.inputs`)
    and, with ``data.rr_causal``, RR context from past beats only, with ``data.rr_irregularity``
    two rhythm-irregularity columns after the nine RR features, with ``data.template_features``
    three QRS-versus-template columns after those, with ``data.p_wave_features`` two P-wave
    columns after those (:func:`ecgjax.data.inputs.p_wave_correlations`); built over both
    together so a beat-level split's records are whole again (as in :func:`joint_context`).

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
    if data_cfg.get("rr_irregularity", False) and train.context is not None:
        if test.context is None or record is None or sample is None:
            raise DataError(f"{source}: data.rr_irregularity needs record and sample columns")
        extra = rr_irregularity(record, sample, causal=bool(data_cfg.rr_causal))
        train, test = _more_context(train, test, extra)
    if data_cfg.get("template_features", False) and train.context is not None:
        if test.context is None or record is None or sample is None:
            raise DataError(f"{source}: data.template_features needs record and sample columns")
        extra = inputs_lib.template_features(
            np.concatenate([train.x, test.x]),
            inputs_lib.record_groups(record, sample),
            str(data_cfg.template),
            int(data_cfg.template_beats),
        )
        train, test = _more_context(train, test, extra)
    if data_cfg.get("p_wave_features", False) and train.context is not None:
        if test.context is None or record is None or sample is None:
            raise DataError(f"{source}: data.p_wave_features needs record and sample columns")
        corr = inputs_lib.p_wave_correlations(np.concatenate([train.x, test.x]), record, sample)
        extra = np.nan_to_num(corr, nan=0.0).astype(np.float32)  # 0: no P region in reach
        train, test = _more_context(train, test, extra)
    return train, test


def _more_context(train: BeatData, test: BeatData, extra: np.ndarray) -> tuple[BeatData, BeatData]:
    """Append ``extra`` (rows: train's beats, then test's) to both files' context columns."""
    assert train.context is not None and test.context is not None
    context = np.concatenate([train.context, test.context]).astype(np.float32)
    context = np.concatenate([context, extra], axis=1)
    n = len(train)
    return replace(train, context=context[:n]), replace(test, context=context[n:])


def with_inputs(data: BeatData, data_cfg: Any) -> BeatData:
    """:func:`attach_inputs` for one file of whole records (a new database, DS2, ...)."""
    return attach_inputs(data, data.subset(np.arange(0)), data_cfg)[0]
