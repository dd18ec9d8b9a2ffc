"""The rhythm-context study: both arms train and are saved, and the verdict follows the claim."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from ecgjax import paths
from ecgjax.studies.rr_analysis import analyse
from ecgjax.studies.rr_study import EXPERIMENT, train_arms
from ecgjax.tuning import journal


def test_study_trains_both_arms_keeps_other_protocols_and_analyses(project: Path) -> None:
    out = project / "report" / "rr_study"
    small = {"train.epochs": 1, "train.steps_per_epoch": 3}
    runs = (
        ("inter-patient", "configs/interpatient_resnet1d.py:smoke", 2),
        ("beat-level", "configs/resnet1d.py:smoke", 1),
    )
    for protocol, config_file, seeds in runs:  # the second run keeps the first one's results
        train_arms(
            out,
            seeds=seeds,
            protocols={protocol: config_file},
            overrides=small,
            log=print,
            progress=False,
        )
    arms = json.loads((out / "arms.json").read_text())
    assert set(arms) == {
        f"{p}/{a}" for p in ("inter-patient", "beat-level") for a in ("beat", "beat+rr")
    }
    assert arms["inter-patient/beat+rr"]["config"]["model"]["rr_context"] is True
    assert arms["inter-patient/beat"]["config"]["model"]["rr_context"] is False
    with np.load(out / "predictions.npz") as preds:
        assert preds["inter-patient/beat+rr/probs"].shape[0] == 2  # seeds
        assert preds["beat-level/beat/probs"].shape[0] == 1
        assert len(preds["inter-patient/record"]) == len(preds["inter-patient/y"])

    result = analyse(out, n_boot=50, journal_entry=True, tracking=True)
    for protocol in ("inter-patient", "beat-level"):
        assert isinstance(result["protocols"][protocol]["claim_holds"], bool)
    md = (out / "analysis.md").read_text()
    assert "| inter-patient | beat+rr | 2 |" in md and (out / "rr_recall.png").stat().st_size > 0
    assert "rr_study" in journal.journal_path().read_text()
    client = MlflowClient(paths.mlflow_uri())
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"analysis"} | {
        f"{p}/{a}".replace("/", "-") for p, a in (k.split("/") for k in arms)
    }
    assert all(r.info.status == "FINISHED" for r in runs)
    arm = by_name["inter-patient-beat+rr"]
    assert arm.data.tags["ecgjax.arm"] == "beat+rr" and "test/macro_recall" in arm.data.metrics
    analysis = by_name["analysis"]
    assert "inter-patient/recall_S/diff" in analysis.data.metrics
    assert {a.path for a in client.list_artifacts(analysis.info.run_id)} == {
        "analysis.md",
        "analysis.json",
        "rr_recall.png",
    }


def _fake_study(out: Path, y: np.ndarray, beat: np.ndarray, rr: np.ndarray) -> None:
    """arms.json and predictions.npz as train_arms writes them, from given predictions."""
    out.mkdir(parents=True)
    names = ["N", "S", "V", "F", "Q"]
    arrays = {"p/y": y, "p/record": np.where(np.arange(len(y)) % 2 == 0, "100", "200")}
    arms = {}
    for arm, pred in (("beat", beat), ("beat+rr", rr)):
        arrays[f"p/{arm}/probs"] = np.eye(5, dtype=np.float16)[pred][None]
        mean = {"recall": [0.0] * 5, "precision": [0.0] * 5, "macro_recall": 0.0, "accuracy": 0.0}
        arms[f"p/{arm}"] = {
            "protocol": "p",
            "arm": arm,
            "class_names": names,
            "config": {"train": {"num_seeds": 1}},
            "seed_mean": mean,
            "seed_std": {"recall": [0.0] * 5, "precision": [0.0] * 5},
        }
    np.savez(out / "predictions.npz", **arrays)  # type: ignore[arg-type]
    (out / "arms.json").write_text(json.dumps(arms))


def test_verdict_needs_the_s_gain_and_a_kept_v_recall(tmp_path: Path) -> None:
    y = np.array([1] * 200 + [2] * 200 + [0] * 200)
    beat = np.where(y == 1, 0, y)  # beat only misses every S beat
    rr = y.copy()
    rr[:40] = 0  # beat+rr finds 80 % of them
    _fake_study(tmp_path / "gain", y, beat, rr)
    got = analyse(tmp_path / "gain", n_boot=200)["protocols"]["p"]
    assert got["claim_holds"] is True
    assert got["bootstrap"]["recall_S"]["diff"] == np.float64(0.8)
    assert set(got["s_recall_by_record"]) == {"100", "200"}
    assert {"recall_S_by_record", "recall_S_without_top_record"} <= set(got["bootstrap"])

    costly = rr.copy()
    costly[200:240] = 0  # ... but loses 0.2 of V recall
    _fake_study(tmp_path / "costly", y, beat, costly)
    assert analyse(tmp_path / "costly", n_boot=200)["protocols"]["p"]["claim_holds"] is False
