"""A population sweep end to end: Ray Tune, member tables in MLflow, the best as a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.tracking import Tracker
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.engine import Ensemble
from ecgjax.tuning import members, sweep


@pytest.fixture
def ray_local():
    import ray

    # address="local": always a fresh cluster of our own, even when another one is running here.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_population_smoke_sweep(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    ray_local: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ECGJAX_RAY_RESULTS", str(project / "ray_results"))
    path = paths.PROJECT_ROOT / "configs/population_resnet1d.py:smoke"
    config = config_lib.load_config_file(path)
    result = sweep.run_sweep(config, str(path), "a population finds a better rate", name="pop")
    assert result.complete and [r["status"] for r in result.rows] == ["ok"]
    row = result.rows[0]
    assert row["population"] == config.tune.population * config.tune.seeds_per_trial
    assert {"optim.learning_rate", "model.dropout"} <= set(row["params"])
    client = Tracker(sweep.EXPERIMENT).client
    kids = client.search_runs(
        [Tracker(sweep.EXPERIMENT).experiment_id],
        filter_string="tags.`ecgjax.kind` = 'trial'",
    )
    assert len(kids) == 1
    tables = {a.path for a in client.list_artifacts(kids[0].info.run_id, "population")}
    epochs = int(config.tune.max_epochs)
    per_epoch = {f"population/members_epoch{e:03d}.json" for e in range(1, epochs + 1)}
    assert tables == per_epoch | {"population/members.json"}
    # Every member is visible: sweep.json holds the trial's member table, best first; the
    # console showed it; the MLflow run names the best member by its values.
    state = json.loads((result.sweep_dir / "sweep.json").read_text())
    rows = state["trials"][0]["members"]
    alive = [r for r in rows if r["alive"]]
    assert len(alive) == config.tune.population and len(rows) > len(alive)  # PBT replaced some
    assert rows[0]["best"] == pytest.approx(row["metric"])
    for k, v in rows[0]["values"].items():
        assert row["params"][k] == pytest.approx(v)
    out = capsys.readouterr().out
    assert f"members of trial {row['trial_id']}: {config.tune.population} settings x 1 seeds" in out
    assert f"{rows[0]['best']:.4f} (e{rows[0]['best_epoch']})" in out
    tags = client.get_run(kids[0].info.run_id).data.tags
    assert float(tags[f"{members.BEST_MEMBER}optim.learning_rate"]) == pytest.approx(
        rows[0]["values"]["optim.learning_rate"]
    )
    assert tags[f"{members.BEST_MEMBER_META}setting"] == str(rows[0]["setting"])
    assert int(tags["ecgjax.population_members"]) == len(rows)
    # The best setting is a normal ensemble checkpoint with the winner's values.
    best = result.sweep_dir / "best"
    config_json, meta = ckpt.read_run_files(best)
    exported = config_lib.from_json(config_json)
    assert exported.optim.learning_rate == pytest.approx(row["params"]["optim.learning_rate"])
    ens = Ensemble(exported, None, meta["seeds"], context_dim=meta["context_dim"])
    ckpt.restore_dir(best / "best", ens.abstract_state())
