"""Heartbeats from beat-annotated WFDB records (MIT-BIH and others), after Kachuee et al. 2018.

(Over 300 lines on purpose: the paper's steps, reading, lead choice, windows and
segmentation, read in order in one module; split, no part would stand on its own.)

Steps (arXiv:1805.00794, sec. III-A): take lead MLII, resample to 125 Hz (360 Hz for MIT-BIH),
cut the signal into 10 s windows and normalise each to [0, 1], take the median R-R interval T
of the window, and cut a 1.2*T segment starting at each R-peak, zero-padded to 187 samples.

One deliberate change: the beat positions are the cardiologists' annotated R-peaks (mapped to
125 Hz), not the paper's threshold detector (local maxima above 0.9). The published Kaggle set
built by that method holds 109,446 beats, i.e. essentially every annotated beat (the
annotations give 109,494), so using the annotations reproduces its class totals while giving
each beat a reliable label, record id, R-peak index and original symbol. T is the median
interval between the annotated beats of the window (the record's median when a window has
fewer than two). A segment that runs past its window's end continues into the next
(separately normalised) window, so every value stays in [0, 1]; the segment is capped at 186
samples so each beat keeps a zero-padded tail.

The second lead (the first channel that is not the chosen one) is cut at the same R-peaks with
the same segment lengths and its own window normalisation, so a model can use both leads.
Leads are matched by name ignoring case, spaces, '-' and '_'; when none of the preferred names
is present the first channel is used and the record's ``note`` says so (MIT-BIH records 102
and 104 have no MLII). Non-beat annotations (rhythm, noise, comments) are skipped.

:func:`extract_beats` is the one extraction for every database; :func:`read_record` reads a
record at any sampling rate (MIT-BIH insists on 360 Hz, other databases take their own).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import wfdb
from scipy import signal as sps

FS_IN = 360
FS = 125
WINDOW_S = 10.0
SEGMENT_RR = 1.2
FEATURE_LEN = 187
MAX_SEGMENT = FEATURE_LEN - 1  # keep a zero-padded tail on every beat
LEAD = "MLII"
# Other databases: limb lead II in its PhysioNet spellings (MLII in mitdb/nstdb/qtdb, II in
# incartdb, ML2 in ltstdb), then the precordial leads closest to it in morphology.
LEAD_ORDER = ("MLII", "II", "ML2", "V5", "V1")
# 125/fs as up/down for the polyphase filter, whose length grows with max(up, down): a denominator
# of at most 10,000 is exact for every integer rate up to 10 kHz and for rates like 1000/3 Hz.
MAX_DENOMINATOR = 10_000
CLASS_NAMES = ("N", "S", "V", "F", "Q")
AAMI = {
    **dict.fromkeys("NLRej", 0),
    **dict.fromkeys("AaJS", 1),
    **dict.fromkeys("VE", 2),
    "F": 3,
    **dict.fromkeys("/fQ", 4),
}
# de Chazal et al. 2004 inter-patient protocol; paced records are in neither set.
# fmt: off
DS1_RECORDS = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)
DS2_RECORDS = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
    "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
)
PACED_RECORDS = ("102", "104", "107", "217")
# fmt: on
_BYTES_PER_SAMPLE = {
    "212": 1.5,
    "16": 2.0,
    "61": 2.0,
    "8": 1.0,
    "80": 1.0,
    "310": 4 / 3,
    "311": 4 / 3,
}


class RecordError(Exception):
    """A WFDB record cannot be used; the message starts with the record name."""


@dataclass(frozen=True)
class RawRecord:
    """One record as read: its chosen lead (and second lead) at the record's own rate."""

    record: str
    sig: np.ndarray  # float64 (n,)
    fs: float
    lead: str
    ann_sample: np.ndarray  # int64, at ``fs``
    ann_symbol: list[str]
    sig2: np.ndarray | None = None
    lead2: str | None = None
    note: str | None = None
    ann_aux: list[str] | None = None  # aux_note of each annotation (rhythm changes: '(AFIB')


@dataclass(frozen=True)
class RecordBeats:
    """The beats of one record."""

    record: str
    x: np.ndarray  # float32 (n, 187)
    y: np.ndarray  # int64 (n,)
    sample: np.ndarray  # int64 (n,) R-peak index at 125 Hz
    symbol: np.ndarray  # str (n,)
    lead: str
    note: str | None = None
    lead2: np.ndarray | None = None  # float32 (n, 187): the second lead, same segmentation
    lead2_name: str | None = None
    fs: float = FS_IN  # the record's own sampling rate
    rhythm: np.ndarray | None = None  # str (n,): the annotated rhythm at each beat, '' unknown


def list_records(source: Path) -> list[str]:
    """Record names in ``source``: its ``RECORDS`` file, else every ``*.hea``."""
    listing = source / "RECORDS"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return sorted(p.stem for p in source.glob("*.hea"))


def input_files(source: Path, name: str, annotator: str = "atr") -> list[Path]:
    """The files a record needs (whether or not they exist): header, signal files, annotations.

    The signal files are the ones the header names (``NAME.dat`` when it cannot be read).
    """
    hea = source / f"{name}.hea"
    dats = [source / f"{name}.dat"]
    try:
        header: Any = wfdb.rdheader(str(source / name))
        if header.file_name:
            dats = [hea.with_name(f) for f in dict.fromkeys(header.file_name)]
    except Exception:  # a damaged header is reported when the record is read
        pass
    return [hea, *dats, source / f"{name}.{annotator}"]


def lead_key(name: str) -> str:
    """A lead name compared loosely: 'ML II', 'ii ' and 'MLII' -> 'MLII', 'II', 'MLII'."""
    return re.sub(r"[\s_\-]", "", str(name)).upper()


def choose_leads(
    name: str, sig_names: Sequence[str], order: Sequence[str], force: str | None = None
) -> tuple[int, int | None, str | None]:
    """``(channel, second channel or None, note)``: the first name of ``order`` present.

    Falls back to the first channel (and says so in the note) unless ``force`` names a lead.

    Raises:
        RecordError: ``force`` names a lead the record does not have.
    """
    keys = [lead_key(s) for s in sig_names]
    note = None
    if force is not None:
        if lead_key(force) not in keys:
            raise RecordError(f"record {name}: no lead {force!r} (leads: {', '.join(sig_names)})")
        channel = keys.index(lead_key(force))
    else:
        found = [keys.index(lead_key(o)) for o in order if lead_key(o) in keys]
        channel = found[0] if found else 0
        if not found:
            note = f"no {'/'.join(order)} lead; using {sig_names[0]}"
    second = next((i for i in range(len(sig_names)) if i != channel), None)
    return channel, second, note


def read_record(
    source: Path,
    name: str,
    *,
    fs: float | None = FS_IN,
    leads: Sequence[str] = (LEAD,),
    force_lead: str | None = None,
    annotator: str = "atr",
) -> RawRecord:
    """Read one record's chosen lead, its second lead and its annotations.

    Args:
        fs: the sampling rate the record must have (``None``: any rate).
        leads: lead names in order of preference; ``force_lead`` overrides them.

    Raises:
        RecordError: a file is missing, truncated or unreadable, or the rate or lead is wrong.
    """
    base = str(source / name)
    if not (source / f"{name}.hea").is_file():
        raise RecordError(f"record {name}: missing file {name}.hea in {source}")
    try:
        header: Any = wfdb.rdheader(base)  # wfdb's types are loose (Record | MultiRecord)
    except Exception as e:
        raise RecordError(f"record {name}: unreadable header {name}.hea ({e})") from e
    if isinstance(header, wfdb.MultiRecord):
        raise RecordError(f"record {name}: multi-segment records are not supported")
    for f in input_files(source, name, annotator)[1:]:
        if not f.is_file():
            raise RecordError(f"record {name}: missing file {f.name} in {f.parent}")
    if (
        not header.sig_name
        or not header.sig_len
        or not header.fs
        or header.fs <= 0
        or (fs is not None and header.fs != fs)
    ):
        raise RecordError(f"record {name}: header says fs={header.fs}, signals={header.sig_name}")
    _check_dat_size(source, name, header)
    channel, second, note = choose_leads(name, header.sig_name, leads, force_lead)
    chans = sorted({channel} | ({second} if second is not None else set()))
    try:
        rec: Any = wfdb.rdrecord(base, channels=chans)
        ann: Any = wfdb.rdann(base, annotator)
    except Exception as e:
        raise RecordError(f"record {name}: cannot be read ({type(e).__name__}: {e})") from e
    signals = np.asarray(rec.p_signal, dtype=np.float64)
    sig = signals[:, chans.index(channel)]
    if len(sig) != header.sig_len or not np.isfinite(sig).all():
        raise RecordError(f"record {name}: signal has missing or invalid samples")
    sig2 = lead2 = None
    if second is not None:
        sig2, lead2 = signals[:, chans.index(second)], header.sig_name[second]
        if not np.isfinite(sig2).all():
            note = "; ".join(filter(None, [note, f"second lead {lead2} has invalid samples"]))
            sig2 = lead2 = None
    return RawRecord(
        name,
        sig,
        float(header.fs),
        header.sig_name[channel],
        np.asarray(ann.sample, dtype=np.int64),
        list(ann.symbol),
        sig2,
        lead2,
        note,
        [str(a or "") for a in (ann.aux_note or [""] * len(ann.sample))],
    )


def _check_dat_size(source: Path, name: str, header: Any) -> None:
    """wfdb reports a short .dat as a broadcasting error; say what it really is."""
    fmt = str(header.fmt[0])
    if fmt not in _BYTES_PER_SAMPLE or len(set(header.file_name)) != 1:
        return
    need = int(np.ceil(header.sig_len * header.n_sig * _BYTES_PER_SAMPLE[fmt]))
    have = (source / name).with_name(header.file_name[0]).stat().st_size
    if have < need:
        raise RecordError(
            f"record {name}: truncated {header.file_name[0]} ({have} of {need} bytes)"
        )


def normalise_windows(sig: np.ndarray, window: int) -> np.ndarray:
    """Scale each consecutive ``window``-sample chunk to [0, 1] (flat chunks become 0)."""
    out = np.zeros_like(sig, dtype=np.float64)
    for start in range(0, len(sig), window):
        chunk = sig[start : start + window]
        lo, hi = chunk.min(), chunk.max()
        if hi > lo:
            out[start : start + window] = (chunk - lo) / (hi - lo)
    return out


def segment_beats(norm: np.ndarray, peaks: np.ndarray, window: int) -> np.ndarray:
    """Cut a ``1.2 * T`` segment at each peak (T: median RR of its window), zero-padded."""
    x = np.zeros((len(peaks), FEATURE_LEN), dtype=np.float32)
    if len(peaks) == 0:
        return x
    record_t = float(np.median(np.diff(peaks))) if len(peaks) > 1 else MAX_SEGMENT / SEGMENT_RR
    win_id = peaks // window
    for w in np.unique(win_id):
        in_win = np.flatnonzero(win_id == w)
        p = peaks[in_win]
        t = float(np.median(np.diff(p))) if len(p) > 1 else record_t
        length = min(round(SEGMENT_RR * t), MAX_SEGMENT)
        for i, r in zip(in_win, p, strict=True):
            seg = norm[r : r + length]
            x[i, : len(seg)] = seg
    return x


def resample_ratio(fs: float) -> Fraction:
    """``125 / fs`` as a fraction ``up/down`` for :func:`scipy.signal.resample_poly`."""
    return (Fraction(FS) / Fraction(fs)).limit_denominator(MAX_DENOMINATOR)


def beat_rhythms(raw: RawRecord, keep: np.ndarray) -> np.ndarray:
    """The rhythm in force at each kept annotation: the last rhythm change ('+' with an aux
    note like ``(AFIB``) at or before it, without the parenthesis; '' before the first one.

    Not a model input: cross-validation uses it to spread the patients of a rhythm (atrial
    fibrillation) over its folds, so a held-out AF patient is judged by a model that saw AF.
    """
    aux = raw.ann_aux or [""] * len(raw.ann_symbol)
    current, out = "", []
    for symbol, note, kept in zip(raw.ann_symbol, aux, keep, strict=True):
        if symbol == "+" and note.startswith("("):
            current = note[1:].strip("\x00 ")
        if kept:
            out.append(current)
    return np.asarray(out, dtype=object).astype(str)


def extract_beats(raw: RawRecord) -> RecordBeats:
    """Resample a record to 125 Hz and cut its labelled beats (both leads), whatever its rate."""
    ratio = resample_ratio(raw.fs)
    up, down = ratio.numerator, ratio.denominator
    sig125 = sps.resample_poly(raw.sig, up, down)  # polyphase: exact ratio, no FFT edge ringing
    keep = np.array([s in AAMI for s in raw.ann_symbol], dtype=bool)
    symbols = np.asarray(raw.ann_symbol, dtype=object)[keep].astype(str)
    peaks = np.round(raw.ann_sample[keep] * up / down).astype(np.int64)
    peaks = np.clip(peaks, 0, len(sig125) - 1)
    window = int(WINDOW_S * FS)
    x = segment_beats(normalise_windows(sig125, window), peaks, window)
    x2 = None
    if raw.sig2 is not None:
        x2 = segment_beats(
            normalise_windows(sps.resample_poly(raw.sig2, up, down), window), peaks, window
        )
    y = np.array([AAMI[s] for s in symbols], dtype=np.int64)
    rhythm = beat_rhythms(raw, keep)
    return RecordBeats(
        raw.record, x, y, peaks, symbols, raw.lead, raw.note, x2, raw.lead2, raw.fs, rhythm
    )


def extract_record(source: Path, name: str) -> RecordBeats:
    """Extract the labelled beats of one MIT-BIH record (360 Hz, lead MLII).

    Raises:
        RecordError: the record is damaged (named in the message).
    """
    return extract_beats(read_record(source, name))
