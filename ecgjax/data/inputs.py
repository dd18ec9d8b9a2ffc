"""Patient-adaptive model inputs: extra channels built from the patient's own beats.

A beat on its own is judged against every training patient's idea of "normal". Cardiologists
(and the strong inter-patient methods: de Chazal 2004, Llamedo & Martinez 2011) judge it
against *this* patient's dominant beat and rhythm instead. The channels here give a model
that reference, with no labels needed, so they are as available for a new patient as for a
training one. ``data.channels`` lists them, comma-separated; each is a ``(N, 187)`` array
stacked along the last axis of the model input ``(N, 192, C)``:

- ``beat``: the beat itself (the reference input).
- ``template``: the patient's typical beat. ``data.template = "record"``: the element-wise
  median of every beat of the record (offline, Holter-style; the median ignores the minority
  of ectopic beats). ``"causal"``: the median of the previous ``data.template_beats`` beats
  (a real-time monitor; the first beat of a record is its own template).
- ``beat_minus_template``: ``beat - template``, the deviation from the patient's normal.
- ``prev`` / ``next``: the previous / next beat of the same record (zeros at the ends): the
  neighbouring beats, so a premature beat is seen next to the normal ones around it.
- ``lead2``: the same beat cut from the record's second lead (zeros where the record has
  only one; ``BeatData.lead2``), so a model still runs on one-lead data.
- ``lead2_minus_template``: ``lead2`` minus the record's second-lead template (built as
  ``template`` is, from the second lead): the deviation from the patient's normal on the
  other lead, where a ventricular beat that looks ordinary on the first often does not.
  Zeros where the record has one lead.
- ``centred`` / ``centred_lead2``: the ``PRE_SAMPLES`` samples (512 ms) before the R peak, then
  the beat's first ``187 - PRE_SAMPLES``. Every beat window starts at its R peak, so without
  this the model never sees the beat's own P wave (an early abnormal P marks an atrial
  premature beat; none, with an irregular rhythm, marks atrial fibrillation) or QRS onset. The
  samples come from the previous beat's window of the same record (the same normalised
  signal), so no new data columns are needed; where that window ends before them (after a
  pause longer than its 1.2 median RR) and for a record's first beat they are zeros. Past
  beats only, so causal.

Records are ordered by ``sample`` and must be whole: :func:`ecgjax.data.attach_inputs` builds
the channels over the union of train and test, as :func:`ecgjax.data.joint_context` does for
RR features. This module works on plain arrays (below ``ecgjax.data`` in the layers).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ecgjax.data.rr import record_groups

CHANNELS = (
    "beat",
    "template",
    "beat_minus_template",
    "prev",
    "next",
    "lead2",
    "centred",
    "centred_lead2",
    "lead2_minus_template",
)
TEMPLATES = ("record", "causal")
_NEEDS_RECORDS = {
    "template",
    "beat_minus_template",
    "prev",
    "next",
    "centred",
    "centred_lead2",
    "lead2_minus_template",
}
PRE_SAMPLES = 64  # before the R peak: 512 ms at 125 Hz, the P wave and the QRS onset


def parse_channels(spec: str) -> tuple[str, ...]:
    """``"beat,template"`` -> ``("beat", "template")``; raises on unknown or repeated names."""
    names = parse_names(spec)
    if not names:
        raise ValueError("data.channels is empty; use e.g. 'beat' or 'beat,beat_minus_template'")
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise ValueError(f"data.channels: unknown channel(s) {unknown}; choose from {CHANNELS}")
    if len(set(names)) != len(names):
        raise ValueError(f"data.channels: repeated channel in {spec!r}")
    return names


def parse_names(spec: str) -> tuple[str, ...]:
    """``"beat, lead2"`` -> ``("beat", "lead2")``; ``""`` -> ``()`` (no check against CHANNELS)."""
    return tuple(s.strip() for s in str(spec).split(",") if s.strip())


def channel_indices(channels: str, names: str) -> tuple[int, ...]:
    """Positions of ``names`` (comma-separated) in the model input built for ``channels``."""
    order = parse_channels(channels)
    missing = [n for n in parse_names(names) if n not in order]
    if missing:
        raise ValueError(f"channel(s) {missing} are not in data.channels={channels!r}")
    return tuple(order.index(n) for n in parse_names(names))


def num_channels(data_cfg: Any) -> int:
    """How many input channels ``data.channels`` asks for."""
    return len(parse_channels(data_cfg.channels))


def is_plain(data_cfg: Any) -> bool:
    """True for the reference input (the beat alone, the nine non-causal RR features): nothing
    to build."""
    return (
        parse_channels(data_cfg.channels) == ("beat",)
        and not data_cfg.rr_causal
        and not data_cfg.get("rr_irregularity", False)
        and not data_cfg.get("template_features", False)
        and not data_cfg.get("p_wave_features", False)
    )


def templates(x: np.ndarray, groups: list[np.ndarray], mode: str, past_beats: int) -> np.ndarray:
    """The per-beat template (see the module docstring), float32 ``(N, 187)``."""
    if mode not in TEMPLATES:
        raise ValueError(f"data.template must be one of {TEMPLATES}, got {mode!r}")
    if past_beats < 1:
        raise ValueError(f"data.template_beats must be >= 1, got {past_beats}")
    out = np.empty_like(x, dtype=np.float32)
    for g in groups:
        beats = x[g]
        if mode == "record":
            out[g] = np.median(beats, axis=0)
            continue
        # causal: median over beats i-K .. i-1; the first beat of a record is its own template.
        for i in range(len(g)):
            window = beats[max(0, i - past_beats) : i] if i else beats[:1]
            out[g[i]] = np.median(window, axis=0)
    return out


TEMPLATE_FEATURES = ("qrs_corr", "qrs_deviation", "qrs_log_range")
QRS_WINDOW = 48  # samples after the R peak (384 ms at 125 Hz), as in ecgjax.scoring.clusters


def template_features(
    x: np.ndarray,
    groups: list[np.ndarray],
    mode: str,
    past_beats: int,
    template: np.ndarray | None = None,
) -> np.ndarray:
    """How unlike the patient's own dominant beat each beat's QRS region is: float32 ``(N, 3)``.

    Columns (``TEMPLATE_FEATURES``): the correlation of the beat's QRS region with the
    template's, their RMS difference over the template's RMS, and the log ratio of their
    peak-to-peak ranges. They are what de Chazal-style methods compute by hand: scalars
    normalised to the patient, so a ventricular beat reads as "unlike this patient's normal"
    whatever this patient's normal looks like. ``mode`` and ``past_beats`` as in
    :func:`templates` (``"causal"`` uses past beats only); ``template``: that function's result
    when the caller already has it.
    """
    x = np.asarray(x, dtype=np.float32)
    w = min(QRS_WINDOW, x.shape[1])
    beat = x[:, :w].astype(np.float64)
    if not groups:  # no records: every beat is its own template
        ref = beat
    else:
        if template is None:
            template = templates(x, groups, mode, past_beats)
        ref = template[:, :w].astype(np.float64)
    eps = 1e-6
    b0, r0 = beat - beat.mean(1, keepdims=True), ref - ref.mean(1, keepdims=True)
    corr = (b0 * r0).sum(1) / np.sqrt((b0**2).sum(1) * (r0**2).sum(1) + eps)
    rms_ref = np.sqrt((ref**2).mean(1)) + eps
    deviation = np.sqrt(((beat - ref) ** 2).mean(1)) / rms_ref
    span = np.log((np.ptp(beat, 1) + eps) / (np.ptp(ref, 1) + eps))
    return np.stack([corr, np.minimum(deviation, 10.0), np.clip(span, -3, 3)], 1).astype(np.float32)


def neighbours(x: np.ndarray, groups: list[np.ndarray], offset: int) -> np.ndarray:
    """The beat ``offset`` places away in the same record (zeros past either end)."""
    out = np.zeros_like(x, dtype=np.float32)
    for g in groups:
        if offset < 0:
            out[g[-offset:]] = x[g[:offset]]
        else:
            out[g[:-offset]] = x[g[offset:]]
    return out


def centred(x: np.ndarray, groups: list[np.ndarray], sample: np.ndarray) -> np.ndarray:
    """Each beat shifted right by ``PRE_SAMPLES``, the gap filled from the previous beat's window.

    Beat ``i`` starts at R peak ``sample[i]``; its previous beat's window starts ``d`` samples
    earlier, so the samples before ``i``'s R peak are that window's ``d - PRE_SAMPLES .. d - 1``
    (zeros where the window is shorter, or ``d`` too small to reach back that far).
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[1]
    out = np.zeros_like(x)
    out[:, PRE_SAMPLES:] = x[:, : n - PRE_SAMPLES]
    sample = np.asarray(sample, dtype=np.int64)
    offsets = np.arange(PRE_SAMPLES) - PRE_SAMPLES
    for g in groups:
        if len(g) < 2:
            continue
        d = np.diff(sample[g])
        idx = d[:, None] + offsets[None, :]
        valid = (idx >= 0) & (idx < n)
        vals = np.take_along_axis(x[g[:-1]], np.clip(idx, 0, n - 1), axis=1)
        out[g[1:], :PRE_SAMPLES] = np.where(valid, vals, 0.0)
    return out


P_REGION = (31, 8)  # samples before the R peak at 125 Hz: 248 to 64 ms, where the P wave sits


def p_regions(x: np.ndarray, record: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Each beat's P-wave region (:data:`P_REGION`), cut as :func:`centred` reaches back.

    For the AF gate's second test (:mod:`ecgjax.scoring.af_gate`): a P wave before every beat
    means the atria are not fibrillating. Rows are NaN where the region is out of reach (a
    record's first beat, or a pause longer than the previous beat's window, whose zero-padded
    tail then ends the region: its last two samples exactly 0), so they are skipped rather
    than read as a flat line.

    Returns:
        float32 ``(N, 23)``, rows in the input order.
    """
    x = np.asarray(x, dtype=np.float32)
    start, stop = PRE_SAMPLES - P_REGION[0], PRE_SAMPLES - P_REGION[1]
    out = centred(x, record_groups(record, sample), sample)[:, start:stop].copy()
    out[(out[:, -1] == 0) & (out[:, -2] == 0)] = np.nan
    return out


P_NEIGHBOURS = 32  # beats whose median P region is each beat's local reference
P_WAVE_FEATURES = ("p_corr_local", "p_corr_record")


def local_p_correlation(regions: np.ndarray) -> np.ndarray:
    """Correlation of each beat's P region with the median region of the ``P_NEIGHBOURS`` beats
    around it, for one record's beats in time order; NaN where a region is missing (NaN row).

    Consistent P waves correlate highly with their neighbours' median; fibrillation waves do not.
    Each region is centred on its mean first, and the reference is the median of centred regions.
    """
    centred = _centred(regions)
    n = len(centred)
    if n == 0:
        return np.zeros(0)
    size = min(P_NEIGHBOURS, n)
    start = np.clip(np.arange(n) - size // 2, 0, n - size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neighbourhoods stay NaN
        refs = np.nanmedian(sliding_window_view(centred, size, axis=0), axis=-1)[start]
    return _cosine(centred, refs)


def _centred(regions: np.ndarray) -> np.ndarray:
    regions = np.asarray(regions, dtype=np.float64)
    return regions - regions.mean(1, keepdims=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of centred regions and their reference; NaN where either is missing,
    0 where one is flat."""
    num = np.sum(a * b, axis=1)
    den = np.sqrt(np.sum(a**2, axis=1) * np.sum(b**2, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, 0.0)
    return np.where(np.isnan(a[:, 0]) | np.isnan(b[:, 0]), np.nan, out)


def p_wave_correlations(x: np.ndarray, record: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """How like its neighbours' and its record's P waves each beat's P wave is: float64
    ``(N, 2)`` in the order of :data:`P_WAVE_FEATURES`, NaN where the region is out of reach.

    The local column is what the AF gate reads (fibrillation: no consistent P wave); both are
    ``data.p_wave_features`` (an atrial premature beat has an early, abnormal P wave).
    """
    regions = p_regions(x, record, sample)
    out = np.full((len(regions), 2), np.nan)
    for g in record_groups(record, sample):
        out[g, 0] = local_p_correlation(regions[g])
        centred = _centred(regions[g])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a record with no region in reach
            median = np.nanmedian(centred, axis=0)
        out[g, 1] = _cosine(centred, np.broadcast_to(median, centred.shape))
    return out


def build_channels(
    x: np.ndarray,
    record: np.ndarray | None,
    sample: np.ndarray | None,
    lead2: np.ndarray | None,
    data_cfg: Any,
    source: str,
) -> np.ndarray:
    """Stack the configured channels of one file's beats: float32 ``(N, 187, C)``.

    Raises:
        ValueError: a channel needs columns the file lacks (``record``/``sample``, lead 2);
            the message starts with ``source``.
    """
    names = parse_channels(data_cfg.channels)
    if _NEEDS_RECORDS & set(names) and (record is None or sample is None):
        raise ValueError(
            f"{source}: data.channels={data_cfg.channels!r} needs the 'record' and "
            "'sample' columns (prepare the data with scripts/prepare_data.py)"
        )
    groups = record_groups(record, sample) if record is not None and sample is not None else []
    x = np.asarray(x, dtype=np.float32)
    cache: dict[str, np.ndarray] = {}

    def template() -> np.ndarray:
        if "template" not in cache:
            cache["template"] = templates(
                x, groups, str(data_cfg.template), int(data_cfg.template_beats)
            )
        return cache["template"]

    out = []
    for name in names:
        if name == "beat":
            out.append(x)
        elif name == "template":
            out.append(template())
        elif name == "beat_minus_template":
            out.append(x - template())
        elif name in ("prev", "next"):
            out.append(neighbours(x, groups, -1 if name == "prev" else 1))
        elif name == "centred":
            out.append(centred(x, groups, np.asarray(sample)))
        else:  # lead2, centred_lead2, lead2_minus_template
            if lead2 is None:
                raise ValueError(
                    f"{source}: data.channels asks for {name!r} but the file has no "
                    "second-lead columns (re-prepare it with scripts/prepare_data.py --force)"
                )
            second = np.asarray(lead2, dtype=np.float32)
            if name == "lead2":
                out.append(second)
            elif name == "centred_lead2":
                out.append(centred(second, groups, np.asarray(sample)))
            else:
                mode, past = str(data_cfg.template), int(data_cfg.template_beats)
                out.append(second - templates(second, groups, mode, past))
    return np.stack(out, axis=-1)
