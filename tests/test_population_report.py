"""The report of a population sweep shows the members, read back from the MLflow store."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from test_population_members import _synthetic_epochs
from test_report import pdf_text

from ecgjax import config as config_lib
from ecgjax.reporting import report
from ecgjax.tracking import Tracker
from ecgjax.tuning import members

SWEEP = "pop_sweep"


def _log_trial(tracker: Tracker, parent: str, trial_id: str, epochs: list[dict], lr0: float):
    """A population trial as the sweep's MLflow callback logs it: the best setting's metrics
    per epoch, one member table artifact per epoch, the best member's values as tags."""
    rows = members.lineages(epochs)
    best = rows[0]
    child = tracker.start_run(
        trial_id,
        parent_id=parent,
        tags={
            "ecgjax.kind": "trial",
            "ecgjax.sweep_id": SWEEP,
            "ecgjax.trial_id": trial_id,
            "ecgjax.param.optim.learning_rate": lr0,  # member 0: the searcher's point
            "ecgjax.param.model.hidden": 8 if trial_id == "t_a" else 16,
            **{f"{members.BEST_MEMBER}{k}": v for k, v in best["values"].items()},
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        for e in epochs:
            by_setting: dict[int, list[float]] = {}
            for m in e["members"]:
                by_setting.setdefault(m["setting"], []).append(m["val_macro_f2"])
            top = max(sum(v) / len(v) for v in by_setting.values())
            metrics = {
                "val/macro_f2": top,
                "val/worst/macro_f2": top - 0.01,
                "val/std/macro_f2": 0.005,
                "val/ensemble/macro_f2": top + 0.01,
            }
            tracker.log_metrics(child, metrics, e["epoch"])
            table = Path(tmp) / f"members_epoch{e['epoch']:03d}.json"
            entries = {
                members.MEMBERS_KEY: e["members"],
                members.BEST_VALUES_KEY: best["values"],
                members.EVENTS_KEY: e["events"],
            }
            table.write_text(json.dumps(entries))
            tracker.log_artifact(child, table, "population")
    tracker.end_run(child)
    return rows


def test_report_of_a_population_sweep_shows_its_members(project: Path) -> None:
    tracker = Tracker("ecgjax-tune")
    base = config_lib.base_config()
    base.tune.population, base.tune.metric = 8, "val/macro_f2"
    tags = {
        "ecgjax.kind": "sweep",
        "ecgjax.sweep_id": SWEEP,
        "ecgjax.config_file": "configs/population_resnet1d.py:smoke",
        "ecgjax.hypothesis": "a population finds a better rate",
        "ecgjax.tune.metric": "val/macro_f2",
        "ecgjax.tune.mode": "max",
        "ecgjax.tune.max_epochs": "3",
    }
    parent = tracker.start_run(SWEEP, tags=tags)
    tracker.log_params(parent, config_lib.flatten(base))
    best_rows = _log_trial(tracker, parent, "t_a", _synthetic_epochs(), 1e-4)
    other = _synthetic_epochs(settings=4, seeds=2)
    for e in other:  # a worse trial
        for m in e["members"]:
            m["val_macro_f2"] -= 0.3
    other_rows = _log_trial(tracker, parent, "t_b", other, 2e-4)
    tracker.end_run(parent)

    out = report.write_report(SWEEP, repo="https://example.org/x.git", test=False)
    md = out["markdown"].read_text()
    text = pdf_text(out["pdf"])
    assert [t.trial_id for t in out["sweep"].ok] == ["t_a", "t_b"]
    body, _, appendix = md.partition("# Appendix")
    assert "## Population members" in body and "Population members" in text
    assert len(best_rows) == 12
    assert "Members of trial t_a: 8 settings x 2 seeds at the end, 4 replaced" in body
    assert "2 more in the appendix" in body
    section = body.split("## Population members")[1]
    for r in best_rows[:10]:
        assert f"{r['best']:.4f} (e{r['best_epoch']})" in section
    assert f"{best_rows[-1]['best']:.4f} (e{best_rows[-1]['best_epoch']})" not in section
    assert "## D. Members of trial t_a" not in appendix  # C: no "all trials" table here
    assert "## C. Members of trial t_a" in appendix
    full = appendix.split("## C. Members of trial t_a")[1]
    for r in best_rows:
        assert f"{r['best']:.4f} (e{r['best_epoch']})" in full
    assert "replaced e1 (pbt: setting 5's weights)" in full
    figure = project / "report" / "figures" / SWEEP / "members.png"
    assert figure.is_file() and f"figures/{SWEEP}/members.png" in md
    assert f"{len(best_rows) + len(other_rows)} settings in 2 trials" in md
    # The trial table shows the best member's learning rate, not member 0's (the searcher's).
    lr = f"{best_rows[0]['values']['optim.learning_rate']:.3g}"
    trial_table = body.split("## Search space and trials")[1].split("##")[0]
    assert lr in trial_table and "0.0001 " not in trial_table


def test_report_of_an_ordinary_sweep_has_no_members_section(project: Path) -> None:
    tracker = Tracker("ecgjax-tune")
    base = config_lib.base_config()
    tags = {"ecgjax.kind": "sweep", "ecgjax.sweep_id": "plain", "ecgjax.tune.max_epochs": "1"}
    parent = tracker.start_run("plain", tags=tags)
    tracker.log_params(parent, config_lib.flatten(base))
    child = tracker.start_run(
        "t", parent_id=parent, tags={"ecgjax.kind": "trial", "ecgjax.sweep_id": "plain"}
    )
    metric = str(base.tune.metric)
    prefix, _, name = metric.partition("/")
    tracker.log_metrics(
        child,
        {
            metric: 0.5,
            f"{prefix}/worst/{name}": 0.4,
            f"{prefix}/std/{name}": 0.1,
            f"{prefix}/ensemble/{name}": 0.55,
        },
        1,
    )
    tracker.end_run(child)
    tracker.end_run(parent)
    out = report.write_report("plain", repo="x", test=False)
    assert "Population members" not in out["markdown"].read_text()
