"""Seed-ensemble training throughput per strategy and dispatch: the measurement behind ``auto``.

For each model config and seed count, every ensemble strategy (vmap, wide, unrolled, loop,
sequential; see :mod:`ecgjax.training.engine`) and step dispatch (python, scan) trains real epochs of
``steps`` optimizer steps through :class:`ecgjax.training.engine.Ensemble` on synthetic beats. The
first epoch (compile + warm-up) is excluded; the repeats of all cases of one model are
interleaved in a shuffled round-robin, so slow drifts of a shared machine hit every case
alike, and results are medians with their spread. Cases that lose by ``prune``x after one
repeat get no more repeats, and those that lose by more than ``skip``x the most they could
catch up are not run at larger seed counts (a 25-80x slower ``lax.scan`` around convs on
XLA:CPU would otherwise eat the time budget). Compile time is the lowering and compilation of
the step program(s) an epoch calls; memory is what XLA plans for them (``memory_analysis``),
plus the process peak (device allocator or RSS).
"""

from __future__ import annotations

import dataclasses
import platform
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.bench import report as bench_report
from ecgjax.bench import torchref
from ecgjax.data.synthetic import make_beats
from ecgjax.training.engine import Ensemble
from ecgjax.training.strategy import DISPATCHES, STACKED, STRATEGIES

REFERENCE_CONFIGS = {
    "cnn2d": "default_cnn.py",
    "transformer": "default_transformer.py",
    "resnet1d": "resnet1d.py",
}


@dataclass(frozen=True)
class Options:
    """What to measure; ``quick()`` is the short device run."""

    models: tuple[str, ...] = tuple(REFERENCE_CONFIGS)
    seeds: tuple[int, ...] = (1, 2, 4, 8)
    strategies: tuple[str, ...] = STRATEGIES
    # With one seed, unrolled and sequential make the same single-seed calls as loop, and
    # wide only matters once there are seeds to fold (it costs two compiles per model).
    strategies_at_one: tuple[str, ...] = ("vmap", "loop")
    dispatches: tuple[str, ...] = DISPATCHES
    batch: int = 0  # 0 = each config's own batch size
    steps: int = 16  # optimizer steps per seed per timed repeat (one epoch)
    repeats: int = 5
    scan_steps: int = 8
    prune: float = 2.0  # no more repeats when this much slower than the best
    skip: float = 3.0  # not run at larger seed counts (see _bans)
    data_size: int = 4096
    torch: bool = False  # time the PyTorch originals (ecgjax.bench.torchref) in the same rounds
    torch_threads: tuple[int, ...] = (0, 1)  # 0 = torch's default; the faster is the yardstick
    overrides: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def quick(**changes: Any) -> Options:
        """The short device check (~2-3 min on a GPU): 1 and 8 seeds, 3 repeats, one seed only
        as loop and vmap, and no ``unrolled`` (it compiles 8 copies of the step; on XLA:CPU
        that took 10-20 s per program, so only the full run measures it)."""
        base = Options(
            seeds=(1, 8),
            repeats=3,
            strategies=("vmap", "wide", "loop", "sequential"),
            strategies_at_one=("loop", "vmap"),
        )
        return dataclasses.replace(base, **changes)


@dataclass
class Case:
    model: str
    seeds: int
    strategy: str
    dispatch: str
    batch: int
    steps: int
    status: str = "ok"  # ok | pruned (one repeat) | skipped | error
    note: str = ""
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    compile_s: float | None = None
    memory_bytes: int | None = None
    process_peak_bytes: int | None = None
    ens: Ensemble | None = None
    state: Any = None
    runner: Any = None  # a PyTorch reference epoch (strategy "torch"), instead of ``ens``

    @property
    def samples(self) -> int:
        return self.seeds * self.steps * self.batch

    def throughput(self) -> np.ndarray:
        return self.samples / np.asarray(self.times, dtype=np.float64)

    def median(self) -> float:
        return float(np.median(self.throughput())) if self.times else 0.0

    def summary(self) -> dict[str, Any]:
        thr = self.throughput()
        out = {k: getattr(self, k) for k in ("model", "seeds", "strategy", "dispatch", "batch")}
        out |= {k: getattr(self, k) for k in ("steps", "status", "note", "compile_s")}
        out["memory_bytes"], out["process_peak_bytes"] = self.memory_bytes, self.process_peak_bytes
        out["times_s"] = [round(t, 6) for t in self.times]
        out["cpu_util"] = round(float(np.median(self.cpu)), 3) if self.cpu else None
        out["seed_samples_per_s"] = (
            {
                "median": float(np.median(thr)),
                "q25": float(np.percentile(thr, 25)),
                "q75": float(np.percentile(thr, 75)),
                "min": float(thr.min()),
                "max": float(thr.max()),
                "n": len(thr),
            }
            if len(thr)
            else None
        )
        return out


def model_config(name: str, options: Options) -> ml_collections.ConfigDict:
    """A reference model's config (or any config file path), set up for benchmarking."""
    path = (
        Path(name)
        if name.endswith(".py")
        else paths.PROJECT_ROOT / "configs" / REFERENCE_CONFIGS[name]
    )
    config = config_lib.load_config_file(path)
    changes = {
        "train.steps_per_epoch": options.steps,
        "ensemble.scan_steps": options.scan_steps,
        "model.rr_context": False,  # synthetic beats carry no RR context
        **options.overrides,
    }
    if options.batch:
        changes["train.batch_size"] = options.batch
    return config_lib.with_overrides(config, changes)


def run(options: Options, log: Any = print) -> dict[str, Any]:
    """Measure every case of ``options``; returns the JSON-ready result (see ``bench_report``)."""
    unknown = set(options.strategies) - set(STRATEGIES) | set(options.dispatches) - set(DISPATCHES)
    if unknown:
        raise ValueError(
            f"unknown strategies/dispatches {sorted(unknown)}; see ecgjax.training.strategy"
        )
    x, y = make_beats(options.data_size, 5, seed=0)
    beats = data_lib.BeatData(x=x, y=y.astype(np.int32), num_classes=5, source="synthetic")
    _warm_up()
    cases: list[Case] = []
    started = time.perf_counter()
    for model in options.models:
        config = model_config(model, options)
        model_cases = _measure_model(model, config, beats, options, log)
        cases += model_cases
        for case in model_cases:
            case.ens, case.state = None, None
    summaries = [c.summary() for c in cases]
    return bench_report.result_json(
        summaries, dataclasses.asdict(options), time.perf_counter() - started
    )


def _warm_up() -> None:
    """Pay the backend's first-compile start-up here, not in the first case's compile time."""
    f = jax.jit(lambda a: jnp.tanh(a @ a).sum())
    f(jnp.ones((8, 8))).block_until_ready()


def _measure_model(
    model: str,
    config: ml_collections.ConfigDict,
    beats: data_lib.BeatData,
    options: Options,
    log: Any,
) -> list[Case]:
    cases: list[Case] = []
    banned: dict[tuple[str, str], str] = {}
    batch = int(config.train.batch_size)
    counts = sorted(options.seeds)
    for i, seeds in enumerate(counts):
        strategies = options.strategies_at_one if seeds == 1 else options.strategies
        group: list[Case] = []
        for strategy in [s for s in options.strategies if s in strategies]:
            for dispatch in options.dispatches:
                case = Case(model, seeds, strategy, dispatch, batch, options.steps)
                ban = banned.get((strategy, dispatch))
                if ban is not None:
                    case.status, case.note = "skipped", ban
                else:
                    best = max((c.median() for c in group if c.status == "ok"), default=0.0)
                    _start(case, config, beats, options, best)
                    log(_progress(case))
                group.append(case)
        if seeds == 1 and options.torch and model in torchref.REFERENCE_MODELS:
            for threads in options.torch_threads:
                group.append(_torch_case(model, config, beats, options, threads, log))
        cases += group
        growth = counts[i + 1] / seeds if i + 1 < len(counts) else 1.0
        banned |= _bans(group, growth, options)
    for c in cases:
        if c.status != "ok":
            c.ens, c.state = None, None  # free device memory for the repeats
    rng = random.Random(0)
    live = [c for c in cases if c.status == "ok"]
    for round_ in range(options.repeats - 1):
        rng.shuffle(live)
        for c in live:
            _time_epoch(c, epoch=3 + round_)
    return cases


def _bans(group: list[Case], growth: float, options: Options) -> dict[tuple[str, str], str]:
    """Prune cases that lose by ``prune``x at this seed count; ban from larger counts those
    that lose by more than ``skip``x times the most they could gain there: nothing for a
    single-seed program called per seed, at most the seed growth for a stacked program."""
    # The PyTorch reference is a yardstick, never pruned nor a candidate.
    measured = [c for c in group if c.status in ("ok", "pruned") and c.runner is None]
    best = max((c.median() for c in measured), default=0.0)
    bans = {}
    for c in measured:
        slower = best / c.median() if c.median() > 0 else float("inf")
        if slower > options.prune and c.status == "ok":
            c.status, c.note = "pruned", f"{slower:.1f}x slower than best"
        room = growth if c.strategy in STACKED else 1.0
        if slower > options.skip * room:
            note = f"{slower:.0f}x slower at {c.seeds} seeds"
            bans[(c.strategy, c.dispatch)] = note
            if c.strategy == "loop":  # sequential makes the very same single-seed calls
                bans[("sequential", c.dispatch)] = note + " (as loop)"
                if c.seeds == 1:  # and unrolled runs the same single-seed graph per member
                    bans[("unrolled", c.dispatch)] = note + " (as loop)"
    return bans


def _start(
    case: Case,
    config: ml_collections.ConfigDict,
    beats: data_lib.BeatData,
    options: Options,
    best: float,
) -> None:
    """Build and compile one case, warm it up, then time its first repeat, unless the warm-up
    epoch alone is ``skip``x slower than the ``best`` first repeat at this seed count."""
    overrides = {"ensemble.strategy": case.strategy, "ensemble.dispatch": case.dispatch}
    try:
        config = config_lib.with_overrides(config, overrides)
        case.ens = Ensemble(config, beats, list(range(case.seeds)))
        case.state = jax.block_until_ready(case.ens.init())
        t0 = time.perf_counter()
        case.memory_bytes = case.ens.program_memory(case.state)  # lowers and compiles
        case.compile_s = time.perf_counter() - t0
        _time_epoch(case, epoch=1)
        case.process_peak_bytes = _process_peak()
        warm = case.median()
        if warm * options.skip < best:
            case.status, case.note = "pruned", f"{best / warm:.0f}x slower in its warm-up epoch"
            case.cpu.clear()
            return
        case.times.clear()
        case.cpu.clear()
        _time_epoch(case, epoch=2)
    except Exception as err:  # a strategy that cannot build or run is a result, not a crash
        case.status, case.note = "error", f"{type(err).__name__}: {err}"[:300]
        case.ens, case.state = None, None


def _torch_case(
    model: str,
    config: ml_collections.ConfigDict,
    beats: data_lib.BeatData,
    options: Options,
    threads: int,
    log: Any,
) -> Case:
    """The PyTorch original of ``model`` at the same size and batch, timed like the others."""
    batch = int(config.train.batch_size)
    threads = threads or torchref.default_threads()
    case = Case(model, 1, "torch", f"eager-{threads}t", batch, options.steps)
    case.note = f"PyTorch {torchref.version()}, {threads} threads"
    case.runner = torchref.step_runner(
        model, config.model, batch, options.steps, beats.x, beats.y, threads
    )
    case.runner(0)  # warm-up (allocator, first-call dispatch)
    _time_epoch(case, epoch=2)
    log(_progress(case))
    return case


def _time_epoch(case: Case, epoch: int) -> None:
    cpu0, t0 = time.process_time(), time.perf_counter()
    if case.runner is not None:
        case.runner(epoch)
    else:
        assert case.ens is not None
        case.state, _ = case.ens.train_epoch(case.state, epoch)
        jax.block_until_ready(case.state)
    wall = time.perf_counter() - t0
    case.times.append(wall)
    case.cpu.append((time.process_time() - cpu0) / wall)


def _process_peak() -> int:
    stats = jax.local_devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _progress(case: Case) -> str:
    if case.status == "error":
        return f"  {case.model} {case.seeds} seeds {case.strategy}/{case.dispatch}: {case.note}"
    compile_s = f"{case.compile_s:.1f}" if case.compile_s is not None else "?"
    return (
        f"  {case.model} {case.seeds} seeds {case.strategy}/{case.dispatch}: "
        f"{case.median():.0f} seed-samples/s, compile {compile_s} s"
    )
