"""The paired bootstrap: clear differences are found, identical runs are not; side-by-side files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_split

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.evaluation import compare
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.training.run import run_training

NAMES = ["N", "S", "V", "F", "Q"]


def labels(n: int = 3000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(5, size=n, p=[0.6, 0.1, 0.1, 0.1, 0.1])


def noisy(y: np.ndarray, error: float, seed: int) -> np.ndarray:
    """A predictor that is wrong (uniformly) on a fraction ``error`` of the beats."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(y)) < error
    return np.where(wrong, (y + rng.integers(1, 5, size=len(y))) % 5, y)


@pytest.mark.parametrize("metric", ["macro_recall", "macro_f1", "accuracy", "recall_S", "f1_V"])
def test_counts_metric_equals_the_metrics_module(metric: str) -> None:
    y, pred = labels(500), noisy(labels(500), 0.3, 1)
    idx = np.random.default_rng(2).integers(0, 500, size=500)  # one explicit resample
    weights = np.bincount(idx, minlength=500)[None, :].astype(float)
    got = compare.metric_from_counts(weights, y, pred, metric, NAMES)[0]
    ref = metrics_lib.classification_metrics(y[idx], pred[idx], 5)
    if "_" in metric and metric.split("_")[1] in NAMES:
        kind, name = metric.split("_")
        expected = ref[kind][NAMES.index(name)]
    else:
        expected = ref[metric]
    assert got == pytest.approx(expected)


def test_bootstrap_detects_a_perfect_vs_a_noisy_predictor() -> None:
    y = labels()
    result = compare.paired_bootstrap(y, y, noisy(y, 0.2, 3), NAMES, resamples=1000)
    assert result.clear and result.diff > 0.1
    assert result.ci_low > 0 and result.p_not_better == 0.0
    assert result.value_a == 1.0
    reverse = compare.paired_bootstrap(y, noisy(y, 0.2, 3), y, NAMES, resamples=1000)
    assert reverse.clear and reverse.ci_high < 0 and reverse.p_not_better == 1.0


def test_bootstrap_finds_no_difference_between_identical_or_near_equal_runs() -> None:
    y = labels()
    pred = noisy(y, 0.2, 4)
    same = compare.paired_bootstrap(y, pred, pred, NAMES, resamples=500)
    assert not same.clear
    assert same.diff == 0 and same.ci_low == 0 and same.ci_high == 0
    # Two predictors of the same quality, errors on different beats: no clear winner.
    twin = compare.paired_bootstrap(y, pred, noisy(y, 0.2, 5), NAMES, "recall_S", resamples=500)
    assert not twin.clear and twin.ci_low < 0 < twin.ci_high


def test_bootstrap_rejects_bad_arguments() -> None:
    y = labels(100)
    with pytest.raises(ValueError, match="unknown metric"):
        compare.paired_bootstrap(y, y, y, NAMES, "recall_X", resamples=10)
    with pytest.raises(ValueError, match="equal-length"):
        compare.paired_bootstrap(y, y[:50], y, NAMES, resamples=10)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("compare_project")
    (root / "data").mkdir()
    write_synthetic_split(root / "data" / "heart_big_train.parq", 6, 60, seed=1)
    write_synthetic_split(root / "data" / "heart_big_test.parq", 3, 40, seed=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECGJAX_DATA_DIR", str(root / "data"))
        mp.setenv("ECGJAX_CHECKPOINT_DIR", str(root / "checkpoints"))
        mp.setenv("ECGJAX_REPORT_DIR", str(root / "report"))
        c = config_lib.base_config()
        c.model.hidden, c.train.batch_size, c.train.steps_per_epoch = 4, 16, 6
        c.train.num_seeds, c.train.epochs, c.train.eval_batch_size = 2, 1, 64
        run_dir = paths.checkpoints_dir() / "tiny"
        run_training(c, data_lib.load_splits(c), run_dir, evaluate_test=False)
        yield run_dir


def test_compare_runs_side_by_side(checkpoint: Path) -> None:
    # A sweep id resolves to its best copy: the same ensemble twice, so no clear difference.
    sweep_best = checkpoint.parent / "sweep1" / "best"
    sweep_best.parent.mkdir()
    shutil.copytree(checkpoint, sweep_best)
    result = compare.compare([str(checkpoint), "sweep1"], resamples=300)
    assert [r["label"] for r in result["runs"]] == ["tiny", "sweep1/best"]
    boot = result["bootstrap"][0]
    assert not boot["clear"] and boot["diff"] == 0
    first = result["runs"][0]["summary"]
    assert set(first) >= {"macro_recall", "accuracy", "recall_S"}
    assert set(first["macro_recall"]) == {"mean", "std", "worst", "ensemble"}
    saved = json.loads(Path(result["json"]).read_text())
    assert saved["bootstrap"][0]["metric"] == "macro_recall"
    # Gross AAMI numbers per run, with the protocol: the synthetic test file shares the
    # training file's records, so these are seen patients.
    for run in saved["runs"]:
        assert run["patients"] == "seen" and run["protocol"].startswith("beat-level")
        gross = run["aami_gross"]["classes"]
        assert gross["S"]["se"] == pytest.approx(run["summary"]["recall_S"]["ensemble"])
    assert saved["runs"][0]["aami_gross"] == saved["runs"][1]["aami_gross"]  # the same model
    assert Path(result["figure"]).stat().st_size > 1000
    by_record = compare.compare([str(checkpoint), "sweep1"], resamples=100, by_record=True)
    assert by_record["data"]["resampled"] == "records" and by_record["bootstrap"][0]["diff"] == 0
    with pytest.raises(ValueError, match="at least two"):
        compare.compare([str(checkpoint)])


def test_one_checkpoint_against_itself_with_a_prediction_setting_changed(
    checkpoint: Path,
) -> None:
    smoothed = f"{checkpoint}@cluster_smoothing=1,cluster_k=2"
    result = compare.compare([str(checkpoint), smoothed], resamples=50)
    assert [r["label"] for r in result["runs"]] == ["tiny", "tiny@cluster_smoothing=1,cluster_k=2"]
    plain, shared = (r["aami_gross"] for r in result["runs"])
    assert plain != shared  # every beat's V/F evidence now shared with its whole cluster
    gated = f"{checkpoint}@af_gate=true"  # this test file shares records with training
    with pytest.raises(data_lib.DataError, match="shares records with the checkpoint's training"):
        compare.compare([str(checkpoint), gated], resamples=10)
    for spec, needle in [
        ("learning_rate=1", "prediction-time key"),
        ("optim.learning_rate=1", "prediction-time key"),
        ("cluster_k=two", "takes a int"),
        ("af_gate=maybe", "takes a bool"),
        ("af_gate_mode=drop", "af_gate_mode"),
    ]:
        with pytest.raises(ValueError, match=needle):
            compare.compare([str(checkpoint), f"{checkpoint}@{spec}"], resamples=10)


def test_prediction_overrides_are_typed_like_the_config() -> None:
    c = config_lib.base_config()
    got = config_lib.prediction_overrides(c, "af_gate=TRUE, data.af_gate_pwave=0.5,cluster_k=4")
    assert got == {"data.af_gate": True, "data.af_gate_pwave": 0.5, "data.cluster_k": 4}
    assert config_lib.prediction_overrides(c, "") == {}
    assert compare.split_source("runs/a@b/x@af_gate=1") == ("runs/a@b/x", "af_gate=1")
    assert compare.split_source("runs/a@b") == ("runs/a@b", "")  # an @ in a path, no setting


def test_group_bootstrap_resamples_patients_not_beats() -> None:
    # A wins on every beat of patient g1 and ties (both wrong) on g2: beats say "surely
    # better", two patients cannot rule out "no better" (a resample may hold g2 twice).
    y = np.ones(200, dtype=np.int64)
    groups = np.repeat(["g1", "g2"], 100)
    pred_a = np.where(groups == "g1", 1, 0)
    pred_b = np.zeros(200, dtype=np.int64)
    names = ["N", "S"]
    beats = compare.paired_bootstrap(y, pred_a, pred_b, names, "recall_S", 400)
    patients = compare.paired_bootstrap(y, pred_a, pred_b, names, "recall_S", 400, groups=groups)
    assert beats.diff == patients.diff == 0.5
    assert beats.ci_low > 0.4
    assert patients.ci_low == 0.0 and patients.ci_high == 1.0
    with pytest.raises(ValueError, match="groups"):
        compare.paired_bootstrap(y, pred_a, pred_b, names, "recall_S", 10, groups=groups[:5])
