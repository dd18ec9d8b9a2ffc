"""The continuous hyper-parameters a population varies inside one program, and their space.

A config's ``get_search_space(tune)`` is called with :data:`SPACE`, a stand-in for
``ray.tune`` that records each distribution with its bounds instead of building Ray
objects, so the training layer can draw members and keep PBT's explore inside the bounds
without importing Ray.

Why members draw from the config's own space with a key per trial (not from the searcher):
Ray's searchers suggest one point per trial (Optuna's TPE is sequential), so P members would
cost P fake trials and P round trips; a per-trial key (``config.seed``, trial number) makes
a trial's members reproducible (a resumed trial redraws the same ones) and independent of
other trials'. Member 0 keeps the trial's own values, so the searcher's suggestion is always
one of the members; only the keys in :data:`TRACED` are drawn, structural keys (model,
width, depth, batch size, loss name) stay with Ray's searcher and scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

# Config keys a population can vary without recompiling, and where each one lives.
TRACED: dict[str, str] = {
    "optim.learning_rate": "optimizer state (optax.inject_hyperparams)",
    "optim.weight_decay": "optimizer state (optax.inject_hyperparams)",
    "model.dropout": "traced keep probability of every nn.Dropout (ecgjax.models.rates)",
    "model.rr_beat_dropout": "traced keep probability of the rhythm branch's modality dropout",
    "loss.label_smoothing": "traced loss argument",
    "loss.focal_gamma": "traced loss argument (focal losses only)",
    "loss.class_weight_power": "per-member class weights (weighted losses only)",
    "sampling.balance_power": "per-member sampling probabilities (balanced sampling only)",
    "augment.scale": "traced augmentation strength (augment.enabled only)",
    "augment.shift": "traced augmentation strength (augment.enabled only)",
    "augment.noise": "traced augmentation strength (augment.enabled only)",
    "augment.time_shift": "traced integer augmentation strength (augment.enabled only)",
}
INTEGER = {"augment.time_shift"}


@dataclass(frozen=True)
class Dist:
    """One search-space entry: ``kind`` in uniform, loguniform, choice, randint, grid."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "randint":
            return int(rng.integers(int(self.low), int(self.high)))
        return self.values[int(rng.integers(len(self.values)))]

    def bounds(self) -> tuple[float, float]:
        """The closed range a perturbed value is clipped to."""
        if self.kind in ("choice", "grid"):
            nums = [float(v) for v in self.values]
            return min(nums), max(nums)
        if self.kind == "randint":
            return float(self.low), float(self.high - 1)
        return float(self.low), float(self.high)

    def numeric(self) -> bool:
        return self.kind not in ("choice", "grid") or all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in self.values
        )


SPACE = SimpleNamespace(
    uniform=lambda low, high: Dist("uniform", float(low), float(high)),
    loguniform=lambda low, high: Dist("loguniform", float(low), float(high)),
    randint=lambda low, high: Dist("randint", float(low), float(high)),
    choice=lambda values: Dist("choice", values=tuple(values)),
    grid_search=lambda values: Dist("grid", values=tuple(values)),
)


def population_space(space: Mapping[str, Any]) -> dict[str, Dist]:
    """The entries of a space (built with :data:`SPACE`) that a population varies.

    Raises:
        ValueError: an entry was not built with :data:`SPACE` (e.g. built with ``ray.tune``).
    """
    out = {}
    for key, dist in space.items():
        if key not in TRACED:
            continue
        if not isinstance(dist, Dist):
            raise ValueError(f"search space entry {key!r} is not a distribution ({dist!r})")
        if dist.numeric():
            out[key] = dist
    return out


def draw(
    space: Mapping[str, Dist],
    base: Mapping[str, float],
    num: int,
    seed: Sequence[int],
    *,
    keep_first: bool = True,
) -> dict[str, np.ndarray]:
    """``num`` settings ``{key: (num,)}``; setting 0 is ``base`` when ``keep_first``.

    ``seed`` (for example ``(config.seed, trial number)``) seeds the draw: the same seed gives
    the same members.
    """
    rng = np.random.default_rng([int(s) for s in seed])
    out = {}
    for key in sorted(space):
        values = [space[key].sample(rng) for _ in range(num)]
        if keep_first:
            values[0] = base[key]
        out[key] = np.asarray(values, np.float64)
    return out


def perturb(
    space: Mapping[str, Dist],
    values: Mapping[str, float],
    rng: np.random.Generator,
    *,
    factors: tuple[float, float] = (0.8, 1.2),
    resample_probability: float = 0.25,
) -> dict[str, float]:
    """PBT's explore: resample a value, or scale it by a factor, then clip to its bounds.

    Like Ray's PBT, ``resample_probability`` redraws from the distribution; otherwise the
    value is multiplied by one of ``factors`` (integers are rounded). Every result lies in
    ``space[key].bounds()``.
    """
    out = {}
    for key, value in values.items():
        dist = space[key]
        if rng.random() < resample_probability:
            new = float(dist.sample(rng))
        else:
            new = float(value) * float(factors[int(rng.integers(len(factors)))])
        low, high = dist.bounds()
        new = min(max(new, low), high)
        out[key] = float(round(new)) if key in INTEGER else new
    return out
