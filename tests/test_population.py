"""Populations: member k equals a single-setting run; in-program PBT and successive halving."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax.config import base_config
from ecgjax.data.synthetic import make_beats
from ecgjax.training import selection
from ecgjax.training.engine import Ensemble
from ecgjax.training.optim import get_hyperparams
from ecgjax.training.population import Population
from ecgjax.training.space import SPACE, draw, perturb, population_space

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
    "model.rr_beat_dropout": [0.0, 0.3, 0.5],
}


def small_config(strategy: str, dispatch: str = "python") -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name, c.model.hidden, c.model.num_blocks = "resnet1d", 4, 1
    c.model.norm, c.model.rr_context = "batch", True
    c.loss.name = "weighted_focal"
    c.sampling.name = "balanced"
    c.augment.enabled = True
    c.optim.name = "adamw"
    c.train.batch_size, c.train.steps_per_epoch, c.train.epochs = 16, 4, 2
    c.train.eval_batch_size = 64
    c.ensemble.strategy, c.ensemble.dispatch = strategy, dispatch
    return c


def beats(n: int = 120, seed: int = 0) -> data_lib.BeatData:
    x, y = make_beats(n, 5, seed)
    context = np.random.default_rng(seed).uniform(0.5, 1.5, (n, 4)).astype(np.float32)
    return data_lib.BeatData(
        x=x, y=y.astype(np.int32), num_classes=5, source="synthetic", context=context
    )


def run(ens: Ensemble, epochs: int = 2):
    state = ens.init()
    for epoch in range(1, epochs + 1):
        state, _ = ens.train_epoch(state, epoch)
    return state


@pytest.mark.parametrize(
    ("strategy", "dispatch"), [("wide", "python"), ("loop", "python"), ("loop", "flat")]
)
def test_member_k_equals_a_single_run_with_its_values_and_seed(
    strategy: str, dispatch: str
) -> None:
    config = small_config(strategy, dispatch)
    pop = Population(config, beats(), [0, 7], SETTINGS)
    assert pop.num_members == 6 and pop.strategy == strategy
    state = run(pop)
    probs = pop.predict(state, beats(40, 5))
    for k in (3, 4):  # settings 1, 2; seeds 7, 0
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


def _space():
    return population_space(
        {
            "optim.learning_rate": SPACE.loguniform(1e-4, 1e-2),
            "model.dropout": SPACE.uniform(0.0, 0.3),
            "augment.time_shift": SPACE.randint(0, 5),
            "loss.class_weight_power": SPACE.choice([0.0, 0.5, 1.0]),
            "model.name": SPACE.choice(["cnn2d", "resnet1d"]),  # structural: not drawn
        }
    )


def _marked_population() -> tuple[Population, object]:
    """4 settings x 2 seeds whose params are tagged with their member index."""
    space = _space()
    config = small_config("loop")
    base = {k: float(config[k.split(".")[0]][k.split(".")[1]]) for k in space}
    pop = Population(config, beats(), [0, 1], draw(space, base, 4, (0, 1)))
    state = pop.init()
    tag = np.arange(pop.num_members, dtype=np.float32)
    state = state.replace(
        params=jax.tree.map(
            lambda a: a * 0 + tag.reshape((-1,) + (1,) * (a.ndim - 1)), state.params
        )
    )
    return pop, state


def _member_tag(state, m: int) -> float:
    return float(np.asarray(jax.tree.leaves(state.params)[0])[m].ravel()[0])


def test_pbt_exploit_copies_the_top_setting_and_explore_stays_in_bounds() -> None:
    pop, state = _marked_population()
    space = _space()
    assert "model.name" not in space and set(pop.varied) == set(space)
    old_keys = np.asarray(state.key).copy()
    scores = np.array([0.1, 0.1, 0.9, 0.9, 0.5, 0.5, 0.2, 0.2])  # settings: 0.1 0.9 0.5 0.2
    new_state, events = selection.pbt(pop, state, scores, space, np.random.default_rng(0), 0.25)
    assert [(e.target, e.source) for e in events] == [(0, 1)]
    assert [_member_tag(new_state, m) for m in range(8)] == [2, 3, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(np.asarray(new_state.key), old_keys)  # own data order
    lr = np.asarray(get_hyperparams(new_state.opt_state)["learning_rate"])
    np.testing.assert_allclose(lr, pop.values["optim.learning_rate"], rtol=1e-6)
    for k, dist in space.items():
        low, high = dist.bounds()
        assert low <= events[0].values[k] <= high
        assert pop.values[k][0] == pop.values[k][1] == pytest.approx(events[0].values[k])


def test_explore_stays_within_the_bounds() -> None:
    space = _space()
    rng = np.random.default_rng(1)
    values = {k: float(d.bounds()[1]) for k, d in space.items()}  # at the top edge
    for _ in range(300):
        values = perturb(space, values, rng, factors=(0.5, 2.0))
        for k, dist in space.items():
            low, high = dist.bounds()
            assert low <= values[k] <= high, (k, values[k])
        assert float(values["augment.time_shift"]).is_integer()


def test_halving_replaces_the_bottom_half_by_the_best_with_new_draws() -> None:
    pop, state = _marked_population()
    before = {k: v.copy() for k, v in pop.values.items()}
    scores = np.array([0.1, 0.1, 0.9, 0.9, 0.5, 0.5, 0.2, 0.2])
    new_state, events = selection.halving(pop, state, scores, _space(), np.random.default_rng(2))
    assert sorted((e.target, e.source) for e in events) == [(0, 1), (3, 1)]
    assert [_member_tag(new_state, m) for m in range(8)] == [2, 3, 2, 3, 4, 5, 2, 3]
    for k in pop.varied:  # survivors keep their values
        np.testing.assert_array_equal(pop.values[k][2:6], before[k][2:6])


def test_population_run_selects_and_exports_the_best_setting(tmp_path) -> None:
    from ecgjax.training import checkpoint as ckpt
    from ecgjax.training.population_run import PopulationRun

    config = small_config("wide")
    config.train.num_seeds, config.train.epochs = 2, 2
    config.train.select_metric = "macro_f2"
    config.tune.population, config.tune.population_selection = 3, "pbt"
    config.tune.population_interval, config.tune.population_quantile = 1, 0.34
    splits = data_lib.Splits(beats(), beats(60, 1), beats(60, 2))
    run = PopulationRun(config, splits, _space(), (0, 3))
    first = run.step()
    assert len(first.members) == 6 and [e.kind for e in first.events] == ["pbt"]
    assert first.metrics["val/macro_f2"] == max(
        np.mean([m["val_macro_f2"] for m in first.members if m["setting"] == p]) for p in range(3)
    )
    run.step()
    assert run.done
    out = run.export_best(tmp_path / "best")
    config_json, meta = ckpt.read_run_files(out)
    exported = config_lib.from_json(config_json)
    for k, v in run.best["values"].items():
        assert exported[k.split(".")[0]][k.split(".")[1]] == pytest.approx(v)
    ens = Ensemble(exported, None, meta["seeds"], context_dim=meta["context_dim"])
    state, progress = ckpt.restore_dir(out / "best", ens.abstract_state())
    assert progress["best_epoch"] == run.best["epoch"] and meta["seeds"] == [0, 1]
    assert np.asarray(ens.predict(state, splits.val)).shape == (2, 60, 5)
