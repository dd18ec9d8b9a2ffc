"""The Ray Tune trainable of a single-split sweep, and what every trainable shares.

The trainable runs in a Ray worker process. It trains one seed ensemble with
:func:`ecgjax.training.run.run_training`, reports every epoch's flat validation metrics to Tune and
attaches an Orbax checkpoint, so ASHA/HyperBand can pause and resume a trial and PBT can
clone another trial's state. It never talks to MLflow: the driver is the one writer.

The search space, scheduler and searcher live in :mod:`ecgjax.tuning.search` (imported here
too, under their old names).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections
from ray import tune

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.tuning import ledger
from ecgjax.tuning.cluster import fetch_run_dir, run_copy, share_run_dir
from ecgjax.tuning.search import baseline_point as baseline_point
from ecgjax.tuning.search import describe_space as describe_space
from ecgjax.tuning.search import flatten_params
from ecgjax.tuning.search import make_scheduler as make_scheduler
from ecgjax.tuning.search import make_search as make_search
from ecgjax.tuning.search import nest_space as nest_space

STATE_DIR = "state"  # Orbax folder inside a Ray checkpoint
MARKER = "trial.json"  # which trial and epoch wrote a Ray checkpoint


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


@dataclass(frozen=True)
class SweepContext:
    """What the driver hands every trial of a sweep besides its data: one argument of the
    three trainables (single split, cross-validated, population)."""

    base_json: str  # the sweep's base config (config_lib.to_json)
    sweep_id: str
    checkpoint_root: str  # a trial writes checkpoint_root/sweep_id/trial_id
    verbose: bool = False  # Ray's "Checkpoint successfully created" line per report
    driver_node: str = ""  # the driver's Ray node: a trial elsewhere uploads its run folder
    results_root: str = ""  # the sweep's storage, where that upload goes


@dataclass(frozen=True)
class TrialSetup:
    """A started trial (:func:`start_trial`): its config and where it writes."""

    config: ml_collections.ConfigDict
    data_config: ml_collections.ConfigDict | None  # set: load its own data (trial_data_config)
    trial_id: str
    run_dir: Path
    shared: str  # where a trial on another node uploads run_dir (cluster.run_copy)
    driver_node: str

    def open_checkpoint(self, stack: contextlib.ExitStack) -> Path | None:
        """The Tune checkpoint the trial restarts from, as a folder open while ``stack`` is
        (None on a fresh start); restarted on another node, the trial first fetches the run
        folder it had uploaded."""
        checkpoint = tune.get_checkpoint()
        folder = Path(stack.enter_context(checkpoint.as_directory())) if checkpoint else None
        if folder is not None and not self.run_dir.exists():
            fetch_run_dir(self.shared, self.run_dir)
        return folder

    def report(self, metrics: dict[str, Any], checkpoint: Path, saved: list[Path]) -> None:
        """Upload the run folder (from another node, once the ``saved`` step folders exist),
        then report ``metrics`` with the Tune checkpoint folder ``checkpoint``: upload first,
        as the report does not return when the scheduler stops the trial."""
        share_run_dir(self.run_dir, self.shared, self.driver_node, saved)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))


def start_trial(
    params: dict[str, Any],
    sweep: SweepContext,
    data_files: tuple[str, str],
    check: Callable[[ml_collections.ConfigDict], None] | None = None,
) -> TrialSetup:
    """What every trainable does first: the trial's config (``check`` refuses what the
    trainable cannot do), this process's JAX settings, and the trial's folders.

    ``data_files`` are the train and test files the driver loaded, which a trial that changes
    the ``data`` section loads again (:func:`trial_data_config`).
    """
    base = config_lib.from_json(sweep.base_json)
    config = trial_config(base, params)
    if check is not None:
        check(config)
    setup_trial_process(config, sweep.verbose)
    trial_id = tune.get_context().get_trial_id()
    return TrialSetup(
        config=config,
        data_config=trial_data_config(base, config, *data_files),
        trial_id=trial_id,
        run_dir=Path(sweep.checkpoint_root) / sweep.sweep_id / trial_id,
        shared=run_copy(sweep.results_root, sweep.sweep_id, trial_id),
        driver_node=sweep.driver_node,
    )


def epoch_metrics(
    metrics: Mapping[str, Any], epoch: int, best_epoch: int, confusion: Any
) -> dict[str, Any]:
    """A trial's report for one epoch: its flat validation metrics and the keys every
    trainable adds (the summary and the MLflow callback read them)."""
    out = dict(metrics)
    out["epoch"] = epoch
    out["best_epoch"] = best_epoch
    out["val_confusion"] = confusion
    return out


def train_trial(params: dict[str, Any], *, splits: data_lib.Splits, sweep: SweepContext) -> None:
    """The Ray Tune function trainable: one seed ensemble, reported and checkpointed per epoch.

    A restarted trial never trains an epoch it had finished (see :mod:`ecgjax.tuning.ledger`).
    """
    trial = start_trial(params, sweep, (splits.train.source, splits.test.source))
    from ecgjax.training.run import EpochResult, run_training  # after the XLA variables are set

    config, trial_id, run_dir = trial.config, trial.trial_id, trial.run_dir

    def report(result: EpochResult) -> None:
        from ecgjax.training import checkpoint as ckpt

        best_epoch = int(result.progress["best_epoch"])
        confusion = result.val_report["ensemble"]["confusion"]
        metrics = epoch_metrics(result.metrics, result.epoch, best_epoch, confusion)
        ledger.record(run_dir, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt.save_dir(Path(tmp) / STATE_DIR, result.state, result.progress)
            write_marker(Path(tmp), trial_id, metrics)
            saved = [
                run_dir / w / str(result.epoch) for w in ("latest", "best")[: 1 + result.is_best]
            ]
            trial.report(metrics, Path(tmp), saved)

    with contextlib.ExitStack() as stack:
        folder = trial.open_checkpoint(stack)
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
        own = trial.data_config
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
