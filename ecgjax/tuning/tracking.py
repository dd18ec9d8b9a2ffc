"""MLflow logging of a sweep from the Ray Tune driver: the single writer to the SQLite store.

Trials run in parallel worker processes; if each wrote to SQLite, writes would be lost to
"database is locked". Instead Tune hands every result to this callback in the driver, which
logs one child run per trial under the sweep's parent run. Child runs are found by the tag
``ecgjax.trial_key`` before one is created, so a resumed sweep never duplicates them.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import ml_collections
from ray.tune import Callback
from ray.tune.experiment import Trial

from ecgjax import config as config_lib
from ecgjax.scoring import plots
from ecgjax.tracking import Tracker
from ecgjax.tuning import members as members_lib
from ecgjax.tuning.trainable import flatten_params, trial_config

_INTERNAL = ("val_confusion",)  # reported to Tune for the driver's plots, not a metric


def error_reason(text: str) -> str:
    """The ``SomeError: message`` line of a trial's traceback (what the user needs first)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b.*", line):
            return line[:500]
    return (lines[-1] if lines else "unknown error")[:500]


def trial_error(trial: Trial) -> str:
    """The reason a trial failed, read from the error file Tune wrote."""
    path = trial.error_file
    if path and Path(path).is_file():
        return error_reason(Path(path).read_text(errors="replace"))
    return "unknown error (no error file)"


class MlflowSweepCallback(Callback):
    """Logs each trial as a child run of the sweep's parent run.

    Tune pickles this object with the experiment (for ``Tuner.restore``), so it holds only
    plain data and opens its MLflow client lazily.
    """

    def __init__(
        self,
        experiment: str,
        parent_run_id: str,
        sweep_id: str,
        base_json: str,
        checkpoint_root: str,
    ) -> None:
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.base_json = base_json
        self.checkpoint_root = checkpoint_root
        self._tracker: Tracker | None = None
        self._runs: dict[str, str] = {}
        self._last_step: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tracker"] = None
        state["_runs"] = {}
        state["_last_step"] = {}
        return state

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.experiment)
        return self._tracker

    def run_dir(self, trial: Trial) -> Path:
        return Path(self.checkpoint_root) / self.sweep_id / trial.trial_id

    def _config(self, trial: Trial) -> ml_collections.ConfigDict:
        return trial_config(config_lib.from_json(self.base_json), trial.config)

    def child_run(self, trial: Trial) -> str:
        """The trial's child run id, created on first sight (a resumed trial keeps its run)."""
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        key = f"{self.sweep_id}/{trial.trial_id}"
        run_id = self.tracker.find_run("ecgjax.trial_key", key)
        if run_id is None:
            tags = {
                "ecgjax.kind": "trial",
                "ecgjax.sweep_id": self.sweep_id,
                "ecgjax.trial_id": trial.trial_id,
                "ecgjax.trial_key": key,
                "ecgjax.checkpoint": str(self.run_dir(trial)),
            }
            run_id = self.tracker.start_run(trial.trial_id, parent_id=self.parent_run_id, tags=tags)
            self._last_step[trial.trial_id] = 0
        else:  # a resumed sweep: epochs this run already holds are not logged twice
            history = self.tracker.client.get_metric_history(run_id, "train/loss")
            self._last_step[trial.trial_id] = max((m.step for m in history), default=0)
        self._runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self.child_run(trial)
        self.tracker.client.update_run(run_id, status="RUNNING")
        # PBT changes a trial's config when it exploits; params keep the first values and
        # the current ones go to tags, since MLflow params are immutable.
        params = config_lib.flatten(self._config(trial))
        self.tracker.log_params(run_id, params)
        sampled = {f"ecgjax.param.{k}": v for k, v in flatten_params(trial.config).items()}
        self.tracker.set_tags(run_id, sampled)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        metrics = {k: v for k, v in result.items() if k not in _INTERNAL and "/" in k}
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        run_id = self.child_run(trial)
        # A trial that restarts after a killed driver repeats epochs it had already reported;
        # training is deterministic, so the logged values stand and are not duplicated.
        if step <= self._last_step.get(trial.trial_id, 0):
            return
        self.tracker.log_metrics(run_id, metrics, step=step)
        if members_lib.MEMBERS_KEY in result:  # a population trial: one member table per epoch
            with tempfile.TemporaryDirectory() as tmp:
                table = Path(tmp) / f"members_epoch{step:03d}.json"
                keys = (
                    members_lib.MEMBERS_KEY,
                    members_lib.BEST_VALUES_KEY,
                    members_lib.EVENTS_KEY,
                )
                entries = {k: result.get(k) for k in keys}
                entries = {
                    k: json.loads(v) if isinstance(v, str) else v for k, v in entries.items()
                }
                table.write_text(json.dumps(entries, default=str))
                self.tracker.log_artifact(run_id, table, "population")
            # The best member so far, where the run's page shows it: its values as tags (the
            # params keep member 0's, the searcher's point, and MLflow params are immutable).
            best = result.get(members_lib.BEST_VALUES_KEY) or {}
            tags = {f"{members_lib.BEST_MEMBER}{k}": v for k, v in best.items()}
            tags[f"{members_lib.BEST_MEMBER_META}epoch"] = result.get("best_epoch", step)
            self.tracker.set_tags(run_id, tags)
        self._last_step[trial.trial_id] = step

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._finish(trial, "FINISHED")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._finish(trial, "FAILED", trial_error(trial))

    def _finish(self, trial: Trial, status: str, error: str | None = None) -> None:
        run_id = self.child_run(trial)
        last = trial.last_result or {}
        tags: dict[str, Any] = {"ecgjax.epochs": last.get("training_iteration", 0)}
        if error is not None:
            tags["ecgjax.error"] = error
        self.tracker.set_tags(run_id, tags)
        try:
            self._figures(run_id, trial, last)
            if members_lib.MEMBERS_KEY in last:
                self._members(run_id, trial)
        finally:
            self.tracker.end_run(run_id, status=status)

    def _figures(self, run_id: str, trial: Trial, last: dict) -> None:
        """Confusion matrix of the last validation ensemble and the learning curves."""
        if "val_confusion" not in last:
            return
        config = self._config(trial)
        names = list(config.data.class_names)
        metric = str(config.train.select_metric)
        with tempfile.TemporaryDirectory() as tmp:
            title = f"validation, ensemble, epoch {last.get('epoch', '?')}"
            cm = plots.confusion_png(
                last["val_confusion"], names, Path(tmp) / "confusion_val.png", title
            )
            self.tracker.log_artifact(run_id, cm, "figures")
            history = self._history(run_id, names, metric)
            if history:
                curves = plots.curves_png(history, names, Path(tmp) / "curves.png", metric)
                self.tracker.log_artifact(run_id, curves, "figures")
            result = {
                k: v for k, v in last.items() if k in ("epoch", "best_epoch", "val_confusion")
            }
            (Path(tmp) / "last_result.json").write_text(json.dumps(result))
            self.tracker.log_artifact(run_id, Path(tmp) / "last_result.json")

    def _members(self, run_id: str, trial: Trial) -> None:
        """The ranked member table of the whole trial (``population/members.json``), read
        back from the per-epoch tables the run holds (complete after a resumed sweep too),
        and the best member's setting, seeds and score as tags."""
        mode = str(self._config(trial).tune.mode)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.tracker.client.download_artifacts(run_id, "population", tmp)
            rows = members_lib.lineages(members_lib.epochs_from_folder(Path(folder)), mode)
            if not rows:
                return
            path = Path(tmp) / "members.json"
            path.write_text(json.dumps(rows, indent=1))
            self.tracker.log_artifact(run_id, path, "population")
        best = rows[0]
        self.tracker.set_tags(
            run_id,
            {
                f"{members_lib.BEST_MEMBER_META}setting": best["setting"],
                f"{members_lib.BEST_MEMBER_META}seeds": ",".join(map(str, best["seeds"])),
                f"{members_lib.BEST_MEMBER_META}score": f"{best['best']:.6g}",
                "ecgjax.population_members": len(rows),
            },
        )

    def _history(self, run_id: str, names: list[str], metric: str) -> list[dict[str, float]]:
        """Per-epoch values from MLflow itself, so a resumed trial's curves are complete."""
        keys = ["train/loss", f"val/{metric}", f"val/worst/{metric}", f"val/ensemble/{metric}"]
        keys += [f"val/recall_{n}" for n in names]
        by_epoch: dict[int, dict[str, float]] = {}
        for key in keys:
            for m in self.tracker.client.get_metric_history(run_id, key):
                by_epoch.setdefault(m.step, {"epoch": m.step})[key] = m.value
        return [row for _, row in sorted(by_epoch.items()) if len(row) == len(keys) + 1]


def parent_run(tracker: Tracker, state: dict[str, Any]) -> str:
    """The sweep's MLflow parent run: found by its tags, else created (a driver killed
    between creating it and recording its id in ``sweep.json`` finds it again).

    Params and artifacts are logged until the run carries ``ecgjax.logged``, so a kill in
    the middle of logging leaves nothing missing either; a found run is RUNNING again.
    """
    sweep_id = state["sweep_id"]
    run_id = state.get("mlflow_parent_run_id") or _find_parent(tracker, sweep_id)
    if run_id is None:
        tags = {
            "ecgjax.kind": "sweep",
            "ecgjax.sweep_id": sweep_id,
            "ecgjax.hypothesis": state["hypothesis"],
            "mlflow.note.content": f"Hypothesis: {state['hypothesis']}",
            "ecgjax.config_file": state["config_file"],
            "ecgjax.ray_results": state["ray_results"],
            **{f"ecgjax.tune.{k}": v for k, v in state["base_config"]["tune"].items()},
        }
        run_id = tracker.start_run(sweep_id, tags=tags)
    else:
        tracker.client.update_run(run_id, status="RUNNING")
        tracker.set_tags(run_id, {"ecgjax.resumed": time.strftime("%Y-%m-%d %H:%M:%S")})
    if "ecgjax.logged" not in tracker.client.get_run(run_id).data.tags:
        config = config_lib.from_json(json.dumps(state["base_config"]))
        tracker.log_params(run_id, config_lib.flatten(config))
        config_path = Path(state["config_file"].rsplit(":", 1)[0])
        if config_path.is_file():
            tracker.log_artifact(run_id, config_path, "config")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "search_space.json"
            path.write_text(json.dumps(state["search_space"], indent=2, default=str))
            tracker.log_artifact(run_id, path)
        tracker.set_tags(run_id, {"ecgjax.logged": "1"})
    return run_id


def _find_parent(tracker: Tracker, sweep_id: str) -> str | None:
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`ecgjax.sweep_id` = '{sweep_id}' and tags.`ecgjax.kind` = 'sweep'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def close_trial_runs(
    tracker: Tracker, sweep_id: str, rows: list[dict[str, Any]], complete: bool
) -> None:
    """Leave no child run RUNNING when the driver ends: the callback ends each trial's run,
    but a driver killed before a trial's end was recorded, or a Ctrl-C, can leave one open.

    A complete sweep's trials are FINISHED (FAILED with an error); an interrupted sweep's
    open runs are KILLED (``--resume`` sets them RUNNING again); a run whose trial is not in
    the experiment (started just before a kill that lost Tune's state) is KILLED and tagged.
    """
    status = {r["trial_id"]: ("FAILED" if r["status"] == "error" else "FINISHED") for r in rows}
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`ecgjax.sweep_id` = '{sweep_id}' and tags.`ecgjax.kind` = 'trial'",
    )
    for run in runs:
        if run.info.status != "RUNNING":
            continue
        trial_id = run.data.tags.get("ecgjax.trial_id", "")
        if trial_id not in status:
            tracker.set_tags(run.info.run_id, {"ecgjax.orphan": "not in the Ray experiment"})
            tracker.end_run(run.info.run_id, status="KILLED")
        else:
            tracker.end_run(run.info.run_id, status=status[trial_id] if complete else "KILLED")
