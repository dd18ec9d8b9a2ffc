"""Other WFDB databases: real MIT-BIH records resampled to 128/250/500 Hz and renamed leads.

Each database is built from the first minutes of a few real records (ECGJAX_MITDB_DIR): the
signal resampled with ``resample_poly``, the annotation samples rescaled, and the leads renamed
the way other PhysioNet databases name them. Preparing it must give the beats the 360 Hz
extraction gives for the same excerpt, within the tolerances measured below; then a model
trained in a project is evaluated on it with ``scripts/evaluate.py --data``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb
from scipy import signal as sps

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import mitbih
from ecgjax.data.prepare import PrepareError
from ecgjax.data.prepare_db import prepare_database
from ecgjax.training.run import run_training

RECORDS = ("100", "119", "208")  # N with some S; V bigeminy; V and F
SECONDS = 300  # a 5-minute excerpt of each (30 windows of 10 s)
# rate -> (lead names written for MLII and the record's second lead, channel order, --lead)
DATABASES = {
    128: (("II", "V5"), (0, 1), None),  # SVDB's rate; lead II as INCART names it
    250: (("ML 2", "V1"), (1, 0), None),  # European ST-T's rate; MLII second, spelled oddly
    500: (("ECG2", "ECG1"), (1, 0), "ecg2"),  # no preferred name: --lead picks it
}


def _mitdb() -> Path:
    value = os.environ.get("ECGJAX_MITDB_DIR")
    if not value or not (Path(value) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    return Path(value)


def _excerpt(name: str) -> mitbih.RawRecord:
    """The first ``SECONDS`` of a real record at 360 Hz, MLII first."""
    raw = mitbih.read_record(_mitdb(), name)
    assert raw.sig2 is not None
    n = SECONDS * mitbih.FS_IN
    keep = raw.ann_sample < n
    return replace(
        raw,
        sig=raw.sig[:n],
        sig2=raw.sig2[:n],
        ann_sample=raw.ann_sample[keep],
        ann_symbol=[s for s, k in zip(raw.ann_symbol, keep, strict=True) if k],
        ann_aux=[a for a, k in zip(raw.ann_aux or [], keep, strict=True) if k],
    )


def write_resampled(folder: Path, raw: mitbih.RawRecord, fs: int, record: str) -> None:
    """``raw`` as a WFDB record at ``fs`` Hz, leads named and ordered as ``DATABASES[fs]``."""
    ratio = Fraction(fs, mitbih.FS_IN)
    up, down = ratio.numerator, ratio.denominator
    assert raw.sig2 is not None
    leads = [sps.resample_poly(s, up, down) for s in (raw.sig, raw.sig2)]
    names, order, _ = DATABASES[fs]
    wfdb.wrsamp(record, fs, ["mV", "mV"], [names[i] for i in order],
                p_signal=np.column_stack([leads[i] for i in order]), fmt=["16", "16"],
                adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(folder))  # fmt: skip
    sample = np.round(raw.ann_sample * up / down).astype(np.int64)
    wfdb.wrann(record, "atr", sample, raw.ann_symbol, write_dir=str(folder))


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One folder per rate holding the resampled records (named ``db100`` ...)."""
    excerpts = {name: _excerpt(name) for name in RECORDS}
    out = {}
    for fs in DATABASES:
        folder = tmp_path_factory.mktemp(f"db{fs}")
        for name, raw in excerpts.items():
            write_resampled(folder, raw, fs, f"db{name}")
        out[fs] = folder
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, mitbih.RecordBeats]:
    """The 360 Hz extraction of the same excerpts."""
    return {f"db{name}": mitbih.extract_beats(_excerpt(name)) for name in RECORDS}


def _aligned_errors(got: np.ndarray, ref: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``(max abs, correlation)`` per beat, comparing ``got[k]`` with ``ref[k + shift]``.

    An R-peak that moved by one 125 Hz sample starts its segment one sample later, so beats
    are compared at the same time after the peak, over the part inside both segments.
    """
    out = []
    for g, r, d in zip(got, ref, shift, strict=True):
        lg, lr = np.flatnonzero(g).max() + 1, np.flatnonzero(r).max() + 1
        k0, k1 = max(0, -d), min(lg, lr - d)
        a, b = g[k0:k1], r[k0 + d : k1 + d]
        out.append((np.abs(a - b).max(), np.corrcoef(a, b)[0, 1]))
    return np.array(out)


# Measured over the 1,215 beats of the three excerpts (aligned on the R-peak as above):
# max abs difference 0.0092 (beat) / 0.0196 (second lead) at 128 Hz, <= 0.001 at 250 and
# 500 Hz; correlation >= 0.9987. 128 Hz is the worst because its 64 Hz Nyquist limit removes
# QRS content that the 360 Hz record keeps until the 62.5 Hz limit of the 125 Hz output. The
# bounds below leave about 50% headroom over those figures; a wrong rate, lead or peak mapping
# gives errors of 0.3 and more (a one-sample misalignment alone reaches 0.6 on the QRS).
MAX_ABS = {128: 0.03, 250: 0.0015, 500: 0.0015}
MIN_CORR = 0.998
# 1.2 * median RR: each interval may change by two samples, so a length by up to three.
MAX_LENGTH_CHANGE = 3


@pytest.mark.parametrize("fs", list(DATABASES))
def test_resampled_database_matches_the_360hz_extraction(
    fs: int, databases: dict[int, Path], reference: dict[str, mitbih.RecordBeats], tmp_path: Path
) -> None:
    names, _, lead = DATABASES[fs]
    result = prepare_database(databases[fs], tmp_path, f"db{fs}", lead=lead, progress=False)
    assert not result.skipped and [r["record"] for r in result.records] == list(reference)
    for row in result.records:
        assert (row["fs"], row["lead"], row["lead2"], row["note"]) == (fs, *names, None)
    got = data_lib.load_parquet(tmp_path / f"db{fs}.parq", 5)
    assert got.record is not None and got.sample is not None and got.lead2 is not None
    assert got.context is not None  # RR features from record + sample at 125 Hz
    for name, ref in reference.items():
        mine = got.record == name
        assert ref.lead2 is not None and mine.sum() == len(ref.y)
        np.testing.assert_array_equal(got.y[mine], ref.y)
        np.testing.assert_array_equal(got.symbol[mine], ref.symbol)
        shift = got.sample[mine] - ref.sample
        assert np.abs(shift).max() <= 1, f"{name} at {fs} Hz: R-peaks moved by {shift}"
        for beats, ref_beats in ((got.x[mine], ref.x), (got.lead2[mine], ref.lead2)):
            lengths = np.count_nonzero(beats, axis=1) - np.count_nonzero(ref_beats, axis=1)
            assert np.abs(lengths).max() <= MAX_LENGTH_CHANGE
            err = _aligned_errors(beats, ref_beats, shift)
            assert err[:, 0].max() <= MAX_ABS[fs], f"{name} at {fs} Hz: {err[:, 0].max():.4f}"
            assert err[:, 1].min() >= MIN_CORR, f"{name} at {fs} Hz: {err[:, 1].min():.5f}"
    summary = json.loads((tmp_path / f"db{fs}.json").read_text())
    assert summary["counts"] == result.counts == np.bincount(got.y, minlength=5).tolist()
    assert summary["parameters"]["annotator"] == "atr" and summary["skipped"] == []
    assert set(summary["inputs"]) == {f"db{n}.{e}" for n in RECORDS for e in ("hea", "dat", "atr")}


def _script() -> Any:
    spec = spec_from_file_location(
        "prepare_data", Path(__file__).parents[1] / "scripts/prepare_data.py"
    )
    assert spec is not None and spec.loader is not None
    script = module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _copy_with_bad_records(src: Path, dst: Path) -> None:
    """The records of ``src`` plus one with only rhythm marks and one whose signal is cut."""
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    for bad in ("db_rhythm", "db_broken"):
        (dst / f"{bad}.hea").write_text((src / "db100.hea").read_text().replace("db100", bad))
        (dst / f"{bad}.dat").write_bytes((src / "db100.dat").read_bytes())
    wfdb.wrann("db_rhythm", "atr", np.array([10, 5000]), ["+", "~"], aux_note=["(N", ""],
               write_dir=str(dst))  # fmt: skip
    (dst / "db_broken.atr").write_bytes((src / "db100.atr").read_bytes())
    cut = dst / "db_broken.dat"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])


def test_skipped_records_are_named_counted_and_refused_when_strict(
    databases: dict[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    _copy_with_bad_records(databases[250], src)
    out = tmp_path / "data"
    args = ["--source", str(src), "--out", str(out), "--name", "mixed"]
    script = _script()
    assert script.main(args) == 1
    text = capsys.readouterr()
    last = text.out.strip().splitlines()[-1]
    assert "skipped 2 record(s): db_broken, db_rhythm" in last
    assert "no beat annotations" in text.out and "truncated db_broken.dat" in text.out
    assert "2 record(s) skipped" in text.err
    summary = json.loads((out / "mixed.json").read_text())
    assert [s["record"] for s in summary["skipped"]] == ["db_broken", "db_rhythm"]
    assert summary["skipped"][1]["reason"].startswith("no beat annotations")
    got = data_lib.load_parquet(out / "mixed.parq", 5)
    assert set(got.record) == {f"db{n}" for n in RECORDS}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert script.main(args) == 1  # idempotent, and the skipped records still count
    assert "Nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    strict = tmp_path / "strict"
    assert script.main([*args[:2], "--out", str(strict), "--name", "mixed", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "strict, nothing written" in err and "record db_broken: truncated" in err
    assert not strict.exists() or not list(strict.iterdir())
    with pytest.raises(PrepareError, match="no usable records"):
        prepare_database(src, tmp_path / "v4", "v4", lead="V4", progress=False)


def test_names_and_flags_are_checked(databases: dict[int, Path], tmp_path: Path) -> None:
    script = _script()
    src = ["--source", str(databases[128]), "--out", str(tmp_path)]
    assert script.main([*src, "--name", "mitbih_ds1"]) == 2  # would overwrite MIT-BIH data
    assert script.main([*src, "--name", "../up"]) == 2
    for bad in (["--lead", "II"], ["--annotator", "qrs"], ["--download", "--name", "x"]):
        with pytest.raises(SystemExit):
            script.main([*src, *bad] if "--download" not in bad else bad)
    assert not list(tmp_path.iterdir())


def test_prepare_then_evaluate_a_checkpoint_end_to_end(
    project: Path, databases: dict[int, Path]
) -> None:
    """``prepare_data.py --name`` then ``evaluate.py RUN --data data/NAME.parq`` on new patients."""
    config = config_lib.base_config()
    config.model.name, config.model.hidden, config.model.rr_context = "cnn2d", 4, True
    config.train.batch_size, config.train.steps_per_epoch, config.train.num_seeds = 16, 4, 2
    config.train.epochs, config.train.eval_batch_size = 1, 64
    run_dir = paths.checkpoints_dir() / "tiny_rr"
    run_training(config, data_lib.load_splits(config), run_dir)
    source = ["--source", str(databases[250]), "--name", "other250"]
    assert _script().main(source) == 0  # into the project's data/ (ECGJAX_DATA_DIR)
    data_file = paths.data_dir() / "other250.parq"
    out = subprocess.run(  # the command a user types; environment: the project fixture's
        [sys.executable, "scripts/evaluate.py", str(run_dir), f"--data={data_file}", "--no_mlflow"],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((run_dir / "evaluation" / "other250.json").read_text())
    summary = json.loads((paths.data_dir() / "other250.json").read_text())
    assert report["data"]["n"] == sum(summary["counts"]) == 1215
    assert report["data"]["class_counts"] == summary["counts"]
    assert len(report["metrics"]["seeds"]) == 2
