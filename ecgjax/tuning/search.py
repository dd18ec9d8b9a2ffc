"""A sweep's search space and Ray's scheduler and searcher for it, from the config.

Search spaces are keyed by dotted config paths (``optim.learning_rate``). Ray reads ``/`` in
keys as nesting and some searchers flatten names, so the space is handed to Ray as nested
dicts (``{"optim": {"learning_rate": ...}}``) and flattened back in the trial
(:func:`flatten_params`).
"""

from __future__ import annotations

from typing import Any

import ml_collections
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
