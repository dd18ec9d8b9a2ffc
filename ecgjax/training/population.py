"""A population: P settings of the continuous hyper-parameters x S seeds in one program.

Member ``m = p * S + s`` trains setting ``p`` with seed ``seeds[s]`` (the same S seeds for
every setting: common random numbers, so settings are compared on equal data orders and
initialisations). The members are an ordinary stacked ensemble state, trained by any
ensemble strategy (``wide``, ``vmap``, ``unrolled``, ``loop``, ``sequential``; ``auto``
chooses per backend); what differs per member is data, never the compiled step:

* learning rate and weight decay sit in the optimizer state (``optax.inject_hyperparams``);
* every other key of :data:`ecgjax.training.space.TRACED` rides in the step's hyper-parameter
  argument, a dict with a member axis (:func:`ecgjax.training.step.split_hparams`).

Member k equals a single-setting run with member k's values and seed, to float tolerance
(``tests/test_population.py``). Values the config's structure ignores (``focal_gamma`` of a
plain CE loss, ``balance_power`` under uniform sampling, augmentation strengths with
``augment.enabled=False``, ``rr_beat_dropout`` without ``model.rr_context``) have no effect,
exactly as in a single run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.optim import set_hyperparams
from ecgjax.training.space import INTEGER, TRACED
from ecgjax.training.step import TrainState

_OPTIM = ("optim.learning_rate", "optim.weight_decay")


class Population(Ensemble):
    """``P x S`` members: setting values ``{key: (P,)}`` times ``seeds``."""

    member_hparams = True

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        train: data_lib.BeatData,
        seeds: list[int],
        settings: Mapping[str, Any],
    ) -> None:
        """Raises ``ValueError`` for a key that is not traced or settings of unequal length."""
        unknown = sorted(set(settings) - set(TRACED))
        if unknown:
            raise ValueError(
                f"population keys {unknown} are not traced hyper-parameters; "
                f"choose from {sorted(TRACED)}"
            )
        lengths = {len(np.atleast_1d(v)) for v in settings.values()}
        if len(lengths) > 1:
            raise ValueError(f"population settings have different lengths {sorted(lengths)}")
        self.num_settings = lengths.pop() if lengths else 1
        self.seeds_per_setting = len(seeds)
        self.train_y = np.asarray(train.y)
        base = config_lib.flatten(config)
        # Every traced key gets a per-member value (the config's where not varied), so the
        # step's argument always has the same structure and selection can copy any of them.
        self.varied = sorted(settings)
        self.values = {
            k: np.repeat(
                np.asarray(settings[k], np.float64)
                if k in settings
                else np.full(self.num_settings, float(base[k])),
                len(seeds),
            )
            for k in TRACED
        }
        super().__init__(config, train, [s for _ in range(self.num_settings) for s in seeds])
        self._refresh()

    @property
    def num_members(self) -> int:
        return len(self.seeds)

    def setting_of(self, member: int) -> int:
        return member // self.seeds_per_setting

    def member_values(self, member: int) -> dict[str, float]:
        """The varied values of one member (what its single-setting run would set)."""
        return {k: _py(k, self.values[k][member]) for k in self.varied}

    def member_config(self, member: int) -> ml_collections.ConfigDict:
        """The config of the single-setting run that member ``member`` equals (one seed)."""
        overrides: dict[str, Any] = dict(self.member_values(member))
        overrides["seed"] = int(self.seeds[member])
        overrides["train.num_seeds"] = 1
        return config_lib.with_overrides(self.config, overrides)

    def _sample_probs(self, y: np.ndarray) -> jax.Array | None:
        if self.config.sampling.name != "balanced":
            return super()._sample_probs(y)
        rows = []
        for power in self.values["sampling.balance_power"]:
            p = self._balanced(y, float(power))
            rows.append(p / p.sum())
        return jnp.asarray(np.stack(rows), jnp.float32)

    def _refresh(self) -> None:
        """Rebuild the device arrays of :attr:`values` (after init or a selection)."""
        v = self.values
        cw = [
            data_lib.class_weights(self.train_y, self.num_classes, float(p))
            for p in v["loss.class_weight_power"]
        ]
        # Only varied keys are traced (a constant one keeps the config's cheaper static path);
        # the set is fixed at construction, so the step's argument keeps one structure.
        hp: dict[str, Any] = {"class_weights": jnp.asarray(np.stack(cw), jnp.float32)}
        for key, name in (
            ("loss.label_smoothing", "label_smoothing"),
            ("loss.focal_gamma", "focal_gamma"),
        ):
            if key in self.varied:
                hp[name] = jnp.asarray(v[key], jnp.float32)
        for key, name in (
            ("model.dropout", "dropout"),
            ("model.rr_beat_dropout", "rr_beat_dropout"),
        ):
            if key in self.varied:
                hp[f"{name}_keep"] = jnp.asarray(1.0 - v[key], jnp.float32)  # 1 - rate in float64
        strengths = [k for k in self.varied if k.startswith("augment.")]
        if strengths and self.config.augment.enabled:
            hp["augment"] = {
                k.split(".", 1)[1]: jnp.asarray(v[k], jnp.int32 if k in INTEGER else jnp.float32)
                for k in strengths
            }
        self._hp = hp
        self._member_hp = [jax.tree.map(lambda a, m=m: a[m], hp) for m in range(self.num_members)]
        self.sample_probs = self._sample_probs(self.train_y)

    def hparams(self, member: int | None) -> Any:
        return self._hp if member is None else self._member_hp[member]

    def init(self) -> TrainState:
        """Fresh members with their own learning rate and weight decay."""
        return self.with_optimizer_values(super().init())

    def with_optimizer_values(self, state: TrainState) -> TrainState:
        """``state`` with every member's learning rate and weight decay from :attr:`values`."""
        return state.replace(
            opt_state=set_hyperparams(
                state.opt_state,
                learning_rate=self.values["optim.learning_rate"],
                weight_decay=self.values["optim.weight_decay"],
            )
        )

    def set_values(self, state: TrainState, values: Mapping[str, np.ndarray]) -> TrainState:
        """Replace member values (``{key: (members,)}``); returns the state with them applied."""
        for k, v in values.items():
            if k not in self.values:
                raise KeyError(f"not a traced hyper-parameter: {k}")
            v = np.asarray(v, np.float64)
            if k not in self.varied and not np.array_equal(v, self.values[k]):
                raise ValueError(f"{k} is not varied by this population; it cannot change")
            self.values[k] = v.copy()
        self._refresh()
        return self.with_optimizer_values(state)


def _py(key: str, value: Any) -> float | int:
    return round(float(value)) if key in INTEGER else float(value)


def member_table(pop: Population, scores: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per member: index, setting, seed, varied values and per-member scores."""
    rows = []
    for m in range(pop.num_members):
        row: dict[str, Any] = {
            "member": m,
            "setting": pop.setting_of(m),
            "seed": int(pop.seeds[m]),
        }
        row.update(pop.member_values(m))
        row.update({k: float(v[m]) for k, v in scores.items()})
        rows.append(row)
    return rows
