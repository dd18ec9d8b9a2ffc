"""Choosing the ensemble strategy and step dispatch per backend, from measurements.

``scripts/bench.py --write_auto`` stores the measured winners per backend and model (and per
seed count) in ``report/bench/auto.json``; ``auto`` reads that cache first. What the
benchmark found on the project's 2-core CPU (DESIGN.md point 9, report/bench/bench-cpu-*.json):

* ``vmap`` over seeds runs conv nets at 0.2-0.5x the seed-samples/s of one seed (vmapped
  kernels become grouped convolutions, single-threaded on XLA:CPU); ``wide`` (im2col +
  batched matmul) is better but still 0.5-0.8x.
* ``lax.scan`` around convs is 25-80x slower (XLA:CPU keeps the weight-gradient conv of a
  while-loop body in a slow layout); conv-free bodies (the transformer) scan fine.
* Stacked programs called once per step pay page faults: their temporaries grow with the
  seeds, and past glibc's 32 MB mmap threshold every call maps them afresh; ``scan`` dispatch
  amortises that over k steps, so the transformer's best is ``unrolled``/``scan``.
* ``loop``/``sequential`` (one single-seed program per member) stay within noise of one seed.
* ``flat`` dispatch (2026-12-08): the ``python`` loop on a state packed into one buffer per
  dtype, Adam fused over one vector (:mod:`ecgjax.training.packing`); fewer buffers and
  kernels per step, a few percent faster on this CPU, equal to float rounding.

Without a cached measurement ``auto`` falls back to ``loop``/``python`` on CPU and to
``vmap``/``scan`` on accelerators (small models under-use a GPU, so batching seeds should
pay there; run ``scripts/bench.py --quick --write_auto`` on the device to know). Timing the
candidates when an ensemble is created was considered and rejected: compiling 3-4 extra
programs costs 5-15 s on this CPU (the ``compile_s`` column of the benchmark), which every
smoke run and Tune trial would pay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import ml_collections

from ecgjax import paths

STRATEGIES = ("vmap", "wide", "unrolled", "loop", "sequential")
STACKED = ("vmap", "wide", "unrolled")  # one program steps all seeds; state keeps its seed axis
DISPATCHES = ("python", "scan", "flat")
DEFAULTS = {"cpu": ("loop", "python")}
ACCELERATOR_DEFAULT = ("vmap", "scan")


@dataclass(frozen=True)
class Choice:
    strategy: str
    dispatch: str
    reason: str


def cache_file() -> str:
    return str(paths.report_dir() / "bench" / "auto.json")


def choose(config: ml_collections.ConfigDict, backend: str, num_seeds: int) -> Choice:
    """Resolve ``ensemble.strategy`` / ``ensemble.dispatch`` (``auto`` or explicit)."""
    strategy, dispatch = config.ensemble.strategy, config.ensemble.dispatch
    if strategy not in (*STRATEGIES, "auto"):
        raise ValueError(
            f"unknown ensemble.strategy {strategy!r}; choose auto, {', '.join(STRATEGIES)}"
        )
    if dispatch not in (*DISPATCHES, "auto"):
        raise ValueError(
            f"unknown ensemble.dispatch {dispatch!r}; choose auto, {', '.join(DISPATCHES)}"
        )
    if strategy != "auto" and dispatch != "auto":
        return Choice(strategy, dispatch, "set in config")
    cached = cached_choice(backend, config.model.name, num_seeds)
    if cached is not None:
        auto_s, auto_d, reason = cached
    else:
        auto_s, auto_d = DEFAULTS.get(backend, ACCELERATOR_DEFAULT)
        reason = f"{backend} default, no benchmark of {config.model.name!r} in {cache_file()}"
    return Choice(
        auto_s if strategy == "auto" else strategy,
        auto_d if dispatch == "auto" else dispatch,
        reason,
    )


def cached_choice(backend: str, model: str, num_seeds: int) -> tuple[str, str, str] | None:
    """The benchmark's winner for the largest measured seed count <= ``num_seeds``."""
    try:
        with open(cache_file()) as f:
            table = json.load(f)
    except (OSError, ValueError):
        return None
    entry = table.get(backend, {}).get(model) if isinstance(table, dict) else None
    if not isinstance(entry, dict):
        return None
    by_seeds = entry.get("by_seeds")
    pick: dict[str, Any] = entry
    measured_at = "largest measured seed count"
    if isinstance(by_seeds, dict) and by_seeds:
        counts = sorted(int(s) for s in by_seeds)
        below = [s for s in counts if s <= num_seeds]
        nearest = below[-1] if below else counts[0]
        pick, measured_at = by_seeds[str(nearest)], f"{nearest} seeds"
    s, d = pick.get("strategy"), pick.get("dispatch")
    if s not in STRATEGIES or d not in DISPATCHES:
        return None
    speed = pick.get("seed_samples_per_s")
    detail = f", {speed:.0f} seed-samples/s" if isinstance(speed, int | float) else ""
    return s, d, f"measured by bench.py at {measured_at}{detail} ({cache_file()})"


def write_cache(winners: dict[str, dict[str, Any]], backend: str) -> str:
    """Merge ``{model: entry}`` winners for ``backend`` into the cache; returns its path."""
    path = paths.report_dir() / "bench" / "auto.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    table.setdefault(backend, {}).update(winners)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return str(path)
