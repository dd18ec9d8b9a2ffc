"""The report's inputs: the sweep as the MLflow store holds it (parent run, trials, metric
histories), the best trial's test evaluation (logged to the store first) and the git remote.

The report reads everything through here, so every number it prints is a value of the store.
Trials are ranked by their best epoch (the state their ``best/`` checkpoint holds), not by the
epoch a scheduler happened to stop them at.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.tracking import Tracker
from ecgjax.tuning import members as members_lib


class ReportError(RuntimeError):
    """The sweep is not in the MLflow store, or has no usable trial."""


@dataclass
class Trial:
    trial_id: str
    run_id: str
    status: str
    tuned: dict[str, str]
    params: dict[str, str]
    checkpoint: str | None
    error: str | None
    curve: list[tuple[int, float]] = field(default_factory=list)
    best_epoch: int = 0
    at_best: dict[str, float] = field(default_factory=dict)  # metrics at the best epoch
    metrics: dict[str, float] = field(default_factory=dict)  # latest values (eval/test/...)
    tags: dict[str, str] = field(default_factory=dict)  # e.g. ecgjax.eval.test.protocol


@dataclass
class Sweep:
    sweep_id: str
    parent: Any  # mlflow Run
    metric: str
    mode: str
    class_names: list[str]
    max_epochs: int
    trials: list[Trial]  # ranked, best first; failed and empty trials last
    tuned_keys: list[str]

    @property
    def ok(self) -> list[Trial]:
        """Trials that logged the metric, best first."""
        return [t for t in self.trials if t.at_best]


def _keys(metric: str, names: list[str]) -> dict[str, str]:
    prefix, _, name = metric.partition("/")
    keys = {
        "metric": metric,
        "worst": f"{prefix}/worst/{name}",
        "std": f"{prefix}/std/{name}",
        "ensemble": f"{prefix}/ensemble/{name}",
    }
    keys.update({f"recall_{c}": f"{prefix}/recall_{c}" for c in names})
    return keys


def load_sweep(sweep_id: str, tracker: Tracker) -> Sweep:
    """Parent run, child runs and their metric histories of ``sweep_id``."""
    client = tracker.client
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments,
        filter_string=(f"tags.`ecgjax.kind` = 'sweep' and tags.`ecgjax.sweep_id` = '{sweep_id}'"),
    )
    if not found:
        raise ReportError(
            f"sweep {sweep_id!r}: no parent run tagged ecgjax.kind=sweep in {tracker.uri}"
        )
    parent = found[0]
    tags = parent.data.tags
    metric = tags.get("ecgjax.tune.metric") or parent.data.params.get(
        "tune.metric", "val/macro_recall"
    )
    mode = tags.get("ecgjax.tune.mode") or parent.data.params.get("tune.mode", "max")
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(f"tags.`ecgjax.sweep_id` = '{sweep_id}' and tags.`ecgjax.kind` = 'trial'"),
        max_results=5000,
    )
    if not children:
        raise ReportError(f"sweep {sweep_id!r}: the store has no trial runs for it")
    names = _class_names(parent.data.params, children[0].data.metrics)
    keys = _keys(metric, names)
    sign = 1.0 if mode == "max" else -1.0
    trials = []
    for run in children:
        t = run.data.tags
        tuned = {
            k.removeprefix("ecgjax.param."): v
            for k, v in t.items()
            if k.startswith("ecgjax.param.")
        }
        # A population trial: the values of its best member (what it reports and exports),
        # not member 0's, which are the searcher's point and the run's params.
        best_member = {
            k.removeprefix(members_lib.BEST_MEMBER): v
            for k, v in t.items()
            if k.startswith(members_lib.BEST_MEMBER)
        }
        trial = Trial(
            t.get("ecgjax.trial_id", run.info.run_name),
            run.info.run_id,
            run.info.status,
            tuned | best_member,
            dict(run.data.params) | best_member,
            t.get("ecgjax.checkpoint"),
            t.get("ecgjax.error"),
            metrics=dict(run.data.metrics),
            tags=dict(t),
        )
        history = {
            k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            for k, key in keys.items()
        }
        trial.curve = sorted(history["metric"].items())
        if trial.curve:
            trial.best_epoch = max(trial.curve, key=lambda p: (sign * p[1], -p[0]))[0]
            trial.at_best = {
                k: h[trial.best_epoch] for k, h in history.items() if trial.best_epoch in h
            }
        trials.append(trial)
    # Ties go to the trial the sweep itself chose (its checkpoints/<sweep>/best), then by id.
    chosen = tags.get("ecgjax.best_trial")
    trials.sort(
        key=lambda tr: (
            not tr.at_best,
            -sign * tr.at_best.get("metric", 0.0),
            tr.trial_id != chosen,
            tr.trial_id,
        )
    )
    tuned_keys = sorted({k for tr in trials for k in tr.tuned})
    tuned_keys = [
        k for k in tuned_keys if len({tr.tuned.get(k) for tr in trials}) > 1
    ] or tuned_keys
    max_epochs = int(
        tags.get("ecgjax.tune.max_epochs") or parent.data.params.get("train.epochs") or 0
    )
    return Sweep(sweep_id, parent, metric, mode, names, max_epochs, trials, tuned_keys)


def _class_names(params: dict[str, str], metrics: dict[str, float]) -> list[str]:
    try:
        return [str(c) for c in ast.literal_eval(params["data.class_names"])]
    except (KeyError, ValueError, SyntaxError):
        return sorted({k.rsplit("_", 1)[1] for k in metrics if k.startswith("val/recall_")})


def repo_url() -> str:
    """``git remote get-url origin`` of the project, or a note that there is none."""
    try:
        out = subprocess.run(
            ["git", "remote", "get-url", "origin"],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "(no remote configured)"
    return out.stdout.strip() or "(no remote configured)"


def evaluate_best(sweep: Sweep, tracker: Tracker) -> dict[str, Any] | None:
    """Evaluate the best trial on its test split once; its numbers go to the store first."""
    from ecgjax.evaluation import evaluate  # heavy (JAX); only when a test evaluation is wanted

    best = sweep.trials[0]
    if not best.at_best or not best.checkpoint or not Path(best.checkpoint).is_dir():
        return None
    loaded = evaluate.load_ensemble(best.checkpoint)
    test, _ = evaluate.load_data(loaded)
    report = evaluate.evaluate(loaded, test, name="test")
    run = tracker.client.get_run(best.run_id)
    best.metrics, best.tags = dict(run.data.metrics), dict(run.data.tags)
    return report


def confusion_figure(
    sweep: Sweep, tracker: Tracker, evaluation: dict[str, Any] | None, fig_dir: Path
) -> Path | None:
    """The test confusion matrix of the evaluation, else the trial's validation one from MLflow
    (copied into the report folder, so it stands on its own)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    for f in (evaluation or {}).get("figures", []):
        if f.endswith("_confusion.png"):
            return Path(shutil.copy2(f, fig_dir / "confusion_test.png"))
    try:
        got = tracker.client.download_artifacts(
            sweep.ok[0].run_id, "figures/confusion_val.png", str(fig_dir)
        )
    except Exception:  # MlflowException/OSError: the trial logged no confusion figure
        return None
    return Path(got)


def file_params(config_file: str) -> dict[str, str] | None:
    """The config file's own values as MLflow params (so overrides given to tune.py show up)."""
    path, _, arg = config_file.partition(":")
    for root in (Path.cwd(), paths.PROJECT_ROOT):
        if (root / path).is_file():
            spec = str(root / path) + (f":{arg}" if arg else "")
            try:
                return {
                    k: str(v)
                    for k, v in config_lib.flatten(config_lib.load_config_file(spec)).items()
                }
            except Exception:  # a config file that no longer loads: fall back to the parent run
                return None
    return None
