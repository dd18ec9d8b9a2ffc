"""Leave-records-out cross-validation: the folds, the fold summary, a 2-fold training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import folds
from ecgjax.errors import UserError
from ecgjax.scoring import clusters, decision
from ecgjax.scoring.af_gate import GateSettings
from ecgjax.studies import cluster_study, cv_compare, cv_rescore, decision_study, tree_blend
from ecgjax.training import checkpoint as ckpt
from ecgjax.training import trees
from ecgjax.training.crossval import pool_out_of_fold, pooled_probs, train_cv
from ecgjax.training.experiment import train_run


def records(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """11 records of unequal size; class 1 lives in exactly 3 records, class 2 in 4."""
    key = np.random.default_rng(seed)
    record, y = [], []
    for r in range(11):
        n = int(key.integers(20, 80))
        labels = np.zeros(n, dtype=int)
        if r in (1, 5, 8):
            labels[: 3 + r] = 1
        if r in (0, 2, 6, 9):
            labels[-5:] = 2
        record += [f"r{r}"] * n
        y.append(labels)
    return np.array(record, dtype=object), np.concatenate(y)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_the_records(k: int) -> None:
    record, y = records()
    out = folds.record_folds(record, y, k, seed=7)
    assert len(out) == k
    every_val = np.concatenate([va for _, va in out])
    assert sorted(every_val) == list(range(len(y)))  # every beat validated exactly once
    names = np.asarray(record).astype(str)
    for tr, va in out:
        assert len(va) and len(tr) + len(va) == len(y)
        assert not set(names[tr]) & set(names[va])  # no record on both sides
        assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    val_records = [set(names[va]) for _, va in out]
    assert sum(len(s) for s in val_records) == len(set(names))


def test_folds_balance_classes_and_are_deterministic() -> None:
    record, y = records()
    three = folds.record_folds(record, y, 3, seed=1)
    for _, va in three:  # class 1 sits in 3 records, class 2 in 4: each fold gets some of both
        assert {1, 2} <= set(y[va])
    again = folds.record_folds(record, y, 3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(three, again, strict=True))


def test_a_stratum_is_spread_like_a_class() -> None:
    record, y = records()
    names = np.asarray(record).astype(str)
    strata = np.isin(names, ["r3", "r4", "r7"])  # three records "in AF", all of class 0
    for k in (2, 3):
        out = folds.record_folds(record, y, k, seed=3, strata=strata)
        assert all(strata[tr].any() for tr, _ in out)  # every fold trains on some of them
        assert sorted(np.concatenate([va for _, va in out])) == list(range(len(y)))
    with pytest.raises(ValueError, match=r"strata \(3\) and y"):
        folds.record_folds(record, y, 2, seed=0, strata=strata[:3])


def test_a_run_from_before_a_key_reads_as_it_ran() -> None:
    # Pools trained before data.cv_rhythms existed dealt folds by class only; re-scoring one
    # must deal the same folds, not the rhythm-aware default.
    config = cv_config()
    saved = json.loads(config_lib.to_json(config))
    assert config_lib.from_json(json.dumps(saved)).data.cv_rhythms == "AFIB,AFL"
    assert config_lib.from_json(json.dumps(saved)).data.cv_epoch == "last"
    del saved["data"]["cv_rhythms"], saved["data"]["cv_epoch"]
    old = config_lib.from_json(json.dumps(saved))
    assert old.data.cv_rhythms == "" and old.data.cv_epoch == "best"  # how such runs pooled


def test_bad_fold_counts_are_clear_errors() -> None:
    record, y = records()
    with pytest.raises(ValueError, match="at least 2 folds"):
        folds.record_folds(record, y, 1, seed=0)
    with pytest.raises(ValueError, match="12 folds need at least 12 records, found 11"):
        folds.record_folds(record, y, 12, seed=0)


def test_summary_skips_folds_that_cannot_measure_a_class() -> None:
    names = ("N", "S")
    metrics = [
        {"val/macro_f2": 0.5, "val/recall_S": 0.0, "val/worst/recall_S": 0.0},
        {"val/macro_f2": 0.7, "val/recall_S": 0.6, "val/worst/recall_S": 0.4},
        {"val/macro_f2": 0.9, "val/recall_S": 0.8, "val/worst/recall_S": 0.6},
    ]
    supports = [np.array([10, 0]), np.array([10, 3]), np.array([10, 2])]
    out = folds.summarize(metrics, supports, names, ["val/macro_f2", "val/recall_S"])
    assert out["val/macro_f2"] == pytest.approx(0.7)
    assert out["val/fold_std/macro_f2"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert out["val/fold_min/macro_f2"] == pytest.approx(0.5)
    assert out["val/fold2/macro_f2"] == 0.9
    assert out["val/recall_S"] == pytest.approx(0.7)  # fold 0 holds no S beat
    assert out["val/fold_min/recall_S"] == pytest.approx(0.6)
    assert out["val/worst/recall_S"] == pytest.approx(0.5)
    assert "val/fold_std/worst/recall_S" not in out  # spread only for the headline keys


def cv_config(k: int = 2):
    config = config_lib.load_config_file(
        paths.PROJECT_ROOT / "configs" / "interpatient_resnet1d.py:rr,smoke"
    )
    config.data.cv_folds = k
    config.train.num_seeds = 1
    config.model.hidden, config.model.num_blocks = 8, 1
    config.data.max_train = config.data.max_eval = 0  # whole records (the AF gate needs them)
    return config


def test_two_fold_training_run(project: Path) -> None:
    config = cv_config()
    cv = folds.load_cv(config)
    pool = data_lib.load_parquet(project / "data" / "mitbih_ds1.parq", 5)
    assert len(cv.pool) == len(pool)  # the whole training file, no validation carved out
    result = train_cv(config, run_name="cv", progress=False)
    run_dir = project / "checkpoints" / "cv"
    metric = f"val/{config.train.select_metric}"
    scored = []  # each fold is scored at its last epoch (data.cv_epoch): no look at its records
    for i, fold in enumerate(result.folds):
        fold_dir = run_dir / f"fold{i}"
        assert fold.run_dir == fold_dir and fold.test_report is None  # test never evaluated
        assert (fold_dir / "config.json").is_file() and any((fold_dir / "best").iterdir())
        assert ckpt.find_run_dir(fold_dir) == (fold_dir, "best")
        scored.append(next(h for h in fold.history if h["epoch"] == fold.epochs_run)[metric])
    name = config.train.select_metric
    assert result.score[f"cv/{name}"] == pytest.approx(np.mean(scored))
    assert result.score[f"cv/fold_std/{name}"] == pytest.approx(np.std(scored))
    assert result.score[f"cv/fold_min/{name}"] == pytest.approx(min(scored))
    saved = json.loads((run_dir / "cv.json").read_text())
    assert saved["epoch"] == "last"
    assert [f["scored_epoch"] for f in saved["folds"]] == [f.epochs_run for f in result.folds]
    val_records = [set(f["val_records"]) for f in saved["folds"]]
    assert not val_records[0] & val_records[1]
    assert val_records[0] | val_records[1] == set(np.asarray(pool.record).astype(str))

    # Out-of-fold pooling: every training record once, predicted by the fold that held it out.
    oof = saved["out_of_fold"]
    assert oof["gross"]["beats"] == len(pool)
    assert {r["record"] for r in oof["per_record"]} == val_records[0] | val_records[1]
    probs = np.concatenate([f.val_probs.mean(0) for f in result.folds])
    y = np.concatenate([cv.splits(i, config).val.y for i in range(2)])
    assert oof["gross"]["accuracy"] == pytest.approx(float((probs.argmax(-1) == y).mean()))
    # ... saved as oof.npz, so post-processing is chosen on training patients (cluster study)
    with np.load(run_dir / "oof.npz") as saved_arrays:
        arrays = {k: saved_arrays[k] for k in saved_arrays.files}
    np.testing.assert_allclose(arrays["probs"], probs, rtol=1e-6)
    np.testing.assert_array_equal(arrays["y"], y)
    assert arrays["x"].shape[0] == len(y)
    names = list(config.data.class_names)
    smoothed = pool_out_of_fold(arrays, names, smoothing=1.0, k=2)
    ids = clusters.record_clusters(arrays["x"], arrays["record"], k=2)
    pred = clusters.smooth(probs, ids, names, 1.0).argmax(-1)
    assert smoothed["gross"]["accuracy"] == pytest.approx(float((pred == y).mean()))
    rows = cluster_study.study(arrays, names, [0.0, 1.0], [2], resamples=50)
    assert [r["strength"] for r in rows] == [0.0, 1.0]
    assert rows[0]["accuracy"] == pytest.approx(oof["gross"]["accuracy"])
    assert rows[1]["accuracy"] == pytest.approx(smoothed["gross"]["accuracy"])
    assert "diff_recall_V" in rows[1] and "diff_recall_V" not in rows[0]
    # ... and class decision offsets: fitted on the pool, cross-fitted over the CV's own folds
    chosen = decision_study.study(run_dir, resamples=50)
    assert chosen["records"] == sorted(val_records[0] | val_records[1])
    assert chosen["argmax"]["accuracy"] == pytest.approx(oof["gross"]["accuracy"])
    assert chosen["fitted"]["objective"] >= chosen["argmax"]["objective"]
    crossed = chosen["cross_fitted"]
    assert len(crossed["offsets_per_fold"]) == 2
    assert chosen["adopted"] == (crossed["objective"] > chosen["argmax"]["objective"])
    kept = chosen["fitted_offsets"] if chosen["adopted"] else dict.fromkeys(names, 0.0)
    assert chosen["offsets"] == kept
    assert decision.load(decision_study.write(run_dir, chosen))["offsets"] == kept

    # Re-scoring: each fold's checkpoint predicts its held-out records again. With nothing
    # changed it is the pool itself; changed, a CV folder that cv_compare pairs beat for beat.
    same = cv_rescore.rescore(run_dir, {}, project / "checkpoints" / "same")
    with np.load(project / "checkpoints" / "same" / "oof.npz") as again:
        np.testing.assert_allclose(again["probs"], arrays["probs"], atol=1e-6)
        np.testing.assert_array_equal(again["record"], arrays["record"])
    assert same["out_of_fold"]["gross"]["accuracy"] == pytest.approx(oof["gross"]["accuracy"])
    # ... at the run's own epoch (the last), or at each fold's best (selected on its own records).
    assert same["epoch"] == "last"
    assert same["scored_epochs"] == [f.epochs_run for f in result.folds]
    best = cv_rescore.rescore(run_dir, {}, project / "checkpoints" / "best", epoch="best")
    assert best["scored_epochs"] == [f.best_epoch for f in result.folds]
    assert cv_rescore.default_name(run_dir, {}, "best") == "cv-best"
    paired = cv_compare.compare(run_dir, project / "checkpoints" / "best", resamples=20)
    assert paired["epochs"] == ["last", "best"] and "different epochs" in paired["warning"]
    with pytest.raises(UserError, match="epoch='first'"):
        cv_rescore.rescore(run_dir, {}, project / "checkpoints" / "first", epoch="first")
    refined = {"data.adapt_norm": "normal", "data.adapt_rounds": 2, "data.adapt_min_prob": 0.5}
    assert (
        cv_rescore.default_name(run_dir, refined)
        == "cv-adapt_min_prob0.5-adapt_normnormal-adapt_rounds2"
    )
    changes = {"data.adapt_norm": "record"}  # the smoke records are too short for 'normal'
    out = project / "checkpoints" / cv_rescore.default_name(run_dir, changes)
    cv_rescore.rescore(run_dir, changes, out)
    fold_config = config_lib.from_json((out / "fold1" / "config.json").read_text())
    assert fold_config.data.adapt_norm == "record"
    with np.load(out / "oof.npz") as adapted:
        assert not np.allclose(adapted["probs"], arrays["probs"], atol=1e-3)  # it did something
    paired = cv_compare.compare(run_dir, out, resamples=20)
    assert paired["beats"] == len(pool)
    # The AF gate is a prediction-time setting as well; the pool keeps each beat's position for it.
    assert arrays["sample"].shape == y.shape
    data = config.data
    gate = {"data.af_gate": True, "data.af_gate_pwave": 0.5}
    gated = cv_rescore.rescore(run_dir, gate, project / "checkpoints" / "gated")
    want = pooled_probs(
        arrays, names, data.cluster_smoothing, data.cluster_k, GateSettings(True, pwave_max=0.5)
    )
    assert gated["out_of_fold"]["gross"]["accuracy"] == pytest.approx(
        float((want.argmax(-1) == y).mean())
    )
    assert cv_compare.compare(run_dir, project / "checkpoints" / "gated", resamples=20)
    positionless = {k: v for k, v in arrays.items() if k != "sample"}
    with pytest.raises(data_lib.DataError, match=r"re-score it with scripts/cv_rescore\.py"):
        pooled_probs(positionless, names, gate=GateSettings(enabled=True))
    for overrides, target, needle in [
        ({"optim.learning_rate": 1.0}, "x", "not a prediction-time setting"),
        (changes, out.name, "exists"),
        (changes, "cv", "would replace the run"),
        ({"data.adapt_norm": "record", "data.adapt_rounds": 2}, "z", "refine"),
    ]:
        with pytest.raises(UserError, match=needle):
            cv_rescore.rescore(run_dir, overrides, project / "checkpoints" / target)
    with pytest.raises(data_lib.DataError, match="not a cross-validation run"):
        cv_rescore.rescore(project / "checkpoints", changes, project / "checkpoints" / "y")

    # The tree blend: trees fitted per fold on the fold's training records, blended into the
    # pool beat for beat. Weight 0 is the pool; weight 1 is each fold's trees on its held-out
    # records, as fitting them directly gives.
    small = trees.TreeParams(max_iter=10, min_samples_leaf=5)
    ckpts = project / "checkpoints"
    zero = tree_blend.blend_pool(run_dir, 0.0, ckpts / "t0", params=small)
    assert zero["out_of_fold"]["gross"]["accuracy"] == pytest.approx(oof["gross"]["accuracy"])
    tree_blend.blend_pool(run_dir, 1.0, ckpts / tree_blend.default_name(run_dir, 1.0), params=small)
    direct = []
    for i in range(2):
        fold = cv.splits(i, config)
        direct.append(trees.fit(fold.train, small).predict(fold.val))
    with np.load(ckpts / "cv-trees1" / "oof.npz") as alone:
        np.testing.assert_allclose(alone["probs"], np.concatenate(direct), atol=1e-6)
        np.testing.assert_array_equal(alone["y"], y)
    assert trees.load(ckpts / "cv-trees1" / "fold1").params == small
    assert cv_compare.compare(run_dir, ckpts / "cv-trees1", resamples=20)["beats"] == len(pool)
    for weight, target, needle in [
        (0.5, "t0", "exists"),
        (0.5, "cv", "would replace the run"),
        (1.5, "t2", r"--weight must be in \[0, 1\]"),
    ]:
        with pytest.raises(UserError, match=needle):
            tree_blend.blend_pool(run_dir, weight, ckpts / target, params=small)

    client = MlflowClient(paths.mlflow_uri())
    runs = client.search_runs([client.get_experiment_by_name("ecgjax-train").experiment_id])
    parent = [r for r in runs if r.data.tags["ecgjax.kind"] == "cv"]
    kids = [r for r in runs if r.data.tags["ecgjax.kind"] == "cv_fold"]
    assert len(parent) == 1 and len(kids) == 2 and len(runs) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in kids)
    assert parent[0].data.metrics[f"cv/{name}"] == pytest.approx(np.mean(scored))
    assert parent[0].data.metrics["cv/oof/accuracy"] == pytest.approx(oof["gross"]["accuracy"])
    curve = client.get_metric_history(parent[0].info.run_id, metric)
    assert [m.step for m in curve] == list(range(1, config.train.epochs + 1))
    assert not any(k.startswith("test/") for r in runs for k in r.data.metrics)


def test_cv_needs_the_cv_entry_point(project: Path) -> None:
    with pytest.raises(ValueError, match=r"crossval\.train_cv"):
        train_run(cv_config(), run_name="x", progress=False)
