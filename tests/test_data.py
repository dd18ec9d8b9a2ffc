"""Loading, validation, views, splits and weights on synthetic beats."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ecgjax import data as D
from ecgjax.config import base_config
from ecgjax.data import BeatData, DataError, load_parquet, write_parquet
from ecgjax.data.rr import RR_FEATURES, rr_features
from ecgjax.data.synthetic import make_beats, make_records


def _seed_frame(n: int = 50, num_classes: int = 5, names=None) -> pd.DataFrame:
    """A file laid out like the seed's: 187 float columns, then ``target``."""
    x, y = make_beats(n, num_classes)
    df = pd.DataFrame(x.astype(np.float64), columns=names or [str(i) for i in range(187)])
    df["target"] = y
    return df


def _write(tmp_path: Path, df: pd.DataFrame, name: str = "f.parq") -> Path:
    path = tmp_path / name
    df.to_parquet(path)
    return path


def test_roundtrip_keeps_everything(tmp_path):
    x, y, record, sample = make_records()
    symbol = np.array(["N"] * len(y))
    rhythm = np.where(np.arange(len(y)) % 3 == 0, "AFIB", "N")
    path = tmp_path / "beats.parq"
    write_parquet(path, BeatData(x, y, 5, "mem", record, sample, symbol, rhythm=rhythm))
    got = load_parquet(path, 5)
    assert got.record is not None and got.sample is not None and got.symbol is not None
    assert got.rhythm is not None and list(got.rhythm) == list(rhythm)
    assert got.context is not None
    assert got.x.dtype == np.float32 and got.x.shape == (len(y), 187)
    assert got.y.dtype == np.int32 and got.sample.dtype == np.int64
    np.testing.assert_array_equal(got.x, x)
    np.testing.assert_array_equal(got.y, y)
    assert list(got.record) == list(record) and list(got.symbol) == list(symbol)
    assert (
        got.context.shape == (len(y), len(RR_FEATURES))
        and got.source == str(path)
        and len(got) == len(y)
    )
    sub = got.subset(np.array([3, 1]))
    assert sub.record is not None and sub.context is not None
    assert len(sub) == 2 and sub.record[0] == got.record[3]
    np.testing.assert_array_equal(sub.context, got.context[[3, 1]])
    assert not list(tmp_path.glob(".*tmp*"))


def test_pandas_reads_our_files_like_a_seed_file(tmp_path):
    seed = _seed_frame()
    x = seed.iloc[:, :187].to_numpy(np.float32)
    ours = tmp_path / "ours.parq"
    write_parquet(ours, BeatData(x, seed["target"].to_numpy(), 5, "mem"))
    df = pd.read_parquet(ours)
    assert list(df.columns) == list(seed.columns)
    assert (df.dtypes == seed.dtypes).all()
    np.testing.assert_allclose(df.to_numpy(), seed.to_numpy(), atol=1e-7)


def test_kaggle_layout_float_target_and_arbitrary_names(tmp_path):
    df = _seed_frame(names=[f"c{i:03d}" for i in range(187)])
    df["target"] = df["target"].astype(np.float64)
    got = load_parquet(_write(tmp_path, df), 5)
    np.testing.assert_array_equal(got.y, df["target"].to_numpy().astype(np.int32))
    assert got.context is None and got.record is None and got.lead2 is None


def _with_lead2(tmp_path: Path, name: str = "lead2.parq") -> tuple[Path, np.ndarray]:
    """A prepared-layout file whose first 10 beats have no second lead; returns lead2 as written."""
    x, y, record, sample = make_records()
    lead2 = (1.0 - x).astype(np.float32)
    has = np.arange(len(y)) >= 10
    lead2[~has] = 0
    lead2[3, :] = 0.5  # a second lead flagged absent: the flag wins, the row loads as zeros
    path = tmp_path / name
    write_parquet(path, BeatData(x, y, 5, "mem", record, sample, lead2=lead2), has_lead2=has)
    lead2[3, :] = 0
    return path, lead2


def test_second_lead_roundtrip_and_subset(tmp_path):
    path, lead2 = _with_lead2(tmp_path)
    df = pd.read_parquet(path)
    assert list(df.columns[-188:]) == [*(f"lead2_{i}" for i in range(187)), "has_lead2"]
    assert df["has_lead2"].tolist() == [0] * 10 + [1] * (len(df) - 10)
    got = load_parquet(path, 5)
    assert got.x.shape == (len(df), 187)  # the second lead is not a feature
    assert got.lead2 is not None and got.lead2.dtype == np.float32
    np.testing.assert_array_equal(got.lead2, lead2)
    sub = got.subset(np.array([12, 0]))
    assert sub.lead2 is not None
    np.testing.assert_array_equal(sub.lead2, lead2[[12, 0]])
    # Without explicit flags a beat has a second lead where its row is not all zeros.
    again = tmp_path / "again.parq"
    write_parquet(again, got)
    assert pd.read_parquet(again)["has_lead2"].tolist() == df["has_lead2"].tolist()
    np.testing.assert_array_equal(load_parquet(again, 5).lead2, lead2)


LEAD2_DAMAGE = {
    "second-lead columns must be": lambda df: df.drop(columns="lead2_7"),
    "second-lead columns must be ": lambda df: df.drop(columns="has_lead2"),
    "non-numeric second-lead": lambda df: df.assign(lead2_3="x"),
    "values other than 0 and 1": lambda df: df.assign(has_lead2=2),
    "non-finite second-lead": lambda df: df.assign(lead2_5=np.nan),
}


@pytest.mark.parametrize("problem", list(LEAD2_DAMAGE))
def test_bad_second_lead_names_file_and_problem(tmp_path, problem):
    path, _ = _with_lead2(tmp_path)
    bad = _write(tmp_path, LEAD2_DAMAGE[problem](pd.read_parquet(path)), "bad.parq")
    with pytest.raises(DataError) as err:
        load_parquet(bad, 5)
    assert str(err.value).startswith(str(bad)) and problem.strip() in str(err.value)


def test_missing_second_lead_values_are_fine_where_flagged_absent(tmp_path):
    path, lead2 = _with_lead2(tmp_path)
    df = pd.read_parquet(path)
    df.loc[df["has_lead2"] == 0, "lead2_5"] = np.nan  # e.g. a database writer's "no value"
    got = load_parquet(_write(tmp_path, df, "nan.parq"), 5)
    np.testing.assert_array_equal(got.lead2, lead2)


BAD_FRAMES = {
    "missing column 'target'": lambda df: df.drop(columns="target"),
    "expected 187 feature columns": lambda df: df.drop(columns="5"),
    "non-numeric feature": lambda df: df.assign(**{"7": "x"}),
    "NaN/inf": lambda df: df.assign(**{"3": np.r_[np.nan, df["3"].to_numpy()[1:]]}),
    "NaN/inf ": lambda df: df.assign(**{"4": np.r_[np.inf, df["4"].to_numpy()[1:]]}),
    "non-integer labels": lambda df: df.assign(target=np.r_[1.5, df["target"].to_numpy()[1:]]),
    "outside [0, 5)": lambda df: df.assign(target=np.r_[5, df["target"].to_numpy()[1:]]),
    "outside [0, 5) ": lambda df: df.assign(target=np.r_[-1, df["target"].to_numpy()[1:]]),
    "no rows": lambda df: df.iloc[:0],
}


@pytest.mark.parametrize("problem", list(BAD_FRAMES))
def test_bad_contents_name_file_and_problem(tmp_path, problem):
    path = _write(tmp_path, BAD_FRAMES[problem](_seed_frame()))
    with pytest.raises(DataError) as err:
        load_parquet(path, 5)
    assert str(err.value).startswith(str(path)) and problem.strip() in str(err.value)


def test_bad_files_name_file_and_problem(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_parquet(tmp_path / "nope.parq", 5)
    empty = tmp_path / "empty.parq"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"^{re.escape(str(empty))}: not a readable parquet"):
        load_parquet(empty, 5)
    good = _write(tmp_path, _seed_frame(200))
    truncated = tmp_path / "truncated.parq"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=f"^{re.escape(str(truncated))}: not a readable parquet"):
        load_parquet(truncated, 5)


def test_float_labels_with_integer_values_are_accepted(tmp_path):
    df = _seed_frame()
    df["target"] = df["target"] * 1.0
    assert load_parquet(_write(tmp_path, df), 5).y.dtype == np.int32


def test_views_pad_with_zeros():
    x, _ = make_beats(4)
    v1, v2 = D.view_1d(x), D.view_2d(x)
    assert v1.shape == (4, 192, 1) and v2.shape == (4, 16, 12, 1) and v2.dtype == np.float32
    np.testing.assert_array_equal(v1[:, :187, 0], x)
    assert not v1[:, 187:].any()
    np.testing.assert_array_equal(v2[:, 0, :, 0], x[:, :12])  # row-major, like torch.view


def test_stratified_split_keeps_class_shares():
    y = np.r_[np.zeros(900), np.ones(90), np.full(10, 2), [3, 3]].astype(int)
    tr, va = D.stratified_split(y, 0.2, seed=1)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    np.testing.assert_array_equal(D.class_counts(y[va], 5), [180, 18, 2, 1, 0])
    again = D.stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(va, again[1])


def test_record_split_never_shares_a_patient():
    _, y, record, _ = make_records(num_records=10, beats_per_record=20)
    tr, va = D.record_split(record, y, 0.2, seed=0)
    assert set(record[tr]).isdisjoint(record[va])
    assert len(tr) + len(va) == len(y) and len(set(record[va])) == 2
    _, va1 = D.record_split(record[:40], y[:40], 0.9, seed=0)  # two records: one each side
    assert len(set(record[:40][va1])) == 1
    rare = np.where(np.isin(record, ["100", "107"]) & (np.arange(len(y)) % 4 == 0), 2, 0)
    _, va2 = D.record_split(record, rare, 0.2, seed=0)
    assert set(record[va2]) & {"100", "107"}  # the rare class is not left out of validation


def test_stratified_subsample_keeps_every_class():
    y = np.r_[np.zeros(1000), np.ones(5), [2]].astype(int)
    idx = D.stratified_subsample(y, 50, seed=0)
    assert len(idx) == 50 and len(np.unique(idx)) == 50
    assert set(y[idx]) == {0, 1, 2}
    np.testing.assert_array_equal(D.stratified_subsample(y, 5000, 0), np.arange(len(y)))


def test_class_weights_have_unit_sample_mean_and_zero_for_absent():
    y = np.r_[np.zeros(90), np.ones(10)].astype(int)
    w = D.class_weights(y, 3)
    assert w.dtype == np.float32 and w[2] == 0
    assert w[1] / w[0] == pytest.approx(9.0)
    assert w[y].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(D.class_weights(y, 3, power=0.0), [1, 1, 0])
    np.testing.assert_allclose(D.class_weights(y, 3, power=0.5)[y].mean(), 1.0, rtol=1e-6)


def _config(train: str = "tr.parq", test: str = "te.parq", dataset: str = "mitbih") -> Any:
    c: Any = base_config()  # ConfigDict attributes are untyped
    c.data.train_file, c.data.test_file, c.data.dataset = train, test, dataset
    return c


def test_load_splits_carves_validation_and_subsamples(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGJAX_DATA_DIR", str(tmp_path))
    x, y, record, sample = make_records(num_records=10, beats_per_record=30)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:240], idx[240:]
    whole = BeatData(x, y, 5, "mem", record, sample)
    write_parquet(tmp_path / "tr.parq", whole.subset(tr))
    write_parquet(tmp_path / "te.parq", whole.subset(te))
    c = _config()
    s = D.load_splits(c)
    assert len(s.train) + len(s.val) == 240 and len(s.test) == 60
    full = BeatData(x, y, 5, "mem", record, sample, context=rr_features(record, sample))
    assert s.test.context is not None and full.context is not None
    np.testing.assert_allclose(s.test.context, full.context[te])  # whole-record RR
    c.data.val_split, c.data.max_train, c.data.max_eval = "record", 50, 20
    s = D.load_splits(c)
    assert s.train.record is not None and s.val.record is not None
    assert set(s.train.record).isdisjoint(s.val.record)
    assert len(s.train) == 50 and len(s.test) == 20 and len(s.val) <= 20


def test_ensure_data_lists_options_when_nothing_is_possible(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGJAX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ECGJAX_MITDB_DIR", raising=False)
    with pytest.raises(DataError) as err:
        D.ensure_data(_config())
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "tr.parq"))
    assert "copy the seed's parquet" in msg and "--source" in msg and "--download" in msg
    with pytest.raises(DataError) as err:
        D.ensure_data(_config(dataset="ptb"))
    assert "copy the seed's parquet" in str(err.value) and "--download" not in str(err.value)


def test_ensure_data_prepares_from_records_dir(tmp_path, monkeypatch):
    import ecgjax.data.prepare

    monkeypatch.setenv("ECGJAX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECGJAX_MITDB_DIR", str(tmp_path / "records"))
    calls = []

    def fake_prepare(source, out_dir, **kwargs):
        calls.append((source, out_dir))
        for name in ("tr.parq", "te.parq"):
            _write(out_dir, _seed_frame(), name)

    monkeypatch.setattr(ecgjax.data.prepare, "prepare", fake_prepare)
    D.ensure_data(_config())
    assert calls == [(tmp_path / "records", tmp_path)]
    D.ensure_data(_config())  # files exist now: nothing more to do
    assert len(calls) == 1


def test_patient_factors_spread_each_class_over_its_patients():
    y = np.array([2] * 100 + [2] * 10 + [0] * 50 + [0] * 50)
    record = np.array(["a"] * 100 + ["b"] * 10 + ["a"] * 50 + ["b"] * 50)
    f = D.patient_factors(y, record, 1.0)
    for c in (0, 2):  # class totals kept: the class mix does not move
        assert f[y == c].sum() == pytest.approx((y == c).sum())
    v = y == 2  # V: record a's 100 beats and b's 10 weigh the same in all
    assert f[v & (record == "a")].sum() == pytest.approx(f[v & (record == "b")].sum())
    np.testing.assert_allclose(f[y == 0], 1.0)  # N is already even between a and b
    np.testing.assert_allclose(D.patient_factors(y, record, 0.0), 1.0)
    half = D.patient_factors(y, record, 0.5)
    ratio = half[v & (record == "a")].sum() / half[v & (record == "b")].sum()
    assert ratio == pytest.approx(np.sqrt(10))  # 100 ** 0.5 against 10 ** 0.5
