"""Small synthetic heartbeats for fast unit tests.

Each class gets its own shape (a bump at a class-specific place and width, plus noise),
so a tiny model can learn them in a few steps; layout matches the real beats: 187 values
in [0, 1], R-peak near the start, zero-padded tail.
"""

from __future__ import annotations

import numpy as np

BEAT_LEN = 187


def make_beats(
    n: int, num_classes: int = 5, seed: int = 0, *, noise: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``x`` float32 ``(n, 187)`` in [0, 1], ``y`` int64 labels, all classes present."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    t = np.arange(BEAT_LEN, dtype=np.float64)
    x = np.zeros((n, BEAT_LEN))
    length = rng.integers(90, 170, size=n)
    for i in range(n):
        c = int(y[i])
        centre = 30 + 20 * c
        width = 4 + 3 * c
        beat = 0.9 * np.exp(-0.5 * ((t - 2) / 2.0) ** 2)  # the R-peak at the start
        beat += (0.3 + 0.1 * c) * np.exp(-0.5 * ((t - centre) / width) ** 2)
        beat += noise * rng.standard_normal(BEAT_LEN) + 0.1
        beat[length[i] :] = 0.0
        x[i] = beat
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


def make_records(
    num_records: int = 4, beats_per_record: int = 40, num_classes: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Beats grouped into records with R-peak positions: ``(x, y, record, sample)``.

    Premature (class 1) beats come early, like real S beats, so RR features carry signal.
    """
    rng = np.random.default_rng(seed)
    n = num_records * beats_per_record
    x, y = make_beats(n, num_classes, seed)
    record = np.repeat([f"{100 + r}" for r in range(num_records)], beats_per_record)
    sample = np.zeros(n, dtype=np.int64)
    for r in range(num_records):
        pos = 0
        for j in range(beats_per_record):
            i = r * beats_per_record + j
            rr = 100 + int(rng.integers(-5, 6))
            if y[i] == 1:
                rr = int(rr * 0.6)
            pos += rr
            sample[i] = pos
    return x, y, record.astype(object), sample
