"""RR-interval (rhythm context) features per beat.

A beat cut out on its own loses the rhythm around it, yet an S beat is recognised mostly by
being premature. These features restore that context from the beat's record and R-peak
position alone, so any parquet with ``record`` and ``sample`` columns gets them.

Definitions (per record, beats sorted by ``sample``; intervals in seconds):

- ``rr_prev``: interval to the previous beat. The first beat of a record has none; it gets
  its ``rr_next`` instead.
- ``rr_next``: interval to the next beat. The last beat gets its ``rr_prev`` instead.
- ``rr_local``: mean ``rr_prev`` over a window of ``local_window`` beats around the beat
  (``i - w//2`` to ``i - w//2 + w - 1``, clipped to the record).
- ``rr_record``: mean interval of the whole record.
- ``ratio_prev_local``: ``rr_prev / rr_local`` (below 1 for a premature beat).
- ``ratio_next_prev``: ``rr_next / rr_prev`` (above 1 after a premature beat: the pause).
- ``ratio_prev_record``, ``ratio_next_record``, ``ratio_local_record``: ``rr_prev``,
  ``rr_next`` and ``rr_local`` divided by ``rr_record``. The patient's own rate is the
  reference a cardiologist uses; these make "early" comparable across patients whose rates
  differ (the normalised R-R features of Mondejar-Guerra et al. 2019).

``causal=True`` gives the same nine columns from past beats only, for a real-time monitor
that cannot wait for the next beat or the end of the record: ``rr_next`` becomes the
interval before the previous one (``rr_prev2``), ``rr_local`` the mean of the last
``local_window`` intervals up to this beat, and ``rr_record`` the running mean of every
interval so far; the ratios follow from these (``ratio_next_prev`` is then
``rr_prev2 / rr_prev``, so a premature beat reads above 1 as its offline twin does after it).

A record with a single beat has no interval at all; its intervals are the median interval of
the whole dataset (1.0 s if no record has two beats) and its ratios are 1. Intervals used as
denominators are floored at one sample so duplicated positions never produce inf or NaN.
"""

from __future__ import annotations

import itertools

import numpy as np

RR_FEATURES = (
    "rr_prev",
    "rr_next",
    "rr_local",
    "rr_record",
    "ratio_prev_local",
    "ratio_next_prev",
    "ratio_prev_record",
    "ratio_next_record",
    "ratio_local_record",
)


def rr_features(
    record: np.ndarray,
    sample: np.ndarray,
    fs: float = 125.0,
    local_window: int = 10,
    *,
    causal: bool = False,
) -> np.ndarray:
    """Compute the RR features of every beat.

    Args:
        record: ``(N,)`` record (patient) id of each beat.
        sample: ``(N,)`` R-peak index of each beat at ``fs``.
        fs: sampling rate of ``sample`` in Hz.
        local_window: number of beats in the local-mean window.
        causal: use past beats only (see the module docstring).

    Returns:
        float32 ``(N, 9)`` in the order of :data:`RR_FEATURES`, rows in the input order.
    """
    record, sample = _checked(record, sample)
    out = np.zeros((len(sample), len(RR_FEATURES)), dtype=np.float64)
    groups = record_groups(record, sample)
    all_intervals = [np.diff(sample[g]) / fs for g in groups if len(g) > 1]
    fallback = float(np.median(np.concatenate(all_intervals))) if all_intervals else 1.0
    floor = 1.0 / fs
    features = _causal_features if causal else _record_features
    for g in groups:
        out[g] = features(sample[g] / fs, fallback, floor, local_window)
    return out.astype(np.float32)


def record_groups(record: np.ndarray, sample: np.ndarray) -> list[np.ndarray]:
    """Row indices of each record, sorted by R-peak position (no groups for no beats)."""
    record = np.asarray(record).astype(str)
    if len(record) == 0:
        return []
    order = np.lexsort((np.asarray(sample), record))
    rec_sorted = record[order]
    starts = np.flatnonzero(np.r_[True, rec_sorted[1:] != rec_sorted[:-1]])
    return [order[a:b] for a, b in itertools.pairwise(np.r_[starts, len(order)])]


def _checked(record: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``record`` as strings and ``sample`` as floats, or a ``ValueError`` for unequal shapes."""
    record = np.asarray(record).astype(str)
    sample = np.asarray(sample, dtype=np.float64)
    if record.shape != sample.shape or record.ndim != 1:
        raise ValueError(
            f"record {record.shape} and sample {sample.shape} must be equal 1-D shapes"
        )
    return record, sample


def _record_features(t: np.ndarray, fallback: float, floor: float, window: int) -> np.ndarray:
    """Features of one record whose beat times ``t`` (seconds) are sorted."""
    n = len(t)
    if n == 1:
        return _single(fallback)
    d = np.diff(t)
    prev = np.r_[d[0], d]
    half = window // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) - half + window, 0, n)
    csum = np.r_[0.0, np.cumsum(prev)]
    local = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    return _columns(prev, np.r_[d, d[-1]], local, np.full(n, d.mean()), floor)


def _causal_features(t: np.ndarray, fallback: float, floor: float, window: int) -> np.ndarray:
    """Like :func:`_record_features`, from the beats up to and including each one."""
    n = len(t)
    if n == 1:
        return _single(fallback)
    d = np.diff(t)
    prev = np.r_[d[0], d]  # the first beat borrows the first interval, as offline
    csum = np.r_[0.0, np.cumsum(prev)]
    idx = np.arange(n)
    lo = np.maximum(idx + 1 - window, 0)
    local = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
    running = csum[idx + 1] / (idx + 1)
    return _columns(prev, np.r_[prev[0], prev[:-1]], local, running, floor)


def _single(fallback: float) -> np.ndarray:
    """A record with one beat: the dataset's median interval, every ratio 1."""
    return np.array([[fallback] * 4 + [1.0] * 5], dtype=np.float64)


def _columns(
    prev: np.ndarray, other: np.ndarray, local: np.ndarray, ref: np.ndarray, floor: float
) -> np.ndarray:
    """The nine columns of :data:`RR_FEATURES` from the four intervals each variant defines
    (``other`` is the next interval offline, the one before ``prev`` when causal; ``ref`` the
    record mean offline, the running mean when causal)."""
    safe = np.maximum(ref, floor)
    return np.column_stack(
        [
            prev,
            other,
            local,
            ref,
            prev / np.maximum(local, floor),
            other / np.maximum(prev, floor),
            prev / safe,
            other / safe,
            local / safe,
        ]
    )


RR_IRREGULARITY = ("irr_local", "irr_record")


def rr_irregularity(
    record: np.ndarray,
    sample: np.ndarray,
    fs: float = 125.0,
    window: int = 32,
    *,
    causal: bool = False,
) -> np.ndarray:
    """How irregular the rhythm around each beat is: two extra RR columns (``data.rr_irregularity``).

    In atrial fibrillation every interval differs from the last, so a normal beat often comes
    "early" and the prematurity features above read it as supraventricular (the DS2 records with
    AF lose a third of their normal beats that way). An isolated ectopic beat changes two
    successive differences; AF changes all of them. The *median* absolute successive difference
    therefore stays small around isolated ectopy and is large only when the whole rhythm is
    irregular, which is what tells the two apart without labels from the patient.

    - ``irr_local``: median ``|rr_prev[i] - rr_prev[i-1]|`` over a window of ``window`` beats
      (centred offline, the last ``window`` beats when ``causal``), divided by the mean
      ``rr_prev`` of that window.
    - ``irr_record``: the same over the whole record (causal: the running mean of the absolute
      differences over the running mean interval, so it never waits for the record's end).

    Returns:
        float32 ``(N, 2)`` in the order of :data:`RR_IRREGULARITY`, rows in the input order.
    """
    record, sample = _checked(record, sample)
    if window < 2:
        raise ValueError(f"data.rr_irregularity window must be >= 2 beats, got {window}")
    out = np.zeros((len(sample), len(RR_IRREGULARITY)), dtype=np.float64)
    for g in record_groups(record, sample):
        out[g] = _irregularity(sample[g] / fs, window, causal, 1.0 / fs)
    return out.astype(np.float32)


def _irregularity(t: np.ndarray, window: int, causal: bool, floor: float) -> np.ndarray:
    """Both irregularity columns for one record whose beat times ``t`` (seconds) are sorted."""
    n = len(t)
    if n < 3:  # fewer than two intervals: no successive difference, call it regular
        return np.zeros((n, 2))
    d = np.diff(t)
    prev = np.r_[d[0], d]
    jump = np.abs(np.r_[0.0, np.diff(prev)])
    jump[:2] = jump[2] if n > 2 else 0.0  # the first two borrow the first real difference
    idx = np.arange(n)
    lo = np.maximum(idx + 1 - window, 0) if causal else np.clip(idx - window // 2, 0, n)
    hi = idx + 1 if causal else np.clip(idx - window // 2 + window, 0, n)
    padded = np.r_[jump, np.full(window, np.nan)]
    rows = np.lib.stride_tricks.sliding_window_view(padded, window)[lo]  # (n, window) from lo
    rows = np.where(np.arange(window)[None, :] < (hi - lo)[:, None], rows, np.nan)
    csum = np.r_[0.0, np.cumsum(prev)]
    mean_local = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    local = np.nanmedian(rows, axis=1) / np.maximum(mean_local, floor)
    if causal:
        whole = (np.cumsum(jump) / (idx + 1)) / np.maximum(csum[idx + 1] / (idx + 1), floor)
    else:
        whole = np.full(n, np.median(jump) / max(float(prev.mean()), floor))
    return np.column_stack([local, whole])
