"""Member tables of a population trial: every setting it trained, best first (console, report)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from test_population import _space, beats, small_config

from ecgjax import data as data_lib
from ecgjax.tuning import members


def _trial_results(selection: str, epochs: int = 3) -> tuple[list[dict], object]:
    """A real population trial's per-epoch results as the trainable reports them."""
    from ecgjax.training.population_run import PopulationRun

    config = small_config("loop")
    # Lean (the equivalence tests cover the traced options); selection is what is tested.
    config.model.rr_context, config.augment.enabled = False, False
    config.loss.name, config.sampling.name = "weighted_ce", "uniform"
    config.train.num_seeds, config.train.epochs = 2, epochs
    config.train.select_metric = "macro_f2"
    config.tune.population, config.tune.population_selection = 4, selection
    config.tune.population_interval, config.tune.population_quantile = 1, 0.5
    splits = data_lib.Splits(beats(), beats(60, 1), beats(60, 2))
    run = PopulationRun(config, splits, _space(), (0, 5))
    results = []
    while not run.done:
        r = run.step()
        results.append(
            {
                "epoch": r.epoch,
                members.MEMBERS_KEY: json.dumps(r.members),
                members.EVENTS_KEY: json.dumps([asdict(e) for e in r.events]),
            }
        )
    return results, run


@pytest.mark.parametrize("selection", ["pbt", "halving"])
def test_lineages_of_a_real_trial_rank_the_exported_best_first(selection: str) -> None:
    results, run = _trial_results(selection)
    rows = members.lineages(members.epochs_from_results(results))
    events = [e for r in results for e in json.loads(r[members.EVENTS_KEY])]
    assert len(events) == 2 * 2  # half of 4 settings, after epochs 1 and 2 (not the last)
    assert len(rows) == 4 + len(events)  # every setting that trained, replaced ones too
    assert sum(r["alive"] for r in rows) == 4
    best = rows[0]
    assert best["best"] == pytest.approx(run.best["metric"])
    assert best["best_epoch"] == run.best["epoch"]
    assert best["values"] == pytest.approx(run.best["values"])
    assert best["seeds"] == [0, 1]
    scores = [r["best"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    verb = "stopped" if selection == "halving" else "replaced"
    ended = [r for r in rows if not r["alive"]]
    assert len(ended) == len(events)
    assert all(r["fate"].startswith(f"{verb} e") and selection in r["fate"] for r in ended)
    born = [r for r in rows if r["origin"] != "drawn"]
    assert len(born) == len(events) and all(r["origin"].startswith(selection) for r in born)
    assert sum(r["copies"] for r in rows) == len(events)
    # A replaced setting's values are those it trained with, not its successor's.
    for r in ended:
        first = json.loads(results[r["start"] - 1][members.MEMBERS_KEY])
        row = next(m for m in first if m["setting"] == r["setting"])
        assert r["values"]["optim.learning_rate"] == row["optim.learning_rate"]


def _synthetic_epochs(settings: int = 8, seeds: int = 2, epochs: int = 3) -> list[dict]:
    """Member tables shaped like the trainable's: setting k's score rises with its rate."""
    rng = np.random.default_rng(0)
    lr = list(10 ** rng.uniform(-4, -2, settings))
    out = []
    for e in range(1, epochs + 1):
        rows = [
            {
                "member": p * seeds + s,
                "setting": p,
                "seed": s,
                "optim.learning_rate": lr[p],
                "model.dropout": 0.1 * (p % 3),
                "val_macro_f2": 0.5 + 30 * lr[p] + 0.01 * e + 0.001 * s,
                "train_loss": 1.0 / e,
            }
            for p in range(settings)
            for s in range(seeds)
        ]
        order = np.argsort([-lr[p] for p in range(settings)])
        events = []
        if e < epochs:
            for target in order[-2:]:
                lr[int(target)] = lr[int(order[0])] * 0.8
                events.append(
                    {"kind": "pbt", "target": int(target), "source": int(order[0]), "values": {}}
                )
        out.append({"epoch": e, "members": rows, "events": events})
    return out


def test_console_member_table_shows_the_top_rows_and_where_the_rest_are(tmp_path: Path) -> None:
    from ecgjax.tuning import summary

    rows = members.lineages(_synthetic_epochs())
    assert len(rows) == 8 + 4
    console = Console(width=250, record=True)
    where = tmp_path / "sweep.json"
    row = {"trial_id": "t_00001", "members": rows}
    summary.print_members(row, "val/macro_f2", console, where, top=5)
    text = console.export_text()
    assert "members of trial t_00001" in text and "8 settings x 2 seeds" in text
    assert f"7 more in {where}" in text
    table = text.split("7 more in")[0]
    for r in rows[:5]:
        assert f"{r['best']:.4f} (e{r['best_epoch']})" in table
        assert f"{r['values']['optim.learning_rate']:.3g}" in table
    assert f"{rows[5]['best']:.4f} (e" not in table
    assert "pbt e1: s5, perturbed" in table and "copied 4x" in table
    assert all(r["alive"] for r in rows[:5]) and not rows[-1]["alive"]  # replaced: at the end
    # Learning rate first, then the other varied value.
    assert members.varied_keys(rows) == ["optim.learning_rate", "model.dropout"]


def test_member_tables_read_back_from_mlflow_artifacts(tmp_path: Path) -> None:
    epochs = _synthetic_epochs()
    for e in epochs:  # the files the MLflow callback writes
        table = {
            members.MEMBERS_KEY: e["members"],
            members.BEST_VALUES_KEY: {},
            members.EVENTS_KEY: e["events"],
        }
        (tmp_path / f"members_epoch{e['epoch']:03d}.json").write_text(json.dumps(table))
    (tmp_path / "members.json").write_text("[]")  # the ranked table: not a per-epoch one
    assert members.lineages(members.epochs_from_folder(tmp_path)) == members.lineages(epochs)
    (tmp_path / "members_epoch004.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"members_epoch004\.json: not a member table"):
        members.epochs_from_folder(tmp_path)
