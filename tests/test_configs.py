"""Every training config's :smoke variant runs end to end (MLflow, Orbax, figures)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import write_synthetic_split
from mlflow.tracking import MlflowClient

from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.config import load_config_file
from ecgjax.training.experiment import train_run
from ecgjax.training.run import run_training
from ecgjax.training.validate import validate

CONFIGS = sorted(p.name for p in (paths.PROJECT_ROOT / "configs").glob("*.py"))
TRAIN_CONFIGS = [
    "default_cnn.py:smoke",
    "default_transformer.py:smoke",
    "resnet1d.py:smoke",
    "interpatient_resnet1d.py:smoke",
    "interpatient_resnet1d.py:rr,smoke",
    "interpatient.py:smoke",  # the recipe: three channels, cluster smoothing, adapted batch norm
]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_loads_with_smoke_variant(name: str) -> None:
    config = load_config_file(paths.PROJECT_ROOT / "configs" / f"{name}:smoke")
    # Smoke means seconds: a few hundred beats and a handful of steps.
    assert 0 < config.data.max_train <= 2000
    assert 0 < config.train.steps_per_epoch <= 20
    assert load_config_file(paths.PROJECT_ROOT / "configs" / name).name


@pytest.mark.parametrize("name", ["default_cnn.py", "asha_cnn.py"])  # training, sweep
def test_unknown_variant_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        load_config_file(paths.PROJECT_ROOT / "configs" / f"{name}:huge")


def test_interpatient_variants_combine() -> None:
    config = load_config_file(
        paths.PROJECT_ROOT / "configs" / "interpatient_resnet1d.py:rr,reverse"
    )
    assert config.model.rr_context and config.data.val_split == "record"
    assert (config.data.train_file, config.data.test_file) == ("mitbih_ds2.parq", "mitbih_ds1.parq")


def test_the_recipe_variants_keep_its_width_and_whole_record_steps_except_in_real_time() -> None:
    recipe = paths.PROJECT_ROOT / "configs" / "interpatient.py"
    for variant, offline in (("", True), (":reverse", True), (":reverse,causal", False)):
        config = validate(load_config_file(f"{recipe}{variant}"))
        assert config.data.adapt_norm == ("normal" if offline else "none")
        assert config.model.norm == "batch"
        assert config.model.hidden == 48  # wider than the :rr model's 32 (session 18)
        assert config.data.af_gate == offline
        assert config.data.prematurity_gate == (0.9 if offline else 0.0)  # session 19


def test_sweep_full_variant_trains_whole_epochs() -> None:
    config = load_config_file(paths.PROJECT_ROOT / "configs" / "asha_cnn.py:full")
    assert config.train.steps_per_epoch == 0 and config.tune.num_samples == 64


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_smoke_training_run(name: str, project: Path) -> None:
    if name.startswith("interpatient.py"):  # the recipe reads lead 2
        write_synthetic_split(project / "data" / "mitbih_ds1.parq", 6, 60, seed=3, lead2=True)
        write_synthetic_split(project / "data" / "mitbih_ds2.parq", 3, 40, seed=4, lead2=True)
    config = load_config_file(paths.PROJECT_ROOT / "configs" / name)
    result = train_run(config, run_name="smoke", progress=False)
    run_dir = project / "checkpoints" / "smoke"
    assert result.epochs_run == config.train.epochs
    assert (run_dir / "config.json").is_file() and (run_dir / "meta.json").is_file()
    assert any((run_dir / "best").iterdir()) and any((run_dir / "latest").iterdir())
    assert (run_dir / "curves.png").is_file() and (run_dir / "confusion_test.png").is_file()
    assert 0.0 <= result.test_metrics["test/macro_recall"] <= 1.0
    client = MlflowClient(paths.mlflow_uri())
    runs = client.search_runs([client.get_experiment_by_name("ecgjax-train").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "val/recall_S")
    assert [m.step for m in history] == list(range(1, config.train.epochs + 1))
    assert runs[0].data.params["model.name"] == config.model.name
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "figures")}
    assert artifacts == {"figures/curves.png", "figures/confusion_test.png"}


def test_smoke_run_learns_on_the_real_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer's first run must visibly learn: "all N" scores macro recall 0.2."""
    source = os.environ.get("ECGJAX_MITDB_DIR")
    if not source or not (Path(source) / "100.hea").is_file():
        pytest.skip("set ECGJAX_MITDB_DIR to the MIT-BIH records folder to run this test")
    monkeypatch.setenv("ECGJAX_DATA_DIR", str(tmp_path / "data"))  # prepared here, from the records
    config = load_config_file(paths.PROJECT_ROOT / "configs" / "default_cnn.py:smoke")
    result = run_training(
        config, data_lib.load_splits(config), tmp_path / "run", evaluate_test=False
    )
    last = result.history[-1]
    assert last["val/macro_recall"] > 0.3 and last["val/worst/macro_recall"] > 0.3, last
