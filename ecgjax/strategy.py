"""Choosing the ensemble strategy and step dispatch per backend, from measurements.

``scripts/bench.py`` writes its measured winners to ``report/bench/auto.json``; ``auto``
reads that cache first. Without a cached measurement it falls back to what the measurements
in DESIGN.md point 9 showed: on CPU, a loop over seeds and a Python loop over a jitted step
(vmapped convs become slow grouped convolutions; ``lax.scan`` around convs is ~10x slower);
on accelerators, vmap over seeds and ``lax.scan`` dispatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import ml_collections

from ecgjax import paths

STRATEGIES = ("vmap", "loop", "sequential")
DISPATCHES = ("python", "scan")


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
        raise ValueError(f"unknown ensemble.strategy {strategy!r}; choose auto, {', '.join(STRATEGIES)}")
    if dispatch not in (*DISPATCHES, "auto"):
        raise ValueError(f"unknown ensemble.dispatch {dispatch!r}; choose auto, {', '.join(DISPATCHES)}")
    reason = "set in config"
    if strategy == "auto" or dispatch == "auto":
        cached = _cached(backend, config.model.name)
        if cached is not None:
            auto_s, auto_d, reason = cached[0], cached[1], f"measured by bench.py ({cache_file()})"
        elif backend == "cpu":
            auto_s, auto_d, reason = "loop", "python", "CPU default (no cached benchmark)"
        else:
            auto_s, auto_d, reason = "vmap", "scan", f"{backend} default (no cached benchmark)"
        strategy = auto_s if strategy == "auto" else strategy
        dispatch = auto_d if dispatch == "auto" else dispatch
    if num_seeds == 1 and strategy == "vmap":
        reason += "; one seed"
    return Choice(strategy, dispatch, reason)


def _cached(backend: str, model: str) -> tuple[str, str] | None:
    try:
        with open(cache_file()) as f:
            table = json.load(f)
    except (OSError, ValueError):
        return None
    entry = table.get(backend, {}).get(model)
    if not isinstance(entry, dict):
        return None
    s, d = entry.get("strategy"), entry.get("dispatch")
    if s in STRATEGIES and d in DISPATCHES:
        return s, d
    return None
