"""RR-interval features on hand-made records with known R-peak positions."""

from __future__ import annotations

import numpy as np
import pytest

from ecgjax.data import BeatData, load_parquet, write_parquet
from ecgjax.data.rr import RR_FEATURES, RR_IRREGULARITY, rr_features, rr_irregularity
from ecgjax.data.synthetic import make_beats, make_records

# fs = 100 Hz so samples / 100 are seconds: intervals 1.0, 1.0, 0.6 (premature), 1.4 (pause).
SAMPLES = np.array([0, 100, 200, 260, 400])
EXPECTED = np.array(
    [
        # prev, next, local (window 2: this and previous beat), record, prev/local, next/prev,
        # then prev, next and local over the record mean (1.0 s here, so equal to the intervals)
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # first beat: prev := next
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [1.0, 0.6, 1.0, 1.0, 1.0, 0.6, 1.0, 0.6, 1.0],
        [0.6, 1.4, 0.8, 1.0, 0.75, 1.4 / 0.6, 0.6, 1.4, 0.8],
        [1.4, 1.4, 1.0, 1.0, 1.4, 1.0, 1.4, 1.4, 1.0],  # last beat: next := prev
    ]
)


def test_record_ratios_divide_by_the_record_mean():
    # Same rhythm at twice the period: intervals double, every ratio stays the same.
    got = rr_features(np.array(["slow"] * 5), SAMPLES * 2, fs=100.0, local_window=2)
    scaled = EXPECTED.copy()
    scaled[:, :4] *= 2
    np.testing.assert_allclose(got, scaled, rtol=1e-6)


def test_hand_made_record_matches_hand_computed_values():
    got = rr_features(np.array(["a"] * 5, dtype=object), SAMPLES, fs=100.0, local_window=2)
    assert got.shape == (5, len(RR_FEATURES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, EXPECTED, rtol=1e-6)


def test_shuffled_and_interleaved_records_return_input_order():
    record = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    sample = np.r_[SAMPLES, SAMPLES + 1000]
    perm = np.random.default_rng(0).permutation(10)
    got = rr_features(record[perm], sample[perm], fs=100.0, local_window=2)
    np.testing.assert_allclose(got, np.r_[EXPECTED, EXPECTED][perm], rtol=1e-6)


def test_default_window_is_centred_and_clipped():
    sample = np.arange(0, 2000, 100)  # 20 beats, 1 s apart except a premature beat
    sample[10] -= 40
    got = rr_features(np.array(["r"] * 20), sample, fs=100.0)
    # beat 10 (prev 0.6 s): window is beats 5..14 -> prev RRs 1,1,1,1,1,0.6,1.4,1,1,1
    assert got[10, 2] == pytest.approx(1.0)
    assert got[10, 4] == pytest.approx(0.6)
    assert got[0, 2] == pytest.approx(1.0)  # clipped at the start, no NaN


def test_single_beat_record_gets_dataset_median_and_never_nan():
    record = np.array(["a"] * 5 + ["lonely"], dtype=object)
    sample = np.r_[SAMPLES, 7]
    got = rr_features(record, sample, fs=100.0, local_window=2)
    np.testing.assert_allclose(got[5], [1.0] * 9)  # intervals: median of 1,1,.6,1.4
    only = rr_features(np.array(["x"]), np.array([5]))
    np.testing.assert_allclose(only[0], [1.0] * 9)
    dup = rr_features(np.array(["d"] * 3), np.array([10, 10, 10]))
    assert np.isfinite(dup).all()
    assert rr_features(np.array([], dtype=object), np.array([], dtype=np.int64)).shape == (
        0,
        len(RR_FEATURES),
    )


def test_parquet_with_record_and_sample_gets_context(tmp_path):
    x, y, record, sample = make_records(num_records=3, beats_per_record=20)
    path = tmp_path / "rec.parq"
    write_parquet(path, BeatData(x, y, 5, "mem", record=record, sample=sample))
    data = load_parquet(path, 5)
    assert data.context is not None
    np.testing.assert_allclose(data.context, rr_features(record, sample))
    premature = data.context[data.y == 1, 4].mean()
    assert premature < data.context[data.y != 1, 4].mean()  # S beats come early


def test_parquet_without_record_or_sample_loads_without_context(tmp_path):
    x, y = make_beats(30)
    path = tmp_path / "plain.parq"
    write_parquet(path, BeatData(x, y, 5, "mem"))
    data = load_parquet(path, 5)
    assert data.context is None and data.record is None and data.sample is None
    np.testing.assert_allclose(data.x, x)


def _times(intervals: np.ndarray, fs: float = 100.0) -> np.ndarray:
    return np.r_[0, np.cumsum(np.round(np.asarray(intervals) * fs))].astype(np.int64)


def test_irregularity_separates_fibrillation_from_isolated_ectopy():
    """Sinus rhythm with one early beat stays regular by the median; an irregular rhythm does not."""
    rng = np.random.default_rng(0)
    sinus = np.full(80, 0.8)
    sinus[40], sinus[41] = 0.5, 1.1  # one premature beat and its pause
    af = rng.uniform(0.45, 1.15, 80)  # every interval differs from the last
    record = np.array(["sinus"] * 81 + ["af"] * 81)
    sample = np.r_[_times(sinus), _times(af)]
    irr = rr_irregularity(record, sample, fs=100.0)
    assert irr.shape == (162, len(RR_IRREGULARITY)) and irr.dtype == np.float32
    assert np.all(irr[:81] < 0.02)  # the median ignores the two jumps around the ectopic beat
    assert np.median(irr[81:, 0]) > 0.2 and irr[81, 1] > 0.2
    np.testing.assert_allclose(irr[:81, 1], irr[0, 1])  # the record column is one value


def test_irregularity_is_per_record_in_input_order_and_causal_ignores_the_future():
    rng = np.random.default_rng(1)
    record = np.array(["a"] * 40 + ["b"] * 40)
    sample = np.r_[_times(rng.uniform(0.5, 1.1, 39)), _times(np.full(39, 0.9))]
    perm = rng.permutation(80)
    for causal in (False, True):
        whole = rr_irregularity(record, sample, fs=100.0, causal=causal)
        np.testing.assert_array_equal(
            rr_irregularity(record[perm], sample[perm], fs=100.0, causal=causal), whole[perm]
        )
        alone = rr_irregularity(record[40:], sample[40:], fs=100.0, causal=causal)
        np.testing.assert_array_equal(whole[40:], alone)
    moved = sample.copy()
    moved[39] += 30  # the last beat of record a comes later
    before = rr_irregularity(record, sample, fs=100.0, causal=True)
    after = rr_irregularity(record, moved, fs=100.0, causal=True)
    np.testing.assert_array_equal(before[:39], after[:39])
    assert not np.array_equal(
        rr_irregularity(record, sample, 100.0)[:39], rr_irregularity(record, moved, 100.0)[:39]
    )


def test_irregularity_of_tiny_records_and_bad_windows():
    got = rr_irregularity(np.array(["one", "two", "two"]), np.array([5, 0, 90]), fs=100.0)
    np.testing.assert_array_equal(got, np.zeros((3, 2), np.float32))  # no successive difference
    assert rr_irregularity(np.array([], dtype=str), np.array([]), 100.0).shape == (0, 2)
    with pytest.raises(ValueError, match="window must be >= 2"):
        rr_irregularity(np.array(["a"]), np.array([0]), window=1)
