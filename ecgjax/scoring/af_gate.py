"""An atrial-fibrillation gate on S: in AF, early narrow beats are N, not S.

Why: by the AAMI/MIT-BIH convention an S beat is an atrial (supraventricular) premature beat,
which has no meaning while the atria fibrillate; every narrow beat in AF is N. A beat
classifier that reads prematurity from the RR features calls many AF beats S, because in AF
beats come early all the time. The training patients hold too few AF episodes to learn this
(DS1 has two AF patients), so the gate uses a published, label-free RR detector with its
published thresholds, nothing fitted here: Dash, Chon, Lu and Raeder, "Automatic real time
detection of atrial fibrillation", Ann Biomed Eng 37 (2009) 1701-1709.

For each beat, the ``window`` RR intervals centred on it (shifted to fit at the ends of the
record) are judged irregular when all three hold:

* RMSSD / mean RR > 0.1 after the ``trim`` longest and ``trim`` shortest intervals are removed
  (the paper's guard against isolated ectopic beats);
* the Shannon entropy of a 16-bin histogram of the same trimmed intervals, normalised to
  [0, 1], exceeds 0.7;
* the turning-point ratio of the whole window lies in (0.54, 0.77) (2/3 for a random series).

Intervals that begin or end at a beat the model calls S, V or F are left out first
(normal-to-normal intervals, as heart-rate variability is measured), so frequent premature
beats, atrial or ventricular, do not read as irregularity; in AF the intervals between the
beats called N stay irregularly irregular.

AF is also the absence of P waves, which the RR tests do not see. With ``pwave_max`` > 0 (config
``data.af_gate_pwave``) a beat is gated only where, in addition, the P waves in its window are
inconsistent: each beat's P region (248-64 ms before the R peak) is correlated with the median
P region of the 32 beats around it (:func:`ecgjax.data.inputs.p_wave_correlations`, computed by
the caller), and the median of those correlations over the window's beats not called S, V or F
must be below ``pwave_max``. On DS1's annotated rhythms that median is
about 0.2 in AF and 0.75-0.98 elsewhere (``report/journal.md``, session 13).

On flagged beats S is taken away: moved onto N, or conditioned away (``data.af_gate_mode``,
:func:`gate`); V, F and Q are otherwise untouched. The RR statistics are scale-free, so the
sample positions may be in any unit for them; the P regions need positions in the beats' own
125 Hz samples, as prepared files hold them. Either way they must be every beat of the record:
a beat-level split or a sample of a file is refused (:func:`require_whole_records`). Records
with fewer than ``min_beats`` kept intervals are never gated. Known weakness of the RR tests
alone: atrial premature beats the model does not call S stay in the series and make it
irregular, so a record with many of them is gated where its S calls are right (on DS1, 14-67
of record 201's 128 S beats, depending on the pool; session 12). They have P waves, so the
P-wave test spares most of them (3 of them lost on each of two pools; session 13).

A second rhythm gate on S, the prematurity gate (``data.prematurity_gate`` > 0), runs after
the AF gate: AAMI's S class (A, a, J, S) is *premature* by definition, so where a beat's
interval to the previous beat is more than ``prematurity`` times the record's mean interval
(the RR feature ``ratio_prev_record``, :mod:`ecgjax.data.rr`, computed by the caller; the
running mean when ``data.rr_causal``), S is conditioned away (p / (1 - p(S)), so a V beat with
some S mass stays V). A head that also learned to call S from morphology alone (rhythm
dropout) calls S on normal beats that are not early; on DS1 pools 0.9 removed about 110 such
calls for about 20 true S beats, mostly in runs of supraventricular tachycardia that pull the
record's mean down (``report/journal.md``, session 19). Like the AF gate it needs every beat
of each record.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class DashThresholds:
    """The published decision rule (Dash et al. 2009) and its window."""

    window: int = 128
    trim: int = 8
    bins: int = 16
    rmssd: float = 0.1
    entropy: float = 0.7
    tpr_low: float = 0.54
    tpr_high: float = 0.77
    min_beats: int = 32


DASH = DashThresholds()
MODES = ("to_n", "condition")  # what a flagged beat's S probability becomes (:func:`gate`)


@dataclass(frozen=True)
class GateSettings:
    """What the rhythm gates on S do: config ``data.af_gate``, ``data.af_gate_pwave``,
    ``data.af_gate_mode`` (the AF gate), ``data.prematurity_gate`` and ``data.rr_causal`` (the
    prematurity gate; module docstring)."""

    enabled: bool = False  # the AF gate
    pwave_max: float = 0.0  # > 0: the P-wave test too (module docstring)
    mode: str = "to_n"
    prematurity: float = 0.0  # > 0: the prematurity gate's threshold on ratio_prev_record
    causal: bool = False  # the prematurity gate reads the causal RR features

    @classmethod
    def from_config(cls, data: Any) -> GateSettings:
        """From a config's ``data`` section (keys that an older checkpoint lacks: off/defaults)."""
        return cls(
            bool(data.get("af_gate", False)),
            float(data.get("af_gate_pwave", 0.0)),
            str(data.get("af_gate_mode", "to_n")),
            float(data.get("prematurity_gate", 0.0)),
            bool(data.get("rr_causal", False)),
        )

    @property
    def uses_p_waves(self) -> bool:
        return self.enabled and self.pwave_max > 0

    @property
    def active(self) -> bool:
        """Either gate is on (both need whole records with their beat positions)."""
        return self.enabled or self.prematurity > 0


OFF = GateSettings()
ECTOPIC = ("S", "V", "F")  # beats whose intervals are left out: premature, atrial or ventricular
MIN_P_BEATS = 8  # fewer beats with a P region in a window: the P test cannot speak, RR decides


def window_statistics(rr: np.ndarray, t: DashThresholds = DASH) -> dict[str, np.ndarray]:
    """Normalised RMSSD, Shannon entropy and turning-point ratio of each row of ``rr``.

    ``rr``: ``(W, L)`` windows of RR intervals, ``L > 2 * trim + 2``.
    """
    rr = np.asarray(rr, dtype=np.float64)
    w, length = rr.shape
    keep_n = length - 2 * t.trim
    if keep_n < 3:
        raise ValueError(f"AF gate: a window of {length} RR intervals is too short to trim")
    rank = np.argsort(np.argsort(rr, axis=1, kind="stable"), axis=1)
    keep = (rank >= t.trim) & (rank < length - t.trim)
    trimmed = rr[keep].reshape(w, keep_n)  # row-major: each row keeps its time order
    rmssd = np.sqrt(np.mean(np.diff(trimmed, axis=1) ** 2, axis=1)) / trimmed.mean(1)
    lo, hi = trimmed.min(1, keepdims=True), trimmed.max(1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    idx = np.clip(((trimmed - lo) / span * t.bins).astype(np.int64), 0, t.bins - 1)
    counts = np.zeros((w, t.bins))
    np.add.at(counts, (np.repeat(np.arange(w), keep_n), idx.ravel()), 1.0)
    p = counts / keep_n
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(1) / np.log(t.bins)
    mid, prev, nxt = rr[:, 1:-1], rr[:, :-2], rr[:, 2:]
    turning = ((mid > prev) & (mid > nxt)) | ((mid < prev) & (mid < nxt))
    tpr = turning.sum(1) / (length - 2)
    return {"rmssd": rmssd, "entropy": entropy, "tpr": tpr}


def _record_flags(
    sample: np.ndarray,
    ectopic: np.ndarray,
    t: DashThresholds,
    p_corr: np.ndarray | None = None,
    pwave_max: float = 0.0,
) -> np.ndarray:
    """AF flag per beat of one record, beats given in time order."""
    n = len(sample)
    rr = np.diff(sample.astype(np.float64))
    if np.any(rr <= 0):
        raise ValueError("AF gate: beat positions within a record must strictly increase")
    # Interval j runs from beat j to beat j + 1; those touching an ectopic beat are dropped
    # (normal-to-normal intervals, as heart-rate variability is measured).
    kept = np.flatnonzero(~ectopic[:-1] & ~ectopic[1:])
    if len(kept) < t.min_beats:
        return np.zeros(n, dtype=bool)
    series = rr[kept]
    length = min(t.window, len(series))
    trim = min(t.trim, (length - 3) // 2)
    t = replace(t, window=length, trim=trim)
    stats = window_statistics(sliding_window_view(series, length), t)
    irregular = (
        (stats["rmssd"] > t.rmssd)
        & (stats["entropy"] > t.entropy)
        & (stats["tpr"] > t.tpr_low)
        & (stats["tpr"] < t.tpr_high)
    )
    if p_corr is not None and pwave_max > 0:
        # Window w spans kept intervals w .. w + length - 1, i.e. the beats that end them.
        corr = p_corr[kept + 1]
        windows = sliding_window_view(corr, length)
        enough = np.sum(~np.isnan(windows), axis=1) >= MIN_P_BEATS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: handled below
            median = np.nanmedian(windows, axis=1)
        irregular &= ~enough | (median < pwave_max)
    # Beat i ends interval i - 1: its nearest kept interval centres its window, clipped.
    nearest = np.clip(np.searchsorted(kept, np.arange(n) - 1), 0, len(kept) - 1)
    start = np.clip(nearest - length // 2, 0, len(irregular) - 1)
    return irregular[start]


def af_flags(
    sample: np.ndarray,
    record: Sequence[str] | np.ndarray,
    t: DashThresholds = DASH,
    ectopic: np.ndarray | None = None,
    p_corr: np.ndarray | None = None,
    pwave_max: float = 0.0,
) -> np.ndarray:
    """A boolean per beat: does the rhythm around it look like AF (Dash et al. 2009)?

    ``sample``: each beat's R-peak position (any unit); ``record``: its record id; ``ectopic``:
    beats whose intervals are left out (for example those the model calls V), so that
    ventricular bigeminy or trigeminy is not read as irregularity. With ``p_corr`` (each beat's
    P-wave correlation with its neighbours', NaN where missing) and ``pwave_max`` > 0, a window
    must also have inconsistent P waves (module docstring). Beats need not be sorted; within a record they are
    taken in time order.
    """
    sample = np.asarray(sample)
    record = np.asarray(record).astype(str)
    ectopic = np.zeros(len(sample), bool) if ectopic is None else np.asarray(ectopic, bool)
    if not (sample.shape == record.shape == ectopic.shape) or sample.ndim != 1:
        raise ValueError(
            f"AF gate: one position, record id and ectopic flag per beat ({sample.shape}, "
            f"{record.shape}, {ectopic.shape})"
        )
    corr_all = None
    if pwave_max > 0:
        if p_corr is None or np.shape(p_corr) != sample.shape:
            raise ValueError("AF gate: the P-wave test needs one P-wave correlation per beat")
        corr_all = np.asarray(p_corr, dtype=np.float64)  # once, not per record
    out = np.zeros(len(sample), dtype=bool)
    for name in np.unique(record):
        idx = np.flatnonzero(record == name)
        order = idx[np.argsort(sample[idx], kind="stable")]
        corr = None if corr_all is None else corr_all[order]
        try:
            out[order] = _record_flags(sample[order], ectopic[order], t, corr, pwave_max)
        except ValueError as err:
            raise ValueError(f"record {name}: {err}") from None
    return out


def gate(
    probs: np.ndarray, flags: np.ndarray, class_names: Sequence[str], mode: str = "to_n"
) -> np.ndarray:
    """Take S away from flagged beats (rows still sum to 1).

    ``to_n`` moves the S probability onto N (a beat called S in AF is taken to be normal);
    ``condition`` conditions on "not S", p(c) / (1 - p(S)) for the other classes, so a beat
    whose runner-up was V becomes V (where S held nearly everything, N takes it).
    """
    if mode not in MODES:
        raise ValueError(f"AF gate: mode {mode!r} is not one of {MODES}")
    names = list(class_names)
    if "S" not in names or "N" not in names:
        return probs
    s, n = names.index("S"), names.index("N")
    out = np.array(probs, dtype=np.float64, copy=True)
    flagged = out[..., flags, :]
    p_s = flagged[..., s].copy()
    flagged[..., s] = 0.0
    if mode == "to_n":
        flagged[..., n] += p_s
    else:
        rest = 1.0 - p_s
        tiny = rest < 1e-9
        flagged /= np.where(tiny, 1.0, rest)[..., None]
        flagged[..., n] = np.where(tiny, 1.0, flagged[..., n])
    out[..., flags, :] = flagged
    return out


def gate_ensemble(
    probs: np.ndarray,
    sample: np.ndarray | None,
    record: Sequence[str] | np.ndarray | None,
    class_names: Sequence[str],
    settings: GateSettings,
    source: str = "the data",
    p_corr: np.ndarray | None = None,
    prev_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """The rhythm gates for every seed of ``probs`` ``(S, N, C)`` (or one ``(N, C)``): the AF
    gate (:func:`gate`, when enabled), then the prematurity gate (when ``settings.prematurity``
    > 0: S conditioned away where ``prev_ratio``, each beat's ``ratio_prev_record``, exceeds it).

    For the AF gate the intervals of the beats the ensemble (the seeds' mean) calls S, V or F
    are left out of the detector's RR series (normal-to-normal intervals), so premature beats,
    atrial or ventricular, are not taken for AF; the same beats are left out of the P-wave test
    (``p_corr``, needed when ``settings.uses_p_waves``; :func:`af_flags`).

    Raises:
        ValueError: a gate is on, but the file has no record or sample column (named by
            ``source``), or ``prev_ratio`` is missing or of the wrong length.
    """
    if not settings.active:
        return probs
    if record is None or sample is None:
        key = "data.af_gate" if settings.enabled else "data.prematurity_gate"
        raise ValueError(
            f"{source}: {key} needs each beat's record and sample position; "
            "the file has no record or sample column"
        )
    names = list(class_names)
    out = _af_gate_ensemble(probs, sample, record, names, settings, p_corr)
    if settings.prematurity > 0:
        if prev_ratio is None or len(prev_ratio) != probs.shape[-2]:
            got = "none" if prev_ratio is None else f"{len(prev_ratio)} values"
            raise ValueError(
                f"{source}: data.prematurity_gate needs each beat's ratio_prev_record "
                f"({probs.shape[-2]} values), got {got}"
            )
        late = np.asarray(prev_ratio) > settings.prematurity
        out = gate(out, late, names, "condition").astype(probs.dtype)
    return out


def _af_gate_ensemble(
    probs: np.ndarray,
    sample: np.ndarray,
    record: Sequence[str] | np.ndarray,
    names: list[str],
    settings: GateSettings,
    p_corr: np.ndarray | None,
) -> np.ndarray:
    """The AF gate part of :func:`gate_ensemble` (``probs`` unchanged when it is off)."""
    if not settings.enabled:
        return probs
    mean = probs.mean(0) if probs.ndim == 3 else probs
    ectopic = np.isin(mean.argmax(-1), [names.index(c) for c in ECTOPIC if c in names])
    flags = af_flags(
        sample,
        record,
        ectopic=ectopic,
        p_corr=p_corr,
        pwave_max=settings.pwave_max,  # the gate is on here; 0 leaves the P-wave test out
    )
    return gate(probs, flags, names, settings.mode).astype(probs.dtype)


def require_whole_records(source: str, partial: str | None) -> None:
    """Refuse the rhythm gates on a file that holds only part of its records' beats.

    The detector reads the interval between every pair of consecutive beats, so a beat-level
    split (each record's beats dealt over train and test) or a sample of a file (``--max_beats``)
    would make any rhythm look irregular. ``partial`` says why the beats are partial, or is None.

    Raises:
        ValueError: ``partial`` is given (named by ``source``).
    """
    if partial:
        raise ValueError(
            f"{source}: the rhythm gates on S (data.af_gate, data.prematurity_gate) read the "
            f"interval between consecutive beats of a record, but {partial}; evaluate whole "
            "records (an inter-patient file, all its beats) or turn the gates off (--noaf_gate "
            "--prematurity_gate=0)"
        )
