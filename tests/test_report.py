"""The sweep report: built from a real (temporary) MLflow store, its numbers are the store's."""

from __future__ import annotations

import re
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import ml_collections
import pytest
from conftest import write_synthetic_split

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.reporting import report
from ecgjax.tracking import Tracker
from ecgjax.training.run import run_training
from ecgjax.tuning import journal

SWEEP = "sweep_test"


def tiny_config() -> ml_collections.ConfigDict:
    c = config_lib.base_config()
    c.model.name, c.model.hidden = "cnn2d", 4
    c.train.batch_size, c.train.steps_per_epoch, c.train.num_seeds = 16, 4, 2
    c.train.epochs, c.train.eval_batch_size = 3, 64
    return c


def synthetic_history(top: float, epochs: int, names: list[str]) -> list[dict[str, float]]:
    """Per-epoch metrics below ``top`` (a trial that loses to the real one)."""
    out = []
    for e in range(1, epochs + 1):
        v = top * (0.6 + 0.1 * e)
        row = {
            "epoch": e,
            "val/macro_recall": v,
            "val/worst/macro_recall": v * 0.9,
            "val/std/macro_recall": v * 0.05,
            "val/ensemble/macro_recall": v * 1.01,
        }
        row.update({f"val/recall_{c}": v * (1 - 0.1 * i) for i, c in enumerate(names)})
        out.append(row)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    """One project with a parent 'sweep' run and three trials (built once: MLflow's first
    open of a SQLite store alone takes seconds). The best trial has a real checkpoint and its
    real history; the others have histories below it and checkpoint folders that are gone."""
    root = tmp_path_factory.mktemp("report_project")
    (root / "data").mkdir()
    write_synthetic_split(root / "data" / "heart_big_train.parq", 6, 60, seed=1)
    write_synthetic_split(root / "data" / "heart_big_test.parq", 3, 40, seed=2)
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (
            ("ECGJAX_DATA_DIR", "data"),
            ("ECGJAX_CHECKPOINT_DIR", "checkpoints"),
            ("ECGJAX_REPORT_DIR", "report"),
            ("ECGJAX_MLFLOW_ARTIFACTS", "art"),
        ):
            mp.setenv(var, str(root / sub))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        yield build_sweep()


def build_sweep() -> Tracker:
    tracker = Tracker("ecgjax-tune")
    base = tiny_config()
    names = list(base.data.class_names)
    tags = {
        "ecgjax.kind": "sweep",
        "ecgjax.sweep_id": SWEEP,
        "ecgjax.config_file": "configs/asha_cnn.py:smoke",
        "ecgjax.hypothesis": "wider nets raise S recall",
        "ecgjax.tune.metric": "val/macro_recall",
        "ecgjax.tune.mode": "max",
        "ecgjax.tune.max_epochs": "3",
        "ecgjax.tune.scheduler": "asha",
        "ecgjax.tune.search": "random",
        "ecgjax.tune.num_samples": "3",
        "ecgjax.tune.seeds_per_trial": "2",
    }
    parent = tracker.start_run(SWEEP, tags=tags)
    tracker.log_params(parent, config_lib.flatten(base))
    journal.add_hypothesis(SWEEP, "wider nets raise S recall", "configs/asha_cnn.py:smoke", {})
    real = run_training(
        base,
        data_lib.load_splits(base),
        paths.checkpoints_dir() / SWEEP / "t_real",
        evaluate_test=False,
    )
    top = max(h["val/macro_recall"] for h in real.history)
    trials = [
        ("t_real", 4, 1e-3, real.history),
        ("t_wide", 8, 3e-3, synthetic_history(top, 3, names)),
        ("t_slow", 4, 3e-4, synthetic_history(top * 0.8, 1, names)),
    ]
    for trial_id, hidden, lr, history in trials:
        config = config_lib.with_overrides(
            base, {"model.hidden": hidden, "optim.learning_rate": lr}
        )
        child = tracker.start_run(
            trial_id,
            parent_id=parent,
            tags={
                "ecgjax.kind": "trial",
                "ecgjax.sweep_id": SWEEP,
                "ecgjax.trial_id": trial_id,
                "ecgjax.checkpoint": str(paths.checkpoints_dir() / SWEEP / trial_id),
                "ecgjax.param.model.hidden": hidden,
                "ecgjax.param.optim.learning_rate": lr,
            },
        )
        tracker.log_params(child, config_lib.flatten(config))
        for h in history:
            tracker.log_metrics(child, {k: v for k, v in h.items() if k != "epoch"}, h["epoch"])
        tracker.end_run(child)
    tracker.end_run(parent)
    journal.add_result(SWEEP, ["3 trials, 3 ok, 0 failed", "wider was not clearly better"])
    return tracker


def pdf_text(path: Path) -> str:
    """Text of an fpdf2 PDF with core fonts: the strings of every text object, per object."""
    out = []
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", path.read_bytes(), re.S):
        try:  # a decompressor object: the regex may eat a final b"\r" of the data
            content = zlib.decompressobj().decompress(raw)
        except zlib.error:
            content = raw
        for block in re.findall(rb"BT(.*?)ET", content, re.S):
            strings = re.findall(rb"\(((?:\\.|[^\\)])*)\)", block)
            text = b"".join(re.sub(rb"\\(.)", rb"\1", s) for s in strings)
            out.append(text.decode("latin-1"))
    return "\n".join(out)


def best_from_store(tracker: Tracker) -> dict[str, tuple[int, dict[str, float]]]:
    """Per trial: the best epoch of val/macro_recall and the values there (read independently)."""
    client = tracker.client
    out = {}
    for run in client.search_runs([tracker.experiment_id], "tags.`ecgjax.kind` = 'trial'"):
        hist = {
            k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)}
            for k in (
                "val/macro_recall",
                "val/worst/macro_recall",
                "val/std/macro_recall",
                "val/ensemble/macro_recall",
            )
        }
        best = max(hist["val/macro_recall"].items(), key=lambda p: (p[1], -p[0]))[0]
        out[run.data.tags["ecgjax.trial_id"]] = (best, {k: h[best] for k, h in hist.items()})
    return out


def test_report_numbers_match_the_store(store: Tracker) -> None:
    tracker = store
    out = report.write_report(SWEEP, repo="https://example.org/ecgjax.git")
    md = out["markdown"].read_text()
    text = pdf_text(out["pdf"])
    assert out["content_pages"] <= 2
    for where in (md, text):
        assert "https://example.org/ecgjax.git" in where
        assert "wider nets raise S recall" in where
        assert "wider was not clearly better" in where  # the journal's result entry
    values = best_from_store(tracker)
    ranked = sorted(values, key=lambda t: -values[t][1]["val/macro_recall"])
    assert [t.trial_id for t in out["sweep"].trials] == ranked
    for _trial_id, (_epoch, metrics) in values.items():
        for value in metrics.values():
            assert f"{value:.4f}" in md
            assert f"{value:.4f}" in text
    best = tracker.client.get_run(out["sweep"].trials[0].run_id).data.metrics
    test_value = f"{best['eval/test/ensemble/macro_recall']:.4f}"  # logged by the evaluation
    assert test_value in md and test_value in text
    # The gross AAMI table, from the store, with the protocol the evaluation measured: the
    # synthetic train and test files share records, so it is a beat-level (seen patients) one.
    trial = tracker.client.get_run(out["sweep"].trials[0].run_id)
    assert trial.data.tags["ecgjax.eval.test.patients"] == "seen"
    assert "AAMI gross statistics, beat-level (patients seen in training)" in md
    assert "Seen patients" in md
    shown = [
        f"eval/test/aami/{stat}_{c}"
        for stat in ("se", "ppv", "fpr")
        for c in "NSVFQ"
        if f"eval/test/aami/{stat}_{c}_ci_low" in best  # undefined values are not logged
    ]
    assert len(shown) >= 10
    for key in shown:
        cell = f"{best[key]:.3f} [{best[key + '_ci_low']:.3f}, {best[key + '_ci_high']:.3f}]"
        assert cell in md and cell in text, key
    assert "AAMI gross statistics" in text
    assert "t_slow" in md and "1/1*" in md  # stopped early, as ASHA would
    assert "saved beside the checkpoint" in md  # the best trial's exact config.json
    assert "checkpoint folder not found" in md  # the others fall back to MLflow params
    for where in (md, text):
        assert "uv run scripts/train.py --config configs/asha_cnn.py:smoke" in where
    assert "--config.model.hidden=" in md
    for fig in ("learning_curves.png", "hparams.png", "confusion_test.png"):
        assert fig in md


def test_report_of_an_unknown_sweep_is_a_clear_error(store: Tracker) -> None:
    with pytest.raises(report.ReportError, match="no parent run"):
        report.write_report("nope", repo="x")


def test_repo_url_without_remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)  # not a git checkout: no remote
    assert report.repo_url() == "(no remote configured)"


def test_evaluating_a_sweeps_best_copy_logs_to_the_trials_run(store: Tracker) -> None:
    from ecgjax.evaluation import evaluate

    trial_dir = paths.checkpoints_dir() / SWEEP / "t_real"
    best_dir = paths.checkpoints_dir() / SWEEP / "best"
    shutil.copytree(trial_dir, best_dir, dirs_exist_ok=True)
    client = store.client
    parent = client.search_runs([store.experiment_id], "tags.`ecgjax.kind` = 'sweep'")[0]
    store.set_tags(
        parent.info.run_id, {"ecgjax.best_trial": "t_real", "ecgjax.best_dir": str(best_dir)}
    )
    trial = client.search_runs([store.experiment_id], "tags.`ecgjax.trial_id` = 't_real'")[0]
    assert evaluate.find_tracked_run(store, best_dir) == trial.info.run_id
    assert evaluate.resolve_source(SWEEP) == best_dir  # a sweep id names its best copy
