"""The Ray Tune objects of a sweep: the trainable with its data and resources, and the Tuner
(a new one, or the one Tune saved for the sweep).

Imported through :mod:`ecgjax.tuning.sweep`, which sets Ray's environment defaults before
Ray is first imported.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import ml_collections
import pyarrow.fs as pafs
import ray
from ray import tune

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import folds
from ecgjax.tuning import cluster, search, view
from ecgjax.tuning import summary as report
from ecgjax.tuning import trainable as tune_lib
from ecgjax.tuning import trainable_cv as tune_cv
from ecgjax.tuning import trainable_population as tune_pop
from ecgjax.tuning.cluster import experiment_path, ray_results_root
from ecgjax.tuning.tracking import MlflowSweepCallback


def sweep_tuner(
    trainable: Any,
    config: ml_collections.ConfigDict,
    state: dict[str, Any],
    parent: str,
    experiment: str,
) -> tune.Tuner:
    """The Tuner of the sweep ``state`` describes: Tune's saved one when it saved the
    experiment (unfinished trials resume), else a new one; ``parent`` is the MLflow parent
    run in ``experiment`` that the trials' runs go under."""
    exp_dir = experiment_path(state["sweep_id"])
    if _restorable(exp_dir):
        return tune.Tuner.restore(
            exp_dir, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    return _new_tuner(config, state, trainable, parent, experiment)


def make_trainable(
    config: ml_collections.ConfigDict,
    data: data_lib.Splits | folds.CrossValidation,
    sweep_id: str,
    config_file: str,
    verbose: bool = False,
) -> Any:
    """The trainable with the data in the object store (once) and the per-trial resources."""
    sweep = tune_lib.SweepContext(
        base_json=config_lib.to_json(config),
        sweep_id=sweep_id,
        checkpoint_root=str(paths.checkpoints_dir()),
        verbose=verbose,
        driver_node=ray.get_runtime_context().get_node_id(),
        results_root=ray_results_root(),
    )
    if isinstance(data, folds.CrossValidation):
        with_data = tune.with_parameters(tune_cv.train_cv_trial, cv=data, sweep=sweep)
    elif int(config.tune.population) >= 2:
        with_data = tune.with_parameters(
            tune_pop.train_population_trial, splits=data, config_file=config_file, sweep=sweep
        )
    else:
        with_data = tune.with_parameters(tune_lib.train_trial, splits=data, sweep=sweep)
    resources = {"cpu": float(config.tune.cpus_per_trial), "gpu": float(config.tune.gpus_per_trial)}
    return tune.with_resources(
        with_data, resources | cluster.custom_resources(str(config.tune.resources))
    )


def _new_tuner(
    config: ml_collections.ConfigDict,
    state: dict[str, Any],
    trainable: Any,
    parent: str,
    experiment: str,
) -> tune.Tuner:
    tc, sweep_id = config.tune, state["sweep_id"]
    space = config_lib.load_search_space(state["config_file"], tune)
    nested = search.nest_space(space, config)
    baseline = search.baseline_point(space, config)
    callback = MlflowSweepCallback(
        experiment, parent, sweep_id, config_lib.to_json(config), str(paths.checkpoints_dir())
    )
    tables = report.progress_reporter(config, space)
    early = tc.scheduler in ("asha", "hyperband")
    reporter = view.SweepView(
        sweep_id,
        str(tc.metric),
        str(tc.mode),
        int(tc.num_samples),
        int(tc.max_epochs),
        tables,
        early,
    )
    return tune.Tuner(
        trainable,
        param_space=nested,
        tune_config=tune.TuneConfig(
            metric=tc.metric,
            mode=tc.mode,
            search_alg=search.make_search(tc, [baseline] if baseline else [], int(config.seed)),
            scheduler=search.make_scheduler(tc, nested),
            num_samples=int(tc.num_samples),
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,  # skip a fresh worker's imports and JAX start-up per trial
        ),
        run_config=tune.RunConfig(
            name=sweep_id,
            storage_path=ray_results_root(),
            callbacks=[
                callback,
                cluster.RecordProcesses(str(paths.checkpoints_dir() / sweep_id / "processes.json")),
            ],
            # PBT clones other trials' latest checkpoints: keep a few so none vanishes mid-copy.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if tc.scheduler == "pbt" else 2),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            progress_reporter=reporter,
            verbose=1,
        ),
    )


def _restorable(exp_dir: str) -> bool:
    """Whether Tune saved this experiment's state (a path or a storage URI); a driver killed
    after Tune wrote its ``tuner.pkl`` but before the first snapshot (no trial had started)
    leaves only the former, and the sweep starts afresh."""
    fs, path = cluster.storage(exp_dir)
    if tune.Tuner.can_restore(exp_dir):
        listing = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        if any(Path(f.path).name.startswith("experiment_state-") for f in listing):
            return True
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_dir(path)
    return False


def trial_dirname(trial: Any) -> str:
    """Trial folders named by trial id, the same id as under ``checkpoints/<sweep>/``."""
    return str(trial.trial_id)
