"""Heartbeats from MIT-BIH Arrhythmia Database records (WFDB), after Kachuee et al. 2018.

Steps (arXiv:1805.00794, sec. III-A): take lead MLII, resample 360 -> 125 Hz, cut the signal
into 10 s windows and normalise each to [0, 1], take the median R-R interval T of the window,
and cut a 1.2*T segment starting at each R-peak, zero-padded to 187 samples.

One deliberate change: the beat positions are the cardiologists' annotated R-peaks (mapped to
125 Hz), not the paper's threshold detector (local maxima above 0.9). The published Kaggle set
built by that method holds 109,446 beats, i.e. essentially every annotated beat (the
annotations give 109,494), so using the annotations reproduces its class totals while giving
each beat a reliable label, record id, R-peak index and original symbol. T is the median
interval between the annotated beats of the window (the record's median when a window has
fewer than two). A segment that runs past its window's end continues into the next
(separately normalised) window, so every value stays in [0, 1]; the segment is capped at 186
samples so each beat keeps a zero-padded tail.

Records 102 and 104 have no MLII lead; their first channel is used and reported in the
record's ``note``. Non-beat annotations (rhythm, noise, comments) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
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
class RecordBeats:
    """The beats of one record."""

    record: str
    x: np.ndarray  # float32 (n, 187)
    y: np.ndarray  # int64 (n,)
    sample: np.ndarray  # int64 (n,) R-peak index at 125 Hz
    symbol: np.ndarray  # str (n,)
    lead: str
    note: str | None = None


def list_records(source: Path) -> list[str]:
    """Record names in ``source``: its ``RECORDS`` file, else every ``*.hea``."""
    listing = source / "RECORDS"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return sorted(p.stem for p in source.glob("*.hea"))


def record_files(source: Path, name: str) -> list[Path]:
    """The three files a record needs (whether or not they exist)."""
    return [source / f"{name}.{ext}" for ext in ("hea", "dat", "atr")]


def read_record(
    source: Path, name: str
) -> tuple[np.ndarray, str, str | None, np.ndarray, list[str]]:
    """Read one record: ``(signal at 360 Hz, lead, note, annotation samples, symbols)``.

    Raises:
        RecordError: a file is missing, truncated or unreadable.
    """
    base = str(source / name)
    for f in record_files(source, name):
        if not f.is_file():
            raise RecordError(f"record {name}: missing file {f.name} in {source}")
    try:
        header: Any = wfdb.rdheader(base)  # wfdb's types are loose (Record | MultiRecord)
    except Exception as e:
        raise RecordError(f"record {name}: unreadable header {name}.hea ({e})") from e
    if header.fs != FS_IN or not header.sig_name or not header.sig_len:
        raise RecordError(f"record {name}: header says fs={header.fs}, signals={header.sig_name}")
    _check_dat_size(source, name, header)
    channel, note = 0, None
    if LEAD in header.sig_name:
        channel = header.sig_name.index(LEAD)
    else:
        note = f"no {LEAD} lead; using {header.sig_name[0]}"
    try:
        rec: Any = wfdb.rdrecord(base, channels=[channel])
        ann: Any = wfdb.rdann(base, "atr")
    except Exception as e:
        raise RecordError(f"record {name}: cannot be read ({type(e).__name__}: {e})") from e
    sig = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    if len(sig) != header.sig_len or not np.isfinite(sig).all():
        raise RecordError(f"record {name}: signal has missing or invalid samples")
    return sig, header.sig_name[channel], note, np.asarray(ann.sample), list(ann.symbol)


def _check_dat_size(source: Path, name: str, header: Any) -> None:
    """wfdb reports a short .dat as a broadcasting error; say what it really is."""
    fmt = str(header.fmt[0])
    if fmt not in _BYTES_PER_SAMPLE or len(set(header.file_name)) != 1:
        return
    need = int(np.ceil(header.sig_len * header.n_sig * _BYTES_PER_SAMPLE[fmt]))
    have = (source / header.file_name[0]).stat().st_size
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


def extract_record(source: Path, name: str) -> RecordBeats:
    """Extract the labelled beats of one record.

    Raises:
        RecordError: the record is damaged (named in the message).
    """
    sig, lead, note, ann_sample, ann_symbol = read_record(source, name)
    sig125 = sps.resample_poly(sig, FS, FS_IN)  # polyphase: exact 125/360, no FFT edge ringing
    keep = np.array([s in AAMI for s in ann_symbol], dtype=bool)
    symbols = np.asarray(ann_symbol, dtype=object)[keep].astype(str)
    peaks = np.round(ann_sample[keep] * FS / FS_IN).astype(np.int64)
    peaks = np.clip(peaks, 0, len(sig125) - 1)
    window = int(WINDOW_S * FS)
    x = segment_beats(normalise_windows(sig125, window), peaks, window)
    y = np.array([AAMI[s] for s in symbols], dtype=np.int64)
    return RecordBeats(name, x, y, peaks, symbols, lead, note)
