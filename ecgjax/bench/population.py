"""Populations against separate single-setting programs: the per-member throughput of one.

A population of P settings (1 seed each, drawn from ``configs/population_resnet1d.py``'s
space) trains as one program with each strategy; the baseline is one single-setting program
of the same model, whose throughput is what P separate trials each get (sequentially, on
the same cores) once compiled. Separate programs also pay one compile each (a different
config is a different program), which the table shows as ``P x`` the single compile time.
Repeats of every case are interleaved in shuffled rounds, as in :mod:`ecgjax.bench.measure`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data.synthetic import make_beats
from ecgjax.training.engine import Ensemble
from ecgjax.training.population import Population
from ecgjax.training.space import SPACE, draw, population_space

CONFIG = "population_resnet1d.py"


@dataclass(frozen=True)
class PopulationOptions:
    sizes: tuple[int, ...] = (1, 4, 16, 64)
    strategies: tuple[str, ...] = ("loop", "wide")
    steps: int = 4
    repeats: int = 3
    skip: float = 3.0  # a strategy this much slower than the best at one size skips larger ones
    dispatch: str = "python"  # every case's, the separate program's included
    data_size: int = 2048
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Case:
    label: str
    strategy: str
    members: int
    batch: int
    steps: int
    ens: Ensemble | None = None
    state: Any = None
    startup_s: float = 0.0
    times: list[float] = field(default_factory=list)
    note: str = ""

    def per_member(self) -> float:
        """Median member-samples/s: samples of all members per second, the throughput the
        issue compares per member (16 members at >= 0.9x of one = each member costs at most
        1/0.9 of a lone member's time)."""
        if not self.times:
            return 0.0
        return float(np.median(self.members * self.batch * self.steps / np.asarray(self.times)))


def run(options: PopulationOptions, log: Any = print) -> dict[str, Any]:
    """Measure every (size, strategy) population and the single-setting baseline."""
    path = paths.PROJECT_ROOT / "configs" / CONFIG
    config = config_lib.load_config_file(path)
    config = config_lib.with_overrides(
        config,
        {
            "train.steps_per_epoch": options.steps,
            "ensemble.dispatch": options.dispatch,
            **options.overrides,
        },
    )
    space = population_space(config_lib.load_search_space(path, SPACE))
    flat = config_lib.flatten(config)
    x, y = make_beats(options.data_size, 5, seed=0)
    beats = data_lib.BeatData(x=x, y=y.astype(np.int32), num_classes=5, source="synthetic")
    batch = int(config.train.batch_size)
    single = config_lib.with_overrides(config, {"ensemble.strategy": "loop"})
    cases = [_Case("separate", "loop", 1, batch, options.steps)]
    _start(cases[0], lambda: Ensemble(single, beats, [0]))
    log(f"  separate single-setting program: {cases[0].per_member():.0f} samples/s")
    banned: set[str] = set()
    for size in sorted(options.sizes):
        settings = draw(space, {k: flat[k] for k in space}, size, (0, size))
        group = []
        for strategy in options.strategies:
            if strategy in banned:
                continue
            cfg = config_lib.with_overrides(config, {"ensemble.strategy": strategy})
            case = _Case(f"population {size}", strategy, size, batch, options.steps)
            _start(case, lambda cfg=cfg, settings=settings: Population(cfg, beats, [0], settings))
            log(f"  population {size} {strategy}: {case.per_member():.0f} member-samples/s")
            group.append(case)
        best = max((c.per_member() for c in group), default=0.0)
        banned |= {c.strategy for c in group if c.per_member() * options.skip < best}
        cases += group
    rng = random.Random(0)
    live = list(cases)
    for round_ in range(options.repeats - 1):
        rng.shuffle(live)
        for c in live:
            _time(c, 3 + round_)
    base = cases[0].per_member()
    rows = [
        {
            "case": c.label,
            "strategy": c.strategy,
            "members": c.members,
            "member_samples_per_s": c.per_member(),
            "vs_separate": c.per_member() / base if base else None,
            "startup_s": c.startup_s,
            "separate_startup_s": cases[0].startup_s * c.members,
            "times_s": c.times,
        }
        for c in cases
    ]
    return {
        "backend": jax.default_backend(),
        "config": CONFIG,
        "options": options.__dict__,
        "dispatch": options.dispatch,
        "rows": rows,
    }


def _start(case: _Case, build: Any) -> None:
    t0 = time.perf_counter()
    case.ens = build()
    case.state = jax.block_until_ready(case.ens.init())
    _time(case, 1)  # compile + first epoch
    case.startup_s = time.perf_counter() - t0
    case.times.clear()
    _time(case, 2)


def _time(case: _Case, epoch: int) -> None:
    assert case.ens is not None
    t0 = time.perf_counter()
    case.state, _ = case.ens.train_epoch(case.state, epoch)
    jax.block_until_ready(case.state)
    case.times.append(time.perf_counter() - t0)


def table_lines(result: dict[str, Any]) -> list[str]:
    """The printed table: per-member throughput vs the separate programs, per strategy."""
    out = [
        f"populations vs separate single-setting programs ({result['backend']}, {result['config']}, "
        f"{result.get('dispatch', 'python')} dispatch)",
        f"{'case':<16}{'strategy':<10}{'member-samples/s':>18}{'vs separate':>13}{'startup s':>11}"
        f"{'separate startup s':>20}",
    ]
    for r in result["rows"]:
        ratio = "" if r["vs_separate"] is None else f"{r['vs_separate']:.2f}x"
        out.append(
            f"{r['case']:<16}{r['strategy']:<10}{r['member_samples_per_s']:>18,.0f}"
            f"{ratio:>13}{r['startup_s']:>11.1f}{r['separate_startup_s']:>20.1f}"
        )
    return out
