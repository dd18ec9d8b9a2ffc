"""Populations: member k equals a single-setting run; in-program PBT and successive halving."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.config import base_config
from ecgjax.data.synthetic import make_beats
from ecgjax.training.engine import Ensemble
from ecgjax.training.population import Population

# Three settings that differ in every traced hyper-parameter the equivalence covers.
SETTINGS = {
    "optim.learning_rate": [3e-3, 1e-3, 1e-2],
    "optim.weight_decay": [1e-4, 0.0, 3e-3],
    "model.dropout": [0.1, 0.0, 0.4],
    "loss.class_weight_power": [0.5, 1.0, 0.0],
    "loss.label_smoothing": [0.0, 0.1, 0.05],
    "loss.focal_gamma": [0.0, 2.0, 1.0],
    "sampling.balance_power": [0.5, 1.0, 0.25],
    "augment.scale": [0.1, 0.0, 0.2],
    "augment.noise": [0.01, 0.0, 0.02],
    "augment.time_shift": [2, 0, 4],
}


def small_config(strategy: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name, c.model.hidden, c.model.num_blocks = "resnet1d", 4, 1
    c.model.norm = "batch"
    c.loss.name = "weighted_focal"
    c.sampling.name = "balanced"
    c.augment.enabled = True
    c.optim.name = "adamw"
    c.train.batch_size, c.train.steps_per_epoch, c.train.epochs = 16, 4, 2
    c.train.eval_batch_size = 64
    c.ensemble.strategy, c.ensemble.dispatch = strategy, "python"
    return c


def beats(n: int = 120, seed: int = 0) -> data_lib.BeatData:
    x, y = make_beats(n, 5, seed)
    return data_lib.BeatData(x=x, y=y.astype(np.int32), num_classes=5, source="synthetic")


def run(ens: Ensemble, epochs: int = 2):
    state = ens.init()
    for epoch in range(1, epochs + 1):
        state, _ = ens.train_epoch(state, epoch)
    return state


@pytest.mark.parametrize("strategy", ["wide", "loop"])
def test_member_k_equals_a_single_run_with_its_values_and_seed(strategy: str) -> None:
    config = small_config(strategy)
    pop = Population(config, beats(), [0, 7], SETTINGS)
    assert pop.num_members == 6 and pop.strategy == strategy
    state = run(pop)
    probs = pop.predict(state, beats(40, 5))
    for k in (1, 4, 5):  # settings 0, 2, 2; seeds 7, 0, 7
        single_config = pop.member_config(k)
        single_config.ensemble.strategy = "loop"
        assert single_config.model.dropout == SETTINGS["model.dropout"][pop.setting_of(k)]
        single = Ensemble(single_config, beats(), [int(single_config.seed)])
        single_state = run(single)
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(single_state.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a)[k], np.asarray(b)[0], rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(
            probs[k], single.predict(single_state, beats(40, 5))[0], atol=1e-5
        )
    # The settings really differ: members of one seed end apart.
    leaf = np.asarray(jax.tree.leaves(state.params)[0])
    assert not np.allclose(leaf[0], leaf[2], atol=1e-4)


def test_rr_beat_dropout_is_traced() -> None:
    config = small_config("loop")
    config.model.rr_context = True
    context = np.random.default_rng(0).uniform(0.5, 1.5, (120, 4)).astype(np.float32)
    train = dataclasses.replace(beats(), context=context)
    pop = Population(config, train, [3], {"model.rr_beat_dropout": [0.0, 0.5]})
    state = run(pop, 1)
    for k in (0, 1):
        single = Ensemble(pop.member_config(k), train, [3])
        single_state = run(single, 1)
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(single_state.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a)[k], np.asarray(b)[0], rtol=2e-4, atol=2e-5)
