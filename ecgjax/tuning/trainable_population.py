"""The Ray Tune trainable of a population trial (``tune.population = P >= 2``).

Ray's searcher and scheduler choose the structural values (model, width, depth, batch
size, loss name) of a trial, as for any trial; inside it :class:`PopulationRun` trains P
settings of the continuous hyper-parameters (drawn from the config's own search space with
a key per trial; :mod:`ecgjax.training.space` says why) x ``tune.seeds_per_trial`` seeds as
one program, with PBT or successive halving inside the program.

What Tune sees per epoch: the best setting's flat validation metrics as the trial's metrics
(``val/macro_f2`` ... exactly the keys of a single trial, so ASHA, the progress table and
the ranked summary work unchanged), ``population/*`` summary metrics, and, as non-metric
entries, ``population_members`` (JSON, one row per member: setting, seed, values, score) and
``population_best_values``. The MLflow callback stores the member table as one JSON
artifact per epoch (usable at P = 64) instead of 64 x metrics. At the end the best setting is
written to ``checkpoints/<sweep>/<trial>`` as a normal single-setting ensemble, which the
sweep copies to ``checkpoints/<sweep>/best`` when the trial wins.

Population trials do not attach Tune checkpoints: selection happens inside the program, so
Ray's PBT (which clones trials through checkpoints) is refused with a population, and a
trial that ASHA stops simply ends.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ml_collections
from ray import tune

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.tuning.trainable import SweepContext, epoch_metrics, start_trial

MEMBERS_KEY = "population_members"
BEST_VALUES_KEY = "population_best_values"


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse what a population trial cannot do (before any trial starts)."""
    if int(config.tune.population) >= 2 and config.tune.scheduler == "pbt":
        raise ValueError(
            "tune.population >= 2 runs PBT inside the trial (tune.population_selection=pbt); "
            "use tune.scheduler=asha or fifo, not pbt"
        )
    if int(config.tune.population) >= 2 and int(config.data.cv_folds) >= 2:
        raise ValueError("tune.population >= 2 with data.cv_folds >= 2 is not supported")


def trial_number(trial_id: str) -> int:
    """A stable integer of a trial id (``abc12_00003`` -> 3; else a checksum)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else zlib.crc32(trial_id.encode())


def train_population_trial(
    params: dict[str, Any], *, splits: data_lib.Splits, config_file: str, sweep: SweepContext
) -> None:
    """Train one population trial, reporting per epoch; export the best setting at the end.

    Unlike the single-setting trainable it neither replays a ledger after a killed driver nor
    uploads its folder from another node (``sweep.driver_node`` and ``sweep.results_root`` go
    unused): a population trial restarts from its Tune checkpoint.
    """
    trial = start_trial(params, sweep, (splits.train.source, splits.test.source))
    from ecgjax.training.population_run import PopulationRun  # after the XLA variables
    from ecgjax.training.space import SPACE, population_space

    config, own = trial.config, trial.data_config
    splits = data_lib.load_splits(own) if own is not None else splits
    space = population_space(config_lib.load_search_space(config_file, SPACE))
    run = PopulationRun(config, splits, space, (int(config.seed), trial_number(trial.trial_id)))
    while not run.done:
        result = run.step()
        if run.best is not None and run.best["epoch"] == result.epoch:
            # Exported whenever the best improves, so a trial that ASHA stops has it too.
            _export(run, trial.run_dir)
        best_epoch = int(run.best["epoch"]) if run.best else result.epoch
        metrics = epoch_metrics(result.metrics, result.epoch, best_epoch, result.confusion)
        # A JSON string, not a list: Tune's TensorBoard logger warns about (and prints) a list
        # of dicts on every result.
        metrics[MEMBERS_KEY] = json.dumps(result.members)
        metrics[BEST_VALUES_KEY] = dict(run.best["values"]) if run.best else {}
        metrics["population_events"] = json.dumps([asdict(e) for e in result.events])
        tune.report(metrics)


def _export(run: Any, out_dir: Path) -> None:
    """Replace ``out_dir`` by the current best setting (written aside, then renamed)."""
    tmp = out_dir.with_name(out_dir.name + ".export.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run.export_best(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
