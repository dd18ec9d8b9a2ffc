"""Evaluation from Orbax checkpoints: numbers, files, MLflow, and a clear error for bad input."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import pytest
from conftest import write_synthetic_split

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import inputs
from ecgjax.data.rr import RR_FEATURES, rr_features
from ecgjax.evaluation import evaluate
from ecgjax.evaluation import patients as patients_lib
from ecgjax.scoring import af_gate, clusters, decision
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.tracking import Tracker
from ecgjax.training.checkpoint import CheckpointError
from ecgjax.training.run import RunResult, run_training


def tiny_config() -> ml_collections.ConfigDict:
    c = config_lib.base_config()
    c.model.name, c.model.hidden = "cnn2d", 4
    c.train.batch_size, c.train.steps_per_epoch, c.train.num_seeds = 16, 6, 2
    c.train.epochs, c.train.eval_batch_size = 2, 64
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunResult]]:
    """One project and one trained two-seed checkpoint, shared (training compiles for seconds)."""
    root = tmp_path_factory.mktemp("eval_project")
    data = root / "data"
    data.mkdir()
    write_synthetic_split(data / "heart_big_train.parq", 6, 60, seed=1)
    write_synthetic_split(data / "heart_big_test.parq", 3, 40, seed=2)
    write_synthetic_split(data / "mitbih_ds2.parq", 3, 40, seed=4)
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (
            ("ECGJAX_DATA_DIR", "data"),
            ("ECGJAX_CHECKPOINT_DIR", "checkpoints"),
            ("ECGJAX_REPORT_DIR", "report"),
            ("ECGJAX_MLFLOW_ARTIFACTS", "art"),
        ):
            mp.setenv(var, str(root / sub))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        config = tiny_config()
        run_dir = paths.checkpoints_dir() / "tiny"
        yield run_dir, run_training(config, data_lib.load_splits(config), run_dir)


def copy_run(run_dir: Path, name: str) -> Path:
    dst = run_dir.parent / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(run_dir, dst)
    return dst


def test_evaluate_a_tiny_checkpoint(trained: tuple[Path, RunResult]) -> None:
    run_dir, result = trained
    loaded = evaluate.load_ensemble(run_dir)
    assert loaded.which == "best" and loaded.epoch == result.best_epoch
    test, val = evaluate.load_data(loaded)
    assert val is not None
    report = evaluate.evaluate(loaded, test, name="test", val=val, target_recall=0.8)
    # The restored ensemble scores the test split exactly as the trained one did.
    assert report["metrics"]["ensemble"] == result.test_report["ensemble"]
    assert len(report["metrics"]["seeds"]) == 2
    for key in ("seed_mean", "seed_std", "seed_worst"):
        assert set(report["metrics"][key]) >= {"macro_recall", "accuracy", "recall"}
    saved = json.loads((run_dir / "evaluation" / "test.json").read_text())
    assert (
        saved["metrics"]["ensemble"]["macro_recall"]
        == report["metrics"]["ensemble"]["macro_recall"]
    )
    for suffix in ("confusion", "recall", "pr"):
        assert (run_dir / "evaluation" / f"test_{suffix}.png").stat().st_size > 1000
    point = report["operating_point"]
    assert set(point) == {"operating_point", "argmax", "recall_first"}
    fitted = point["operating_point"]
    # Disease weights only drop below 1 when N had to be raised to its floor first.
    assert all(w >= 1.0 for w in fitted["weights"]) or fitted["normal_boost"] > 1.0
    assert point["operating_point"]["min_normal_recall"] == 0.95
    fitted = point["operating_point"]  # N recall on val: never pushed below the floor
    assert fitted["normal_recall"] >= min(0.95, fitted["argmax_normal_recall"]) - 1e-12
    # The synthetic train and test files share records 100-102: a beat-level evaluation.
    assert saved["patients"] == "seen" and saved["protocol"].startswith("beat-level")
    assert saved["patient_overlap"]["overlapping_records"] == 3
    section = saved["aami"]["ensemble"]
    assert section["protocol"] == saved["protocol"] and len(section["per_record"]) == 3
    assert section["gross"]["classes"]["N"]["se"] == pytest.approx(
        report["metrics"]["ensemble"]["recall"][0]
    )
    assert len(saved["aami"]["seeds"]) == 2 and section["ci"]["n_boot"] == 1000
    # Not a tracked run: an ecgjax-eval run tagged with the checkpoint holds the numbers.
    client = Tracker(evaluate.EVAL_EXPERIMENT).client
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["ecgjax.checkpoint"] == str(run_dir.resolve())
    assert run.data.metrics["eval/test/ensemble/macro_recall"] == pytest.approx(
        report["metrics"]["ensemble"]["macro_recall"]
    )
    assert run.data.metrics["eval/test/aami/accuracy"] == pytest.approx(
        section["gross"]["accuracy"]
    )
    assert run.data.tags["ecgjax.eval.test.patients"] == "seen"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/test")}
    assert "evaluation/test/test.json" in artifacts
    # The MLflow run id finds the checkpoint again; a second evaluation lands in the same run.
    again = evaluate.load_ensemble(report["mlflow_run_id"])
    assert again.run_dir == loaded.run_dir
    ds2, _ = evaluate.load_data(again, paths.data_dir() / "mitbih_ds2.parq")
    other = evaluate.evaluate(again, ds2, name=evaluate.default_name(again, "mitbih_ds2.parq"))
    assert other["mlflow_run_id"] == report["mlflow_run_id"]
    assert (run_dir / "evaluation" / "mitbih_ds2.json").is_file()


def test_missing_and_corrupted_checkpoints(trained: tuple[Path, RunResult]) -> None:
    run_dir, _ = trained
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        evaluate.load_ensemble(run_dir.parent / "does_not_exist")
    with pytest.raises(CheckpointError, match="not found"):
        evaluate.load_ensemble("0123456789abcdef0123456789abcdef")  # not an MLflow run
    empty = run_dir.parent / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(CheckpointError, match="not an ecgjax checkpoint folder"):
        evaluate.load_ensemble(empty)
    broken = copy_run(run_dir, "broken_json")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        evaluate.load_ensemble(broken)
    cut = copy_run(run_dir, "truncated")
    for f in (cut / "best").rglob("*"):
        if f.is_file() and f.stat().st_size > 64 and "state" in f.parts:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="cannot restore"):
        evaluate.load_ensemble(cut)


def test_config_that_does_not_match_the_checkpoint(trained: tuple[Path, RunResult]) -> None:
    run_dir, _ = trained
    wider = copy_run(run_dir, "wider")
    config = json.loads((wider / "config.json").read_text())
    config["model"]["hidden"] = 8
    (wider / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="another model"):
        evaluate.load_ensemble(wider)
    classes = copy_run(run_dir, "classes")
    meta = json.loads((classes / "meta.json").read_text())
    meta["num_classes"] = 2
    (classes / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="classes"):
        evaluate.load_ensemble(classes)


def test_test_file_with_other_classes_or_no_rr_columns(
    trained: tuple[Path, RunResult], tmp_path: Path
) -> None:
    run_dir, _ = trained
    loaded = evaluate.load_ensemble(run_dir)
    seven = tmp_path / "seven_classes.parq"
    write_synthetic_split(seven, 2, 35, seed=5, num_classes=7)
    with pytest.raises(data_lib.DataError, match="labels outside"):
        evaluate.load_data(loaded, seven)
    two = tmp_path / "two_classes.parq"
    write_synthetic_split(two, 2, 20, seed=6, num_classes=2)
    test, _ = evaluate.load_data(loaded, two)
    report = evaluate.evaluate(loaded, test, name="two", write=False, log_mlflow=False)
    assert "no beats of class V, F, Q" in report["warnings"][-1] and report["finished"]
    # A run still training (or interrupted) keeps its resume note: evaluation says so.
    note = run_dir / "RESUME.txt"
    note.write_text("running")
    try:
        early = evaluate.evaluate(loaded, test, name="two", write=False, log_mlflow=False)
    finally:
        note.unlink()
    assert not early["finished"]
    assert f"epoch {loaded.epoch}, not the finished run's" in early["warnings"][-1]
    # An RR-context model needs record/sample columns in the test file.
    x, y = np.random.default_rng(0).random((20, 187)), np.arange(20) % 5
    bare = tmp_path / "no_record.parq"
    data_lib.write_parquet(bare, data_lib.BeatData(x, y.astype(np.int32), 5, str(bare)))
    rr = replace(
        loaded, config=config_lib.with_overrides(loaded.config, {"model.rr_context": True})
    )
    plain = evaluate.evaluate(
        loaded, evaluate.load_data(loaded, bare)[0], name="bare", write=False, log_mlflow=False
    )
    assert plain["patients"] == "unknown" and "no 'record' column" in plain["warnings"][0]
    assert plain["aami"]["ensemble"]["per_record"] is None
    assert "gross statistics only" in plain["aami"]["ensemble"]["note"]
    with pytest.raises(data_lib.DataError, match="record"):
        evaluate.load_data(rr, bare)
    with pytest.raises(data_lib.DataError, match="RR context"):
        evaluate.predict(rr, data_lib.load_parquet(bare, 5))


def new_patients_file(path: Path, seed: int) -> Path:
    """A synthetic test file whose records (9100-9102) the training file does not hold."""
    write_synthetic_split(path, 3, 40, seed=seed)
    beats = data_lib.load_parquet(path, 5)
    assert beats.record is not None
    renamed = np.array([f"9{r}" for r in beats.record], dtype=object)
    data_lib.write_parquet(path, replace(beats, record=renamed))
    return path


@functools.cache  # the script defines absl flags: load it once per process
def evaluate_script() -> object:
    spec = importlib.util.spec_from_file_location(
        "evaluate_script", paths.PROJECT_ROOT / "scripts" / "evaluate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patient_leakage_guard(trained: tuple[Path, RunResult], tmp_path: Path) -> None:
    from rich.console import Console

    run_dir, _ = trained
    loaded = evaluate.load_ensemble(run_dir)
    seen, _ = evaluate.load_data(loaded, paths.data_dir() / "mitbih_ds2.parq")
    info = evaluate.patients_of(loaded, seen)
    assert info["patients"] == "seen" and info["overlapping_records"] == info["records"] == 3
    assert info["beats_from_seen_records"] == len(seen)
    assert info["identical_beats"] < len(seen)  # same patients, other beats
    with pytest.raises(patients_lib.SeenPatientsError, match="shares 3 of its 3 records"):
        patients_lib.require_new(info, str(run_dir))
    new, _ = evaluate.load_data(loaded, new_patients_file(tmp_path / "new.parq", 8))
    info = evaluate.patients_of(loaded, new)
    assert info["patients"] == "new" and info["overlapping_records"] == 0
    patients_lib.require_new(info, str(run_dir))  # no error
    _, val = evaluate.load_data(loaded)
    report = evaluate.evaluate(
        loaded, new, name="new", val=val, n_boot=200, write=False, log_mlflow=False
    )
    assert report["patients"] == "new" and report["protocol"] == "inter-patient (new patients)"
    assert not report["warnings"]
    # The console tables name the protocol and show the gross Se/+P/FPR with intervals.
    script = evaluate_script()
    console = Console(width=400, record=True)
    console.print(script.aami_table(report))  # type: ignore[attr-defined]
    for line in script.floor_lines(report):  # type: ignore[attr-defined]
        console.print(line)
    text = " ".join(console.export_text().split())  # titles wrap at the table width
    assert "inter-patient (new patients)" in text and "200 resamples of records" in text
    n = report["aami"]["ensemble"]["gross"]["classes"]["N"]
    assert f"{n['se']:.3f} [" in text and "N recall on val" in text


GUARD_FLAGS = ("--new_patients_only", "--no_mlflow", "--name=mitbih_ds2_guard")


def test_new_patients_only_refuses_with_exit_status_2(trained: tuple[Path, RunResult]) -> None:
    run_dir, _ = trained
    ds2 = paths.data_dir() / "mitbih_ds2.parq"
    out = subprocess.run(
        [sys.executable, "scripts/evaluate.py", str(run_dir), f"--data={ds2}", *GUARD_FLAGS],
        cwd=paths.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--new_patients_only" in lines[0]
    assert "mitbih_ds2.parq shares 3 of its 3 records" in lines[0]
    assert "heart_big_train.parq" in lines[0]
    assert not (run_dir / "evaluation" / "mitbih_ds2_guard.json").exists()


def test_whole_file_unless_max_beats(trained: tuple[Path, RunResult]) -> None:
    run_dir, _ = trained
    smoke = copy_run(run_dir, "smoke_like")  # a smoke config subsamples validation and test
    config = json.loads((smoke / "config.json").read_text())
    config["data"]["max_eval"] = 20
    (smoke / "config.json").write_text(json.dumps(config))
    loaded = evaluate.load_ensemble(smoke)
    test, _ = evaluate.load_data(loaded)
    assert len(test) == len(data_lib.load_parquet(paths.data_dir() / "heart_big_test.parq", 5))
    sample = evaluate.sample_beats(loaded, test, 30)
    assert len(sample) == 30
    report = evaluate.evaluate(
        loaded,
        sample,
        name="sample",
        n_boot=10,
        write=False,
        log_mlflow=False,
        beats_in_file=len(test),
    )
    script = evaluate_script()
    title = script.beats_title(report)  # type: ignore[attr-defined]
    assert f"30 of {len(test)} beats" in title and "--max_beats" in title
    report["data"]["n_file"] = len(sample)
    assert script.beats_title(report).endswith("(30 beats)")  # type: ignore[attr-defined]


def test_cluster_smoothing_is_part_of_the_checkpoints_prediction(
    trained: tuple[Path, RunResult],
) -> None:
    run_dir, _ = trained
    loaded = evaluate.load_ensemble(run_dir)
    test, _ = evaluate.load_data(loaded)
    raw = evaluate.predict(loaded, test)
    loaded.config.data.cluster_smoothing = 0.6  # what --cluster_smoothing or a recipe sets
    loaded.config.data.cluster_k = 3
    smoothed = evaluate.predict(loaded, test)
    ids = clusters.record_clusters(test.x, test.record, k=3)
    names = loaded.class_names
    for seed_raw, seed_smoothed in zip(raw, smoothed, strict=True):
        np.testing.assert_allclose(
            seed_smoothed, clusters.smooth(seed_raw, ids, names, 0.6), rtol=1e-5, atol=1e-6
        )
    report = evaluate.evaluate(
        loaded, test, name="smooth", n_boot=10, write=False, log_mlflow=False
    )
    assert report["cluster_smoothing"] == 0.6
    assert (
        report["metrics"]["ensemble"]
        == metrics_lib.ensemble_report(smoothed, test.y, loaded.num_classes)["ensemble"]
    )
    no_records = replace(test, record=None)
    with pytest.raises(data_lib.DataError, match="record of each beat"):
        evaluate.predict(loaded, no_records)


def test_af_gate_is_part_of_the_checkpoints_prediction(trained: tuple[Path, RunResult]) -> None:
    run_dir, _ = trained
    loaded = evaluate.load_ensemble(run_dir)
    test, _ = evaluate.load_data(loaded)
    raw = evaluate.predict(loaded, test)
    loaded.config.data.af_gate = True  # what --af_gate sets ...
    loaded.config.data.af_gate_pwave = 0.0  # ... with --af_gate_pwave=0: the RR tests only
    gated = evaluate.predict(loaded, test)  # plumbing only; tests/test_af_gate.py gates
    on = af_gate.GateSettings(enabled=True)
    want = af_gate.gate_ensemble(raw, test.sample, test.record, loaded.class_names, on)
    np.testing.assert_allclose(gated, want, rtol=1e-6)
    loaded.config.data.af_gate_pwave = 0.5  # what --af_gate_pwave=0.5 sets: the P-wave test too
    loaded.config.data.af_gate_mode = "condition"  # and --af_gate_mode=condition
    corr = inputs.p_wave_correlations(test.x, test.record, test.sample)[:, 0]
    both = af_gate.GateSettings(enabled=True, pwave_max=0.5, mode="condition")
    want = af_gate.gate_ensemble(raw, test.sample, test.record, loaded.class_names, both, "", corr)
    np.testing.assert_allclose(evaluate.predict(loaded, test), want, rtol=1e-6)
    with pytest.raises(data_lib.DataError, match="needs each beat's record and sample position"):
        evaluate.predict(loaded, replace(test, sample=None))

    def run(**kwargs: Any) -> dict[str, Any]:
        return evaluate.evaluate(
            loaded, test, name="gate", n_boot=10, write=False, log_mlflow=False, **kwargs
        )

    # The fixture's test file is a beat-level split: its records' other beats are in training,
    # so the intervals between its beats are not RR intervals and the gate refuses it.
    with pytest.raises(data_lib.DataError, match="shares records with the checkpoint's training"):
        run()
    as_new = evaluate.patients_of(loaded, test) | {
        "patients": patients_lib.NEW,
        "protocol": patients_lib.PROTOCOLS[patients_lib.NEW],
    }
    with pytest.raises(data_lib.DataError, match=r"only .* beats are evaluated \(--max_beats\)"):
        run(patients=as_new, beats_in_file=len(test) + 1)
    report = run(patients=as_new)
    assert report["af_gate"] is True and report["af_gate_pwave"] == 0.5
    assert report["af_gate_mode"] == "condition" and report["prematurity_gate"] == 0.0
    loaded.config.data.prematurity_gate = 0.9  # what --prematurity_gate=0.9 sets: it runs after
    ratio = rr_features(test.record, test.sample)[:, RR_FEATURES.index("ratio_prev_record")]
    late = ratio > 0.9
    want = af_gate.gate(want, late, loaded.class_names, "condition")
    np.testing.assert_allclose(evaluate.predict(loaded, test), want, rtol=1e-6)
    assert run(patients=as_new)["prematurity_gate"] == 0.9
    loaded.config.data.af_gate = False  # the prematurity gate alone needs whole records too
    with pytest.raises(data_lib.DataError, match="shares records with the checkpoint's training"):
        run()


def test_decision_offsets_are_part_of_the_prediction_and_must_match_the_checkpoint(
    trained: tuple[Path, RunResult], tmp_path: Path
) -> None:
    run_dir, _ = trained
    loaded = evaluate.load_ensemble(run_dir)
    test, _ = evaluate.load_data(loaded)
    raw = evaluate.predict(loaded, test)
    names = loaded.class_names
    offsets = dict(zip(names, [0.0, 1.0, -0.5, -3.0, 0.0][: len(names)], strict=True))
    fitted = {
        "class_names": names,
        "offsets": offsets,
        "adopted": True,
        "train_file": Path(str(loaded.config.data.train_file)).name,
        "cluster_smoothing": 0.0,
        "cluster_k": 8,
        "protocol": "out-of-fold",
        "goals": ["N Se >= 0.95"],
    }
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(fitted | {"cluster_smoothing": 0.5}))
    with pytest.raises(decision.DecisionError, match=r"cluster_smoothing=0\.5.*refit"):
        evaluate.attach_decision(loaded, tmp_path)
    path.write_text(json.dumps(fitted | {"train_file": "other.parq"}))
    with pytest.raises(decision.DecisionError, match=r"train_file=.other\.parq."):
        evaluate.attach_decision(loaded, path)
    path.write_text(json.dumps(fitted))
    evaluate.attach_decision(loaded, path)
    shifted = evaluate.predict(loaded, test)
    np.testing.assert_allclose(shifted, decision.apply(raw, list(offsets.values())), rtol=1e-6)
    assert not np.array_equal(shifted.argmax(-1), raw.argmax(-1))
    report = evaluate.evaluate(loaded, test, name="dec", n_boot=10, write=False, log_mlflow=False)
    assert report["decision"]["offsets"] == offsets and report["decision"]["adopted"]


def test_a_smoothing_recipe_reports_the_same_test_numbers_in_training_and_evaluation(
    trained: tuple[Path, RunResult],
) -> None:
    run_dir, _ = trained
    config = tiny_config()
    config.data.cluster_smoothing, config.data.cluster_k = 0.6, 3
    smooth_dir = run_dir.parent / "tiny_smooth"
    result = run_training(config, data_lib.load_splits(config), smooth_dir)
    loaded = evaluate.load_ensemble(smooth_dir)
    test, _ = evaluate.load_data(loaded)
    assert result.test_probs is not None
    np.testing.assert_allclose(evaluate.predict(loaded, test), result.test_probs, atol=1e-6)
