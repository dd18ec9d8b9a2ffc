"""Training a population epoch by epoch: per-member validation, selection, the best export.

``tune.population = P`` (P >= 2) turns one trial into P settings of the continuous
hyper-parameters x ``train.num_seeds`` seeds in one program (:class:`Population`). Each
epoch validates every member; a setting's score is its seed ensemble's validation metric
(``train.select_metric``, seed mean, as a single trial reports it). Every
``tune.population_interval`` epochs ``tune.population_selection`` (``pbt`` or ``halving``)
moves settings inside the program (:mod:`ecgjax.training.selection`). The best setting at
its best epoch is kept on the host and exported as a normal single-setting ensemble
checkpoint that ``scripts/evaluate.py`` loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.training import checkpoint as ckpt
from ecgjax.training import selection
from ecgjax.training.population import Population, member_table
from ecgjax.training.run import run_metadata, seeds_of, select_key
from ecgjax.training.space import Dist, draw

log = logging.getLogger(__name__)
SELECTIONS = ("none", "pbt", "halving")


@dataclass
class PopulationEpoch:
    """One epoch: the member table, the best setting's flat metrics, selection events."""

    epoch: int
    members: list[dict[str, Any]]
    best_setting: int
    best_values: dict[str, float]
    metrics: dict[str, float]
    confusion: list[list[int]]
    events: list[selection.Event] = field(default_factory=list)


class PopulationRun:
    """A population trial: ``config.tune.population`` settings drawn from ``space``."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        splits: data_lib.Splits,
        space: Mapping[str, Dist],
        draw_seed: Sequence[int],
    ) -> None:
        tc = config.tune
        if tc.population_selection not in SELECTIONS:
            raise ValueError(
                f"unknown tune.population_selection {tc.population_selection!r}; "
                f"choose {', '.join(SELECTIONS)}"
            )
        self.config, self.splits, self.space = config, splits, dict(space)
        flat = config_lib.flatten(config)
        settings = draw(self.space, {k: flat[k] for k in self.space}, int(tc.population), draw_seed)
        self.pop = Population(config, splits.train, seeds_of(config), settings)
        self.state = self.pop.init()
        self.rng = np.random.default_rng([*map(int, draw_seed), 7])
        self.names = list(config.data.class_names)
        self.epoch = 0
        self.best: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.epoch >= int(self.config.train.epochs)

    def step(self) -> PopulationEpoch:
        """Train every member one epoch, validate, keep the best setting, then select."""
        pop, splits, s = self.pop, self.splits, self.pop.seeds_per_setting
        self.epoch += 1
        self.state, train_m = pop.train_epoch(self.state, self.epoch)
        probs = pop.predict(self.state, splits.val)
        sel = str(self.config.train.select_metric)
        flats, member_scores = [], np.zeros(pop.num_members)
        reports = []
        for p in range(pop.num_settings):
            report = metrics_lib.ensemble_report(
                probs[p * s : (p + 1) * s], splits.val.y, pop.num_classes
            )
            flat = metrics_lib.flat_metrics(report, "val", self.names)
            flats.append(flat)
            reports.append(report)
            for k in range(s):
                member_scores[p * s + k] = flat[f"val/seed{k}/{sel}"]
        setting_scores = np.array([f[select_key(self.config)] for f in flats])
        best = int(np.argmax(setting_scores))
        members = member_table(
            pop, {f"val_{sel}": member_scores, "train_loss": np.asarray(train_m["loss"])}
        )
        values = pop.member_values(best * s)
        metrics = dict(flats[best])
        metrics["train/loss"] = float(np.mean(train_m["loss"][best * s : (best + 1) * s]))
        metrics["population/best_setting"] = float(best)
        metrics["population/median"] = float(np.median(setting_scores))
        metrics["population/spread"] = float(setting_scores.max() - setting_scores.min())
        if self.best is None or setting_scores[best] > self.best["metric"]:
            rows = slice(best * s, (best + 1) * s)
            self.best = {
                "metric": float(setting_scores[best]),
                "epoch": self.epoch,
                "values": values,
                "state": jax.device_get(jax.tree.map(lambda a: a[rows], self.state)),
                "history": [],
            }
        self.best["history"].append({"epoch": self.epoch, **metrics})
        result = PopulationEpoch(
            self.epoch, members, best, values, metrics, reports[best]["ensemble"]["confusion"]
        )
        result.events = self._select(member_scores)
        return result

    def _select(self, member_scores: np.ndarray) -> list[selection.Event]:
        tc = self.config.tune
        interval = max(1, int(tc.population_interval))
        if tc.population_selection == "none" or self.done or self.epoch % interval:
            return []
        fn = selection.pbt if tc.population_selection == "pbt" else selection.halving
        self.state, events = fn(
            self.pop,
            self.state,
            member_scores,
            self.space,
            self.rng,
            float(tc.population_quantile),
        )
        for e in events:
            log.info("%s: setting %d <- %d with %s", e.kind, e.target, e.source, e.values)
        return events

    def best_config(self) -> ml_collections.ConfigDict:
        """The single-setting config of the best setting (its S seeds, no population)."""
        if self.best is None:
            raise RuntimeError("no epoch has run")
        return config_lib.with_overrides(self.config, {**self.best["values"], "tune.population": 1})

    def export_best(self, run_dir: Path) -> Path:
        """Write the best setting as a normal ensemble checkpoint (``evaluate.py`` loads it)."""
        if self.best is None:
            raise RuntimeError("no epoch has run")
        config = self.best_config()
        meta = run_metadata(config, self.splits, self.pop)
        meta["seeds"] = seeds_of(config)
        meta["population"] = {"values": self.best["values"], "epoch": self.best["epoch"]}
        ckpt.write_run_files(Path(run_dir), config_lib.to_json(config), meta)
        saver = ckpt.RunCheckpointer(Path(run_dir), async_save=False)
        progress = {
            "epoch": self.best["epoch"],
            "best_metric": self.best["metric"],
            "best_epoch": self.best["epoch"],
            "since_best": 0,
            "history": self.best["history"],
        }
        try:
            saver.save(self.best["epoch"], self.best["state"], progress, is_best=True)
        finally:
            saver.close()
        return Path(run_dir)
