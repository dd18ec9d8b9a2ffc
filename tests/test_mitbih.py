"""Beat extraction from WFDB records: synthetic records always, real ones when available."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgjax.data import folds, mitbih

RATE = 360


def write_record(folder: Path, name: str, leads=("MLII", "V1"), seconds: int = 40) -> list[str]:
    """A synthetic WFDB record: a spike at each beat, annotated N/V plus non-beat marks.

    Returns the beat symbols in order.
    """
    n = seconds * RATE
    peaks = np.arange(100, n - 50, 288)  # 0.8 s apart
    t = np.arange(n)
    sig = 0.1 * np.sin(2 * np.pi * t / (3 * RATE))
    for p in peaks:
        sig += np.exp(-0.5 * ((t - p) / 4.0) ** 2)
    signals = np.column_stack([sig, 0.5 * sig])[:, : len(leads)]
    wfdb.wrsamp(name, RATE, ["mV"] * len(leads), list(leads), p_signal=signals,
                fmt=["212"] * len(leads), write_dir=str(folder))  # fmt: skip
    symbols = ["V" if i % 7 == 3 else "N" for i in range(len(peaks))]
    ann_s = np.r_[peaks, [5, 1000]]
    ann_sym = [*symbols, "+", "~"]
    order = np.argsort(ann_s, kind="stable")
    wfdb.wrann(name, "atr", ann_s[order], [ann_sym[i] for i in order], write_dir=str(folder))
    return symbols


def test_synthetic_record_beats(tmp_path):
    symbols = write_record(tmp_path, "100")
    rb = mitbih.extract_record(tmp_path, "100")
    assert rb.lead == "MLII" and rb.note is None and rb.record == "100"
    assert list(rb.symbol) == symbols  # '+' and '~' skipped
    np.testing.assert_array_equal(rb.y, [2 if s == "V" else 0 for s in symbols])
    assert rb.x.shape == (len(symbols), 187) and rb.x.dtype == np.float32
    assert rb.x.min() >= 0 and rb.x.max() <= 1 and not rb.x[:, -1].any()
    assert (np.diff(rb.sample) == 100).all()  # 288 samples at 360 Hz = 100 at 125 Hz
    assert (rb.x[:, 0] > 0.8).all()  # each segment starts at its R-peak
    # 1.2 * T with T = 100 samples (a window minimum may be exactly 0, hence >= 118)
    assert not rb.x[5, 120:].any() and np.count_nonzero(rb.x[5, :120]) >= 118


def test_each_beat_carries_the_rhythm_annotated_before_it(tmp_path):
    write_record(tmp_path, "100")
    ann = wfdb.rdann(str(tmp_path / "100"), "atr")
    beats = [i for i, s in enumerate(ann.symbol) if s in mitbih.AAMI]
    cut = int(ann.sample[beats[10]]) + 1  # AF starts after the 11th beat, sinus again later
    back = int(ann.sample[beats[20]]) + 1
    sample = np.r_[ann.sample, [cut, back]]
    symbol = [*ann.symbol, "+", "+"]
    aux = [""] * len(ann.symbol) + ["(AFIB\x00", "(N"]
    order = np.argsort(sample, kind="stable")
    wfdb.wrann(
        "100",
        "atr",
        sample[order],
        [symbol[i] for i in order],
        aux_note=[aux[i] for i in order],
        write_dir=str(tmp_path),
    )
    rb = mitbih.extract_record(tmp_path, "100")
    assert rb.rhythm is not None and len(rb.rhythm) == len(rb.y)
    # The synthetic record's first '+' has no rhythm note, so its first beats are unknown.
    assert set(rb.rhythm[:11]) == {""}
    assert set(rb.rhythm[11:21]) == {"AFIB"} and set(rb.rhythm[21:]) == {"N"}


def test_missing_mlii_uses_first_channel_and_says_so(tmp_path):
    write_record(tmp_path, "102", leads=("V5", "V2"))
    rb = mitbih.extract_record(tmp_path, "102")
    assert rb.lead == "V5" and "no MLII" in str(rb.note) and rb.lead2_name == "V2"


def test_second_lead_is_cut_like_the_first(tmp_path):
    write_record(tmp_path, "100")  # V1 is half of MLII: the same after window normalisation
    rb = mitbih.extract_record(tmp_path, "100")
    assert rb.lead2_name == "V1" and rb.lead2 is not None and rb.lead2.shape == rb.x.shape
    assert rb.lead2.dtype == np.float32 and np.abs(rb.lead2 - rb.x).max() < 0.01
    np.testing.assert_array_equal(rb.lead2 == 0, rb.x == 0)  # same segment lengths
    write_record(tmp_path, "101", leads=("MLII",))
    one = mitbih.extract_record(tmp_path, "101")
    assert one.lead2 is None and one.lead2_name is None


def test_leads_are_matched_loosely_in_order_or_forced():
    order = mitbih.LEAD_ORDER
    assert mitbih.choose_leads("r", ["V1", "ii "], order) == (1, 0, None)
    assert mitbih.choose_leads("r", ["V5", "ML II"], order) == (1, 0, None)
    assert mitbih.choose_leads("r", ["I", "v5", "V1"], order) == (1, 0, None)
    assert mitbih.choose_leads("r", ["ECG1", "ECG2"], order)[:2] == (0, 1)
    assert "using ECG1" in str(mitbih.choose_leads("r", ["ECG1", "ECG2"], order)[2])
    assert mitbih.choose_leads("r", ["ECG"], order)[:2] == (0, None)  # one lead: no lead 2
    assert mitbih.choose_leads("r", ["MLII", "V1"], order, force="v1") == (1, 0, None)
    with pytest.raises(mitbih.RecordError, match=r"^record r: no lead 'V4' \(leads: MLII, V1\)"):
        mitbih.choose_leads("r", ["MLII", "V1"], order, force="V4")


def test_resample_ratio_is_exact_for_common_rates():
    for fs, ratio in ((360, (25, 72)), (257, (125, 257)), (128, (125, 128)), (250, (1, 2))):
        r = mitbih.resample_ratio(fs)
        assert (r.numerator, r.denominator) == ratio
    assert mitbih.resample_ratio(1000 / 3) == mitbih.Fraction(3, 8)


def test_other_rates_are_refused_for_mitbih_but_read_when_asked(tmp_path):
    write_record(tmp_path, "100")
    header = (tmp_path / "100.hea").read_text().replace(" 360 ", " 250 ", 1)
    (tmp_path / "100.hea").write_text(header)
    with pytest.raises(mitbih.RecordError, match=r"^record 100: header says fs=250"):
        mitbih.extract_record(tmp_path, "100")
    raw = mitbih.read_record(tmp_path, "100", fs=None)
    assert raw.fs == 250 and raw.lead == "MLII" and raw.lead2 == "V1"


def test_lead_order_follows_names(tmp_path):
    write_record(tmp_path, "114", leads=("V5", "MLII"))
    assert mitbih.extract_record(tmp_path, "114").lead == "MLII"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "100.atr").unlink(), "missing file 100.atr"),
        (lambda d: (d / "100.dat").unlink(), "missing file 100.dat"),
        (lambda d: (d / "100.hea").write_text("garbage ###\n"), "unreadable header"),
        (lambda d: _truncate(d / "100.dat"), "truncated 100.dat"),
    ],
)
def test_damaged_record_names_the_record(tmp_path, damage, message):
    write_record(tmp_path, "100")
    damage(tmp_path)
    with pytest.raises(mitbih.RecordError, match=f"^record 100: {message}"):
        mitbih.extract_record(tmp_path, "100")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_normalise_and_segment():
    sig = np.r_[np.linspace(-3, 5, 10), np.full(5, 2.0)]
    norm = mitbih.normalise_windows(sig, 10)
    assert norm[:10].min() == 0 and norm[:10].max() == 1 and not norm[10:].any()
    beats = mitbih.segment_beats(np.ones(1000), np.array([10, 60, 300]), window=100)
    assert np.count_nonzero(beats[0]) == 60 and np.count_nonzero(beats[1]) == 60  # T = 50
    assert np.count_nonzero(beats[2]) == 174  # lone in its window: record median 145 * 1.2
    long = mitbih.segment_beats(np.ones(1000), np.array([0, 400]), window=1000)
    assert np.count_nonzero(long[0]) == 186  # 1.2 * 400 capped: the tail stays zero


def test_aami_mapping_and_splits_are_consistent():
    assert {s: mitbih.AAMI[s] for s in "NSVFQ"} == {"N": 0, "S": 1, "V": 2, "F": 3, "Q": 4}
    assert set(mitbih.DS1_RECORDS).isdisjoint(mitbih.DS2_RECORDS)
    assert not set(mitbih.PACED_RECORDS) & (set(mitbih.DS1_RECORDS) | set(mitbih.DS2_RECORDS))
    assert len(mitbih.DS1_RECORDS) == len(mitbih.DS2_RECORDS) == 22


def real_records() -> Path:
    """The real MIT-BIH folder from ``ECGJAX_MITDB_DIR``, or skip."""
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    return Path(value)


def test_real_rhythms_spread_the_ds1_af_patients_over_the_folds():
    """DS1's two AF patients (201, 203) fall in one fold when the folds balance classes alone,
    so neither is ever judged by a model that saw AF; the rhythm stratum puts them apart."""
    source = real_records()
    beats = [mitbih.extract_record(source, name) for name in mitbih.DS1_RECORDS]
    rb = {b.record: b for b in beats}
    assert all(b.rhythm is not None for b in beats)
    assert (rb["201"].rhythm == "AFIB").sum() > 500 and (rb["203"].rhythm == "AFL").sum() > 100
    record = np.concatenate([np.full(len(b.y), b.record) for b in beats])
    y = np.concatenate([b.y for b in beats])
    rhythm = np.concatenate([b.rhythm for b in beats])

    def fold_of(strata: np.ndarray | None) -> dict[str, int]:
        out = folds.record_folds(record, y, 4, seed=42, strata=strata)
        return {str(r): f for f, (_, va) in enumerate(out) for r in set(record[va])}

    by_class = fold_of(None)
    assert by_class["201"] == by_class["203"]
    spread = fold_of(np.isin(rhythm, ["AFIB", "AFL"]))
    assert spread["201"] != spread["203"]


# Per-record AAMI counts from the records folder's README (N, S, V, F, Q).
README_COUNTS = {
    "100": [2239, 33, 1, 0, 0],
    "114": [1820, 12, 43, 4, 0],
    "102": [99, 0, 4, 0, 2084],
}


@pytest.mark.parametrize("name", list(README_COUNTS))
def test_real_record_counts_match_annotations(name):
    rb = mitbih.extract_record(real_records(), name)
    np.testing.assert_array_equal(np.bincount(rb.y, minlength=5), README_COUNTS[name])
    assert rb.lead == ("V5" if name == "102" else "MLII")
    assert rb.lead2_name == {"100": "V5", "114": "V5", "102": "V2"}[name]
    assert rb.lead2 is not None and rb.lead2.min() >= 0 and rb.lead2.max() <= 1
    np.testing.assert_array_equal(rb.lead2[:, -1], 0)
    assert rb.x.min() >= 0 and rb.x.max() <= 1 and not rb.x[:, -1].any()
    assert (rb.x[:, 0] > 0.3).mean() > 0.9  # segments start on the R-peak
