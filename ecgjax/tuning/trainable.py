"""Ray Tune pieces: the search space, the trainable, and the scheduler/searcher for a config.

The trainable runs in a Ray worker process. It trains one seed ensemble with
:func:`ecgjax.training.run.run_training`, reports every epoch's flat validation metrics to Tune and
attaches an Orbax checkpoint, so ASHA/HyperBand can pause and resume a trial and PBT can
clone another trial's state. It never talks to MLflow: the driver is the one writer.

Search spaces are keyed by dotted config paths (``optim.learning_rate``). Ray reads ``/`` in
keys as nesting and some searchers flatten names, so the space is handed to Ray as nested
dicts (``{"optim": {"learning_rate": ...}}``) and flattened back here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ml_collections
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.tuning import ledger
from ecgjax.tuning.cluster import fetch_run_dir, run_copy, share_run_dir

STATE_DIR = "state"  # Orbax folder inside a Ray checkpoint
MARKER = "trial.json"  # which trial and epoch wrote a Ray checkpoint


def nest_space(space: dict[str, Any], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Validate dotted keys against ``config`` and nest them for Ray.

    Raises:
        ValueError: a key is not a config path (typo, or a whole section).
    """
    known = config_lib.flatten(config)
    unknown = sorted(k for k in space if k not in known)
    if unknown:
        raise ValueError(f"search space keys are not config paths: {unknown}")
    nested: dict[str, Any] = {}
    for dotted, value in space.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Inverse of :func:`nest_space` for sampled values: nested dict -> dotted keys."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "grid_search" not in value:
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = value
    return out


def trial_config(
    base: ml_collections.ConfigDict, params: dict[str, Any]
) -> ml_collections.ConfigDict:
    """The base config with a trial's sampled values and the sweep's per-trial budget."""
    config = config_lib.with_overrides(base, flatten_params(params))
    return config_lib.with_overrides(
        config,
        {
            "train.num_seeds": int(config.tune.seeds_per_trial),
            "train.epochs": int(config.tune.max_epochs),
        },
    )


def baseline_point(
    space: dict[str, Any], config: ml_collections.ConfigDict
) -> dict[str, Any] | None:
    """The config file's own values for the searched keys, when they lie inside the space.

    Evaluated as the first trial, so every sweep compares against its starting point (for
    ``asha_cnn.py``, the reference CNN) inside the same budget and on the same data.
    """
    flat = config_lib.flatten(config)
    point = {}
    for key, domain in space.items():
        value = flat[key]
        if not isinstance(domain, Domain):  # a grid has no single starting point
            return None
        if isinstance(domain, Categorical) and value not in domain.categories:
            return None
        if isinstance(domain, (Float, Integer)) and not domain.lower <= value <= domain.upper:
            return None
        point[key] = value
    return nest_space(point, config)


def describe_space(space: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able description of a search space (for MLflow and sweep.json)."""
    out: dict[str, Any] = {}
    for key, d in space.items():
        if isinstance(d, Categorical):
            out[key] = {"choice": list(d.categories)}
        elif isinstance(d, (Float, Integer)):
            sampler = type(d.get_sampler()).__name__
            out[key] = {
                "type": type(d).__name__,
                "lower": d.lower,
                "upper": d.upper,
                "sampler": sampler,
            }
        elif isinstance(d, dict):
            out[key] = d
        else:
            out[key] = repr(d)
    return out


def make_scheduler(tc: ml_collections.ConfigDict, space: dict[str, Any]) -> TrialScheduler:
    """Scheduler from ``config.tune``; time is counted in epochs (Tune's training_iteration)."""
    if tc.scheduler == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=int(tc.max_epochs),
            grace_period=int(tc.grace_period),
            reduction_factor=float(tc.reduction_factor),
        )
    if tc.scheduler == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration",
            max_t=int(tc.max_epochs),
            reduction_factor=float(tc.reduction_factor),
        )
    if tc.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=int(tc.perturbation_interval),
            hyperparam_mutations=space,
        )
    if tc.scheduler == "fifo":
        return FIFOScheduler()
    raise ValueError(f"tune.scheduler must be asha, hyperband, pbt or fifo, got {tc.scheduler!r}")


def make_search(
    tc: ml_collections.ConfigDict, points: list[dict[str, Any]], seed: int
) -> SearchAlgorithm | Searcher:
    """Search algorithm from ``config.tune`` (Optuna TPE behind a concurrency limit)."""
    if tc.scheduler == "pbt" and tc.search != "random":
        raise ValueError(
            "tune.scheduler='pbt' samples its population itself; use tune.search='random'"
        )
    if tc.search in ("random", "grid"):
        return BasicVariantGenerator(
            points_to_evaluate=points if tc.search == "random" else None,
            max_concurrent=int(tc.max_concurrent),
            random_state=seed,
        )
    if tc.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        # Optuna names parameters by Ray's flattened paths ("model/hidden"), points included.
        flat = [{k.replace(".", "/"): v for k, v in flatten_params(p).items()} for p in points]
        searcher = OptunaSearch(
            points_to_evaluate=flat or None, sampler=optuna.samplers.TPESampler(seed=seed)
        )
        return ConcurrencyLimiter(searcher, max_concurrent=int(tc.max_concurrent))
    raise ValueError(f"tune.search must be random, grid or optuna, got {tc.search!r}")


def trial_data_config(
    base: ml_collections.ConfigDict, config: ml_collections.ConfigDict, train: str, test: str
) -> ml_collections.ConfigDict | None:
    """The trial's config pointing at the loaded files ``train``/``test`` when its ``data``
    section differs from the sweep's (a searched ``data.channels``, say), else None.

    The driver loads the data once, for the base config; a trial that changes how beats
    become model inputs must load them again, or the searched value would silently not apply.
    The files are named by the paths the driver resolved, so a worker finds the same ones.
    """
    if base.data.to_dict() == config.data.to_dict():
        return None
    return config_lib.with_overrides(config, {"data.train_file": train, "data.test_file": test})


def setup_trial_process(config: ml_collections.ConfigDict, verbose: bool = False) -> None:
    """Per-trial JAX settings, before JAX's backend starts in this worker process.

    Trials sharing a GPU each get a memory fraction instead of JAX's default 75% grab.
    Ray's "Checkpoint successfully created" line per report is silenced unless ``verbose``.
    """
    gpus = float(config.tune.gpus_per_trial)
    if gpus > 0:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{min(0.9 * gpus, 0.95):.3f}"
    else:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    level = logging.INFO if verbose else logging.WARNING
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(level)
    from ecgjax.runtime import configure_jax

    configure_jax()


def train_trial(
    params: dict[str, Any],
    *,
    splits: data_lib.Splits,
    base_json: str,
    sweep_id: str,
    checkpoint_root: str,
    verbose: bool = False,
    driver_node: str = "",
    results_root: str = "",
) -> None:
    """The Ray Tune function trainable: one seed ensemble, reported and checkpointed per epoch.

    A restarted trial never trains an epoch it had finished (see :mod:`ecgjax.tuning.ledger`).
    """
    base = config_lib.from_json(base_json)
    config = trial_config(base, params)
    setup_trial_process(config, verbose)
    from ecgjax.training.run import EpochResult, run_training  # after the XLA variables are set

    own = trial_data_config(base, config, splits.train.source, splits.test.source)
    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(checkpoint_root) / sweep_id / trial_id
    shared = run_copy(results_root, sweep_id, trial_id)

    def report(result: EpochResult) -> None:
        from ecgjax.training import checkpoint as ckpt

        metrics: dict[str, Any] = dict(result.metrics)
        metrics["epoch"] = result.epoch
        metrics["best_epoch"] = int(result.progress["best_epoch"])
        metrics["val_confusion"] = result.val_report["ensemble"]["confusion"]
        ledger.record(run_dir, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt.save_dir(Path(tmp) / STATE_DIR, result.state, result.progress)
            write_marker(Path(tmp), trial_id, metrics)
            saved = [
                run_dir / w / str(result.epoch) for w in ("latest", "best")[: 1 + result.is_best]
            ]
            # before the report, which does not return when the scheduler stops the trial
            share_run_dir(run_dir, shared, driver_node, saved)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    with contextlib.ExitStack() as stack:
        checkpoint = tune.get_checkpoint()
        folder = Path(stack.enter_context(checkpoint.as_directory())) if checkpoint else None
        if folder is not None and not run_dir.exists():
            fetch_run_dir(shared, run_dir)  # restarted on another node: the uploaded run folder
        marker = read_marker(folder) if folder is not None else None
        restore: Path | None = None
        if marker is not None and marker["trial_id"] != trial_id:  # a PBT clone
            restore = adopt_checkpoint(run_dir, folder, trial_id)  # type: ignore[arg-type]
            epoch = int(marker["epoch"])
        else:
            epoch = int(marker["epoch"]) if marker else 0
            todo, epoch_at, finished = ledger.plan(run_dir, epoch)
            if todo:
                replay(run_dir, trial_id, todo, epoch_at)
            if finished:
                return
            ledger.rewind(run_dir, epoch_at)
            if epoch_at == epoch and folder is not None:
                restore = folder / STATE_DIR
            epoch = epoch_at
        splits = data_lib.load_splits(own) if own is not None else splits
        reached = run_training(
            config,
            splits,
            run_dir,
            hooks=[report],
            evaluate_test=False,
            resume=restore is None and epoch > 0,  # from the trial folder's own state
            restore_from=restore,
        ).epochs_run
        ledger.finish(run_dir, reached)
        if folder is not None and restore is not None and reached == epoch:
            rereport(folder)  # restored with no epoch left (PBT after the last one)


def write_marker(folder: Path, trial_id: str, metrics: dict[str, Any]) -> None:
    """Which trial and epoch wrote a Tune checkpoint, and what it reported for that state."""
    marker = {"trial_id": trial_id, "epoch": int(metrics["epoch"]), "metrics": metrics}
    (folder / MARKER).write_text(json.dumps(marker, default=float))


def read_marker(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / MARKER).read_text()))


def rereport(folder: Path) -> None:
    """Report a restored checkpoint's own result again (it leaves no epoch to train)."""
    metrics = read_marker(folder).get("metrics")
    if metrics is not None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))


def replay(run_dir: Path, trial_id: str, todo: list[dict[str, Any]], epoch: int) -> None:
    """Send recorded reports to Tune again; the last carries a Tune checkpoint of the trial
    folder's state at ``epoch``, so a later restart begins there."""
    for metrics in todo[:-1]:
        tune.report(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(run_dir / "latest" / str(epoch), Path(tmp) / STATE_DIR / str(epoch))
        write_marker(Path(tmp), trial_id, todo[-1])
        tune.report(todo[-1], checkpoint=tune.Checkpoint.from_directory(tmp))


def adopt_checkpoint(run_dir: Path, folder: Path, trial_id: str) -> Path:
    """Make a trial's run folder agree with the Tune checkpoint it restarts from; returns the
    Orbax folder to restore.

    Its own checkpoint (pause/resume, a restarted driver): what lies past it is dropped
    (:func:`ledger.rewind`; the single-split trainable first replays what its folder holds,
    see :func:`ledger.plan`). Another trial's (a PBT exploit): the weights now descend from
    that trial, so ``latest/`` and ``best/`` restart from the cloned state, and the record
    past the clone's epoch is dropped.
    """
    marker = read_marker(folder)
    epoch = int(marker["epoch"])
    if marker["trial_id"] != trial_id:
        for which in ("latest", "best"):
            shutil.rmtree(run_dir / which, ignore_errors=True)
            shutil.copytree(folder / STATE_DIR / str(epoch), run_dir / which / str(epoch))
    ledger.rewind(run_dir, epoch)
    return folder / STATE_DIR
