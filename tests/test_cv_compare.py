"""Two CV runs' out-of-fold pools compared on the same training beats (scripts/cv_compare.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.data import DataError
from ecgjax.evaluation.compare import paired_bootstrap
from ecgjax.studies import cv_compare

NAMES = ["N", "S", "V", "F", "Q"]


def _cv_run(root: Path, probs: np.ndarray, y: np.ndarray, record: np.ndarray) -> Path:
    """A CV folder as scripts/train.py --config.data.cv_folds writes it (the parts read here)."""
    (root / "fold0").mkdir(parents=True)
    config = config_lib.base_config()
    config.data.cluster_smoothing, config.data.cluster_k = 0.0, 4
    (root / "fold0" / "config.json").write_text(config_lib.to_json(config))
    (root / "cv.json").write_text(json.dumps({"folds": [], "train_file": "mitbih_ds1.parq"}))
    x = np.random.default_rng(0).normal(size=(len(y), 187)).astype(np.float32)
    np.savez(root / "oof.npz", probs=probs.astype(np.float16), y=y, record=record, x=x)
    return root


def _pools(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 3, n)
    record = np.repeat(np.array(["100", "101", "102", "103", "104"]), n // 5)
    a = np.eye(5)[np.where(rng.random(n) < 0.7, y, rng.integers(0, 5, n))] * 0.9 + 0.02
    b = a.copy()
    flip = (y == 2) & (a.argmax(1) != 2) & (rng.random(n) < 0.8)  # B finds more V beats
    b[flip] = np.eye(5)[2] * 0.9 + 0.02
    return (
        _cv_run(tmp_path / "a", a, y, record),
        _cv_run(tmp_path / "b", b, y, record),
        a,
        b,
        y,
        record,
    )


def test_b_minus_a_is_paired_over_records(tmp_path: Path) -> None:
    a_dir, b_dir, a, b, y, record = _pools(tmp_path)
    result = cv_compare.compare(a_dir, b_dir, resamples=200)
    assert result["beats"] == len(y) and result["records"] == sorted(set(record))
    v_a, v_b = (float(((p.argmax(1) == 2) & (y == 2)).sum() / (y == 2).sum()) for p in (a, b))
    assert result["gross"]["a"]["V"]["se"] == pytest.approx(v_a)
    assert result["gross"]["b"]["V"]["se"] == pytest.approx(v_b) and v_b > v_a
    direct = paired_bootstrap(y, b.argmax(1), a.argmax(1), NAMES, "recall_V", 200, groups=record)
    assert result["b_minus_a"]["recall_V"] == pytest.approx(
        [direct.diff, direct.ci_low, direct.ci_high]
    )
    same = cv_compare.compare(a_dir, a_dir, resamples=50)
    assert all(d == [0.0, 0.0, 0.0] for d in same["b_minus_a"].values())


def test_pools_of_other_beats_and_non_cv_folders_are_refused(tmp_path: Path) -> None:
    a_dir, b_dir, a, _, y, record = _pools(tmp_path)
    short = _cv_run(tmp_path / "short", a[:-5], y[:-5], record[:-5])
    with pytest.raises(DataError, match=r"oof\.npz.*different beats"):
        cv_compare.compare(a_dir, short)
    with pytest.raises(DataError, match="not a cross-validation run"):
        cv_compare.compare(a_dir, tmp_path)
    config = config_lib.from_json((a_dir / "fold0" / "config.json").read_text())
    config.data.cluster_smoothing = 0.75
    (a_dir / "fold0" / "config.json").write_text(config_lib.to_json(config))
    with pytest.raises(DataError, match=r"different cluster smoothing.*--cluster_smoothing"):
        cv_compare.compare(a_dir, b_dir)
    both = cv_compare.compare(a_dir, b_dir, resamples=20, smoothing=0.5, k=4)
    assert both["cluster_smoothing"] == [0.5, 0.5]


def test_script_prints_the_table_and_writes_json(project: Path, tmp_path: Path) -> None:
    a_dir, b_dir, *_ = _pools(tmp_path)
    out = subprocess.run(
        [sys.executable, "scripts/cv_compare.py", str(a_dir), str(b_dir), "--resamples=100"],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "recall_V" in out.stdout and "training patients only" in out.stdout
    saved = json.loads((project / "report" / "compare" / "a-vs-b.json").read_text())
    assert saved["b_minus_a"]["recall_V"][0] > 0
    shutil.rmtree(b_dir / "fold0")  # a damaged run: a DataError, which cli.run prints as one line
    with pytest.raises(DataError, match=r"fold0/config\.json: missing"):
        cv_compare.compare(a_dir, b_dir)
