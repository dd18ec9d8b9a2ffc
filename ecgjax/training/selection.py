"""Selection inside a population program: PBT and successive halving, without checkpoints.

Both work on settings (a setting's score is the mean over its seeds) and move whole
settings: all S seed members of a source setting are copied into a target setting, so each
setting stays an S-seed ensemble.

* **exploit** gathers the params, batch statistics and optimizer state of the source members
  into the targets (``a[src]`` along the member axis, on the device; no checkpoint round trip
  through Ray). Each member keeps its own rng key, so a copy does not retrace its source's
  data order and dropout masks.
* **PBT** (:func:`pbt`): the bottom ``quantile`` of settings exploit a random top-``quantile``
  setting and explore: their values are the source's, perturbed within the space's bounds
  (:func:`ecgjax.training.space.perturb`).
* **Successive halving** (:func:`halving`): at a rung the settings below ``quantile`` stop
  spending compute on their own values: they are replaced by copies of the best setting with
  new draws from the space. The program's shape (P members) stays fixed, so nothing
  recompiles, and the freed compute explores near the best weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecgjax.training.population import Population
from ecgjax.training.space import INTEGER, Dist, perturb
from ecgjax.training.step import TrainState


@dataclass(frozen=True)
class Event:
    """One selection move: ``target`` setting now continues from ``source`` with ``values``."""

    kind: str
    target: int
    source: int
    values: dict[str, float]


def setting_scores(scores: np.ndarray, seeds_per_setting: int) -> np.ndarray:
    """Per-setting mean of per-member scores ``(P * S,)`` -> ``(P,)``."""
    return np.asarray(scores, np.float64).reshape(-1, seeds_per_setting).mean(axis=1)


def member_sources(setting_src: np.ndarray, seeds_per_setting: int) -> np.ndarray:
    """Setting sources ``(P,)`` -> member sources ``(P * S,)`` (seed s copies seed s)."""
    s = seeds_per_setting
    return (
        np.repeat(np.asarray(setting_src), s) * s + np.tile(np.arange(s), len(setting_src))
    ).astype(np.int32)


def exploit(state: TrainState, src: np.ndarray) -> TrainState:
    """Members take the weights, batch statistics, optimizer state (and weight average, where
    ``optim.weight_ema`` keeps one) of ``src[m]``."""
    index = jnp.asarray(src, jnp.int32)

    def gather(tree: Any) -> Any:
        return jax.tree.map(lambda a: a[index], tree)

    return state.replace(
        params=gather(state.params),
        batch_stats=gather(state.batch_stats),
        opt_state=gather(state.opt_state),
        average=gather(state.average),
    )


def _bottom_top(scores: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")  # best first
    n = max(1, int(np.floor(len(scores) * quantile))) if len(scores) > 1 else 0
    return order[len(scores) - n :], order[:n]


def _apply(
    pop: Population, state: TrainState, setting_src: np.ndarray, new: dict[int, dict[str, float]]
) -> TrainState:
    member_src = member_sources(setting_src, pop.seeds_per_setting)
    state = exploit(state, member_src)
    values = {k: v[member_src].copy() for k, v in pop.values.items()}
    for target, vals in new.items():
        rows = slice(target * pop.seeds_per_setting, (target + 1) * pop.seeds_per_setting)
        for k, v in vals.items():
            values[k][rows] = v
    return pop.set_values(state, values)


def pbt(
    pop: Population,
    state: TrainState,
    scores: np.ndarray,
    space: Mapping[str, Dist],
    rng: np.random.Generator,
    quantile: float = 0.25,
) -> tuple[TrainState, list[Event]]:
    """One PBT exploit + explore over the settings; ``scores`` per member, higher is better."""

    def choose(top: np.ndarray) -> tuple[int, dict[str, float]]:
        source = int(top[int(rng.integers(len(top)))])
        first = source * pop.seeds_per_setting
        return source, perturb(space, {k: pop.values[k][first] for k in space}, rng)

    return _select(pop, state, scores, quantile, "pbt", choose)


def halving(
    pop: Population,
    state: TrainState,
    scores: np.ndarray,
    space: Mapping[str, Dist],
    rng: np.random.Generator,
    quantile: float = 0.5,
) -> tuple[TrainState, list[Event]]:
    """One successive-halving rung: settings below ``quantile`` restart from the best setting's
    weights with new draws from ``space``."""

    def choose(top: np.ndarray) -> tuple[int, dict[str, float]]:
        values = {
            k: float(round(d.sample(rng))) if k in INTEGER else float(d.sample(rng))
            for k, d in sorted(space.items())
        }
        return int(top[0]), values

    return _select(pop, state, scores, quantile, "halving", choose)


def _select(
    pop: Population,
    state: TrainState,
    scores: np.ndarray,
    quantile: float,
    kind: str,
    choose: Callable[[np.ndarray], tuple[int, dict[str, float]]],
) -> tuple[TrainState, list[Event]]:
    """What PBT and halving share: rank the settings by their mean score, let each bottom
    setting ``choose`` (from the top settings, best first) a source and its new values, then
    move them all at once."""
    per_setting = setting_scores(scores, pop.seeds_per_setting)
    bottom, top = _bottom_top(per_setting, quantile)
    src = np.arange(pop.num_settings)
    new, events = {}, []
    for target in bottom:
        source, values = choose(top)
        src[target] = source
        new[int(target)] = values
        events.append(Event(kind, int(target), source, values))
    return _apply(pop, state, src, new), events
