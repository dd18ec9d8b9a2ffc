"""prepare(): outputs, idempotency, damaged records, and failures that must not lose data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from physionet_mirror import Mirror

import ecgjax.data.prepare as P
import ecgjax.data.prepare_store as S
from ecgjax.data import load_parquet
from ecgjax.data.prepare import PrepareError, prepare

RATE = 360


def _record(folder: Path, name: str, seconds: int = 30) -> None:
    """A synthetic WFDB record with a spike per beat; every 5th beat is a premature S."""
    n = seconds * RATE
    peaks = np.cumsum(np.where(np.arange(seconds) % 5 == 2, 180, 300))
    peaks = peaks[peaks < n - 50]
    t = np.arange(n)
    sig = sum(np.exp(-0.5 * ((t - p) / 4.0) ** 2) for p in peaks)
    wfdb.wrsamp(name, RATE, ["mV", "mV"], ["MLII", "V1"], p_signal=np.column_stack([sig, sig]),
                fmt=["212", "212"], write_dir=str(folder))  # fmt: skip
    symbols = ["A" if i % 5 == 2 else "N" for i in range(len(peaks))]
    wfdb.wrann(name, "atr", peaks, symbols, write_dir=str(folder))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "mitdb"
    src.mkdir()
    names = ["100", "101", "102", "103"]  # DS2, DS1, paced, DS2
    for name in names:
        _record(src, name)
    (src / "RECORDS").write_text("\n".join(names) + "\n")
    return src


def _records(path: Path) -> set[str]:
    record = load_parquet(path, 5).record
    assert record is not None
    return set(record)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_outputs_splits_and_manifest(source, tmp_path):
    out = tmp_path / "data"
    result = prepare(source, out, progress=False)
    assert not result.up_to_date and result.damaged == []
    train, test = (load_parquet(out / P.OUTPUTS[k], 5) for k in ("train", "test"))
    ds1, ds2 = (load_parquet(out / P.OUTPUTS[k], 5) for k in ("ds1", "ds2"))
    everyone = {"100", "101", "102", "103"}
    expected = {"train": everyone, "test": everyone, "ds1": {"101"}, "ds2": {"100", "103"}}
    for key, records in expected.items():
        assert _records(out / P.OUTPUTS[key]) == records
    assert len(train) + len(test) == sum(result.counts["train"]) + sum(result.counts["test"])
    assert abs(len(test) / (len(train) + len(test)) - 0.2) < 0.02
    for d in (train, test, ds1, ds2):
        assert d.x.min() >= 0 and d.x.max() <= 1 and not d.x[:, -1].any()
    df = pd.read_parquet(out / P.OUTPUTS["train"])
    lead2 = [f"lead2_{i}" for i in range(187)]
    meta = ["target", "record", "sample", "symbol", "rhythm"]
    assert list(df.columns) == [*map(str, range(187)), *meta, *lead2, "has_lead2"]
    assert (df["has_lead2"] == 1).all()  # every synthetic record has a second lead (V1)
    for d in (train, test, ds1, ds2):  # V1 is MLII's copy: the same cut gives the same beat
        assert d.lead2 is not None and np.array_equal(d.lead2, d.x)
    manifest = json.loads((out / P.MANIFEST).read_text())
    assert set(manifest["inputs"]) == {
        f"10{i}.{e}" for i in range(4) for e in ("hea", "dat", "atr")
    }
    for entry in manifest["outputs"].values():
        assert P.sha256(out / entry["file"]) == entry["sha256"]
    assert manifest["outputs"]["ds1"]["class_counts"] == result.counts["ds1"]
    assert manifest["records"]["101"] == {"lead": "MLII", "lead2": "V1", "note": None}
    summary = json.loads((out / P.SUMMARY_JSON).read_text())
    assert summary["counts"] == result.counts and (out / P.SUMMARY_PNG).stat().st_size > 0
    assert not list(out.glob(".*tmp*"))


def test_second_run_does_nothing_and_force_rebuilds(source, tmp_path):
    out = tmp_path / "data"
    prepare(source, out, progress=False)
    before = _snapshot(out)
    assert prepare(source, out, progress=False).up_to_date
    assert _snapshot(out) == before
    assert not prepare(source, out, force=True, progress=False).up_to_date


def test_changed_input_or_tampered_output_rebuilds(source, tmp_path):
    out = tmp_path / "data"
    prepare(source, out, progress=False)
    (out / P.OUTPUTS["ds2"]).write_bytes(b"oops")
    assert not prepare(source, out, progress=False).up_to_date
    assert load_parquet(out / P.OUTPUTS["ds2"], 5).x.shape[1] == 187
    _record(source, "103", seconds=20)
    assert not prepare(source, out, progress=False).up_to_date


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_record_is_reported_and_skipped(source, tmp_path):
    _truncate(source / "103.dat")
    (source / "101.atr").unlink()
    result = prepare(source, tmp_path / "data", progress=False)
    assert [m.split(":")[0] for m in result.damaged] == ["record 101", "record 103"]
    assert _records(tmp_path / "data" / P.OUTPUTS["test"]) == {"100", "102"}


def test_strict_failure_leaves_earlier_outputs_byte_identical(source, tmp_path):
    out = tmp_path / "data"
    prepare(source, out, progress=False)
    before = _snapshot(out)
    _truncate(source / "103.dat")
    with pytest.raises(PrepareError, match="record 103: truncated"):
        prepare(source, out, strict=True, progress=False)
    assert _snapshot(out) == before


def test_crash_mid_write_leaves_earlier_outputs_byte_identical(source, tmp_path, monkeypatch):
    out = tmp_path / "data"
    prepare(source, out, progress=False)
    before = _snapshot(out)
    real_write = P.write_parquet
    calls = []

    def crashing_write(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real_write(path, data, **kwargs)

    monkeypatch.setattr(P, "write_parquet", crashing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(source, out, force=True, progress=False)
    assert _snapshot(out) == before  # temp files cleaned up too


def test_crash_between_renames_is_repaired_by_next_run(source, tmp_path, monkeypatch):
    out = tmp_path / "data"
    prepare(source, out, progress=False)
    _record(source, "100", seconds=20)  # new input: the next run must rebuild
    real_replace = os.replace
    calls = []

    def crashing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(S.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="power cut"):
        prepare(source, out, progress=False)
    monkeypatch.undo()
    assert not prepare(source, out, progress=False).up_to_date  # old manifest: mismatch
    assert prepare(source, out, progress=False).up_to_date


def test_no_records_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="no WFDB records"):
        prepare(tmp_path / "empty", tmp_path / "data", progress=False)
    with pytest.raises(PrepareError, match="records folder not found"):
        prepare(tmp_path / "missing", tmp_path / "data", progress=False)


def test_script_entry_point(source, tmp_path, capsys):
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location(
        "prepare_data", Path(__file__).parents[1] / "scripts/prepare_data.py"
    )
    assert spec is not None and spec.loader is not None
    script = module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "data"
    assert script.main(["--source", str(source), "--out", str(out)]) == 0
    assert script.main(["--source", str(source), "--out", str(out)]) == 0
    assert "Nothing to do" in capsys.readouterr().out
    assert script.main(["--source", str(tmp_path / "nope"), "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        script.main([])


def _real_subset(tmp_path: Path, names: list[str]) -> Path:
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    src = tmp_path / "mitdb"
    src.mkdir()
    for name in names:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(Path(value) / f"{name}.{ext}", src / f"{name}.{ext}")
    return src


def test_real_records_counts_and_interpatient_split(tmp_path):
    src = _real_subset(tmp_path, ["100", "101", "102"])
    result = prepare(src, tmp_path / "data", progress=False)
    manifest = json.loads((tmp_path / "data" / P.MANIFEST).read_text())
    leads = {r: (v["lead"], v["lead2"]) for r, v in manifest["records"].items()}
    assert leads == {"100": ("MLII", "V5"), "101": ("MLII", "V1"), "102": ("V5", "V2")}
    total = np.add(result.counts["train"], result.counts["test"])
    # README counts: 100 + 101 + 102
    np.testing.assert_array_equal(total, [2239 + 1860 + 99, 33 + 3, 1 + 4, 0, 2 + 2084])
    assert result.counts["ds1"] == [1860, 3, 0, 0, 2] and result.counts["ds2"] == [
        2239,
        33,
        1,
        0,
        0,
    ]
    share = np.divide(result.counts["test"], total, where=total > 0, out=np.zeros(5))
    assert np.all(np.abs(share[total > 10] - 0.2) < 0.01)
    ds1, ds2 = (_records(tmp_path / "data" / P.OUTPUTS[k]) for k in ("ds1", "ds2"))
    assert ds1 == {"101"} and ds2 == {"100"}


def test_real_damaged_record_strict(tmp_path):
    src = _real_subset(tmp_path, ["100", "101"])
    _truncate(src / "101.dat")
    with pytest.raises(PrepareError, match=r"record 101: truncated 101\.dat"):
        prepare(src, tmp_path / "data", strict=True, progress=False)
    assert not (tmp_path / "data" / P.MANIFEST).exists()


def test_download_prepares_from_a_mirror_then_reuses_it(source, tmp_path, monkeypatch):
    monkeypatch.delenv("ECGJAX_OFFLINE", raising=False)
    out = tmp_path / "data"
    with Mirror(source, ["100", "101", "102", "103"]) as mirror:
        monkeypatch.setenv("ECGJAX_PHYSIONET_URL", mirror.url)
        result = prepare(None, out, download=True, progress=False)
        assert not result.up_to_date and (out / "mitdb" / "RECORDS").is_file()
        served = len(mirror.requests)
        assert prepare(None, out, download=True, progress=False).up_to_date
        assert len(mirror.requests) == served  # the verified copy is reused offline
    with pytest.raises(PrepareError, match="downloading mitdb failed"):
        prepare(None, tmp_path / "other", download=True, progress=False)  # server gone
