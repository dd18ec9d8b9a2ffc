"""MLflow side of an evaluation: find the run a checkpoint was trained in, log the results there.

A checkpoint's numbers belong beside its training run (found by its ``ecgjax.checkpoint`` tag,
or for a sweep's ``best`` copy, the trial it was copied from); an untracked checkpoint gets an
``ecgjax-eval`` run of its own. Besides the metrics, the tags say which protocol the
evaluation measured (``ecgjax.eval.<name>.patients`` = seen/new/unknown), so the report can
label what it reads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecgjax import config as config_lib
from ecgjax.scoring import aami_tables
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.tracking import Tracker
from ecgjax.training.checkpoint import CheckpointError

if TYPE_CHECKING:
    from ecgjax.evaluation.evaluate import Loaded

EVAL_EXPERIMENT = "ecgjax-eval"


def _search_all(tracker: Tracker, filter_string: str) -> list[Any]:
    """Runs matching ``filter_string`` in every experiment (tags do not say which one)."""
    ids = [e.experiment_id for e in tracker.client.search_experiments()]
    return tracker.client.search_runs(ids, filter_string=filter_string) if ids else []


def find_tracked_run(tracker: Tracker, run_dir: Path) -> str | None:
    """The MLflow run whose ``ecgjax.checkpoint`` tag names ``run_dir``; for a sweep's ``best``
    copy, the run of the trial it was copied from."""
    for value in dict.fromkeys([str(Path(run_dir).resolve()), str(run_dir)]):
        runs = _search_all(tracker, f"tags.`ecgjax.checkpoint` = '{value}'")
        if runs:
            return runs[0].info.run_id
        for sweep in _search_all(tracker, f"tags.`ecgjax.best_dir` = '{value}'"):
            sweep_id = sweep.data.tags.get("ecgjax.sweep_id")
            trial_id = sweep.data.tags.get("ecgjax.best_trial")
            trials = _search_all(
                tracker,
                f"tags.`ecgjax.sweep_id` = '{sweep_id}' and tags.`ecgjax.trial_id` = '{trial_id}'",
            )
            if trials:
                return trials[0].info.run_id
    return None


def check_owner(tracker: Tracker, run: Any, folder: str) -> None:
    """Refuse a run whose folder now holds another run's model (overwritten, or shared by two
    runs started in the same second before run folders were claimed exclusively)."""
    text = run.info.run_id
    if "ecgjax.superseded" in run.data.tags:
        raise CheckpointError(
            f"MLflow run {text}: superseded ({run.data.tags['ecgjax.superseded']}); {folder} "
            "holds another run's model now"
        )
    ids = [e.experiment_id for e in tracker.client.search_experiments()]
    for value in ("ecgjax.run_dir", "ecgjax.checkpoint"):
        for other in tracker.client.search_runs(ids, filter_string=f"tags.`{value}` = '{folder}'"):
            later = other.info.start_time > run.info.start_time
            if other.info.run_id != text and later and "ecgjax.superseded" not in other.data.tags:
                raise CheckpointError(
                    f"MLflow run {text}: {folder} was also written by the later run "
                    f"{other.info.run_id} ({other.info.run_name}); the model there may not be "
                    f"this run's"
                )


def log_evaluation(loaded: Loaded, report: dict[str, Any]) -> str:
    """Log to the run's MLflow entry (found by its checkpoint tag), or a new ``ecgjax-eval`` run."""
    tracker = Tracker(EVAL_EXPERIMENT)
    run_id = find_tracked_run(tracker, loaded.run_dir)
    if run_id is None:
        run_id = tracker.start_run(
            f"eval-{loaded.run_dir.name}",
            tags={"ecgjax.checkpoint": str(loaded.run_dir.resolve()), "ecgjax.kind": "eval"},
        )
        tracker.log_params(run_id, config_lib.flatten(loaded.config))
        tracker.end_run(run_id)
    prefix = f"eval/{report['name']}"
    flat = metrics_lib.flat_metrics(report["metrics"], prefix, loaded.class_names)
    if report["operating_point"] is not None:
        rf = report["operating_point"]["recall_first"]
        for c, cname in enumerate(loaded.class_names):
            flat[f"{prefix}/recall_first/recall_{cname}"] = rf["recall"][c]
            flat[f"{prefix}/recall_first/precision_{cname}"] = rf["precision"][c]
        flat[f"{prefix}/recall_first/macro_recall"] = rf["macro_recall"]
    flat |= aami_tables.flat_metrics(report["aami"]["ensemble"], f"{prefix}/aami")
    tracker.log_metrics(run_id, flat, step=loaded.epoch)
    tags = {
        f"ecgjax.eval.{report['name']}": report["data"]["file"],
        f"ecgjax.eval.{report['name']}.patients": report["patients"],
        f"ecgjax.eval.{report['name']}.protocol": report["protocol"],
    }
    tracker.set_tags(run_id, tags)
    for fig in report.get("figures", []):
        tracker.log_artifact(run_id, Path(fig), f"evaluation/{report['name']}")
    json_path = loaded.run_dir / "evaluation" / f"{report['name']}.json"
    if json_path.is_file():
        tracker.log_artifact(run_id, json_path, f"evaluation/{report['name']}")
    return run_id
