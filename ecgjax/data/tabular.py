"""Hand-made, patient-normalised beat features: the inputs of the tree model.

The published global methods for new patients (de Chazal 2004, Mondejar-Guerra 2019, Shi
2019) classify numbers, not waveforms: RR intervals against the patient's own rate and the
beat's shape against the patient's own dominant beat. These features give a second learner
(:mod:`ecgjax.training.trees`) exactly that, so its errors can differ from the CNN's.

Columns (:func:`feature_names`), all from the beat's own record and no labels:

- the nine RR features of :mod:`ecgjax.data.rr`;
- for each lead (the second lead is zeros where a record has none): the first 64 samples after
  the R peak (512 ms at 125 Hz, the QRS and the start of the T wave) at every second sample, the
  same minus the record's median beat, and the three QRS-versus-template scalars of
  :func:`ecgjax.data.inputs.template_features`.
"""

from __future__ import annotations

import numpy as np

from ecgjax.data.beats import BeatData, DataError
from ecgjax.data.inputs import template_features, templates
from ecgjax.data.rr import RR_FEATURES, record_groups, rr_features

SPAN = 64  # samples after the R peak
STEP = 2  # keep every second one: 32 values a lead, 16 ms apart


def feature_names() -> list[str]:
    """The column names, in order."""
    names = list(RR_FEATURES)
    for lead in ("lead1", "lead2"):
        names += [f"{lead}_x{t}" for t in range(0, SPAN, STEP)]
        names += [f"{lead}_dx{t}" for t in range(0, SPAN, STEP)]
        names += [f"{lead}_qrs_corr", f"{lead}_qrs_deviation", f"{lead}_qrs_log_range"]
    return names


def beat_features(data: BeatData) -> np.ndarray:
    """float32 ``(N, len(feature_names()))`` for every beat of ``data``.

    Raises:
        DataError: ``data`` has no ``record`` or ``sample`` column (the features are relative
            to each beat's record).
    """
    if data.record is None or data.sample is None:
        raise DataError(
            f"{data.source}: the tree features need 'record' and 'sample' columns "
            "(RR intervals and templates are per record)"
        )
    groups = record_groups(data.record, data.sample)
    parts = [rr_features(data.record, data.sample)]
    second = data.lead2 if data.lead2 is not None else np.zeros_like(data.x)
    for lead in (np.asarray(data.x, np.float32), np.asarray(second, np.float32)):
        template = templates(lead, groups, "record", 1)
        parts.append(lead[:, :SPAN:STEP])
        parts.append((lead - template)[:, :SPAN:STEP])
        parts.append(template_features(lead, groups, "record", 1, template))
    return np.concatenate(parts, axis=1).astype(np.float32)
