"""The training core: seed-vmap equivalence, strategies, resume, checkpoints, NaN guard."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from ecgjax import data as data_lib
from ecgjax.config import base_config
from ecgjax.data.synthetic import make_beats
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.engine import Ensemble, NonFiniteLossError
from ecgjax.training.run import run_training
from ecgjax.training.strategy import DISPATCHES, STRATEGIES


def small_config(**model: object) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = "cnn2d"
    c.model.hidden = 4
    c.model.num_blocks = 1
    c.model.dropout = 0.1
    for k, v in model.items():
        c.model[k] = v
    c.train.batch_size = 16
    c.train.steps_per_epoch = 6
    c.train.epochs = 2
    c.train.eval_batch_size = 64
    c.ensemble.scan_steps = 4
    return c


def beats(n: int = 160, seed: int = 0) -> data_lib.BeatData:
    x, y = make_beats(n, 5, seed)
    return data_lib.BeatData(x=x, y=y.astype(np.int32), num_classes=5, source="synthetic")


def splits() -> data_lib.Splits:
    return data_lib.Splits(beats(160, 0), beats(60, 1), beats(60, 2))


def params_of(state) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(state.params)]


def train(config: ml_collections.ConfigDict, seeds: list[int], epochs: int = 2):
    ens = Ensemble(config, beats(), seeds)
    state = ens.init()
    for epoch in range(1, epochs + 1):
        state, _ = ens.train_epoch(state, epoch)
    return ens, state


@pytest.mark.parametrize("model", ["cnn2d", "transformer"])
def test_member_k_of_vmapped_ensemble_equals_single_seed_run(model: str) -> None:
    config = small_config(name=model, hidden=8, num_heads=2)
    config.ensemble.strategy = "vmap"
    config.ensemble.dispatch = "python"
    ens, ens_state = train(config, [0, 1, 2])
    probs = ens.predict(ens_state, beats(40, 5))
    for k in range(3):
        single_ens, single = train(config, [k])
        leaves = jax.tree_util.tree_leaves_with_path(ens_state.params)
        for (path, a), b in zip(leaves, params_of(single), strict=True):
            name = jax.tree_util.keystr(path)
            if "['key']['bias']" in name:
                # The attention key bias has an exactly-zero true gradient (softmax ignores a
                # per-query constant); Adam normalises its float noise into lr-sized steps, so
                # it is checked through the predictions below instead.
                continue
            np.testing.assert_allclose(np.asarray(a)[k], b[0], rtol=2e-4, atol=2e-5, err_msg=name)
        np.testing.assert_allclose(probs[k], single_ens.predict(single, beats(40, 5))[0], atol=1e-5)


@pytest.fixture(scope="module")
def vmap_reference():
    reference = small_config(norm="batch")
    reference.ensemble.strategy, reference.ensemble.dispatch = "vmap", "python"
    return train(reference, [3, 4])[1]


@pytest.mark.parametrize(
    ("strategy", "dispatch"),
    [
        ("loop", "python"),
        ("loop", "scan"),
        ("sequential", "python"),
        ("vmap", "scan"),
        ("loop", "flat"),
        ("vmap", "flat"),
    ],
)
def test_every_strategy_gives_the_same_numbers(
    strategy: str, dispatch: str, vmap_reference
) -> None:
    ref_state = vmap_reference
    other = small_config(norm="batch")
    other.ensemble.strategy, other.ensemble.dispatch = strategy, dispatch
    ens, state = train(other, [3, 4])
    assert (ens.strategy, ens.dispatch) == (strategy, dispatch)
    for a, b in zip(params_of(ref_state), params_of(state), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(
        jax.tree.leaves(ref_state.batch_stats)[0],
        jax.tree.leaves(state.batch_stats)[0],
        rtol=2e-4,
        atol=2e-5,
    )


def test_auto_strategy_on_cpu_is_measured_or_loop() -> None:
    ens = Ensemble(small_config(), beats(), [0, 1])
    assert ens.strategy in STRATEGIES  # whatever report/bench/auto.json measured as fastest
    assert ens.dispatch in DISPATCHES


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    config = small_config()
    config.train.num_seeds = 2
    config.train.epochs = 3
    config.optim.schedule = "plateau"
    config.optim.plateau_patience = 1
    full = run_training(config, splits(), tmp_path / "full")
    config_short = ml_collections.ConfigDict(config.to_dict())
    config_short.train.epochs = 1
    run_training(config_short, splits(), tmp_path / "resumed", evaluate_test=False)
    resumed = run_training(config, splits(), tmp_path / "resumed", resume=True)
    assert resumed.epochs_run == 3
    assert [h["val/macro_recall"] for h in resumed.history] == pytest.approx(
        [h["val/macro_recall"] for h in full.history]
    )
    assert resumed.history[-1]["train/loss"] == pytest.approx(
        full.history[-1]["train/loss"], rel=1e-5
    )
    assert resumed.test_metrics["test/macro_recall"] == pytest.approx(
        full.test_metrics["test/macro_recall"]
    )


def test_checkpoint_restores_identical_state(tmp_path: Path) -> None:
    config = small_config(norm="batch")
    config.train.num_seeds = 2
    run_training(config, splits(), tmp_path / "run", evaluate_test=False)
    ens = Ensemble(config, beats(), [0, 1])
    state, progress = ckpt.restore_dir(tmp_path / "run" / "latest", ens.abstract_state())
    assert progress["epoch"] == 2
    assert int(state.step[0]) == 12
    again, _ = ckpt.restore_dir(tmp_path / "run" / "latest", ens.abstract_state())
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The restored state keeps training.
    ens.train_epoch(state, 3)


def test_mismatched_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    config = small_config()
    config.train.num_seeds = 2
    config.train.epochs = 1
    run_training(config, splits(), tmp_path / "run", evaluate_test=False)
    wider = small_config(hidden=8)
    wider.train.num_seeds = 2
    ens = Ensemble(wider, beats(), [0, 1])
    with pytest.raises(ckpt.CheckpointError, match="another model"):
        ckpt.restore_dir(tmp_path / "run" / "latest", ens.abstract_state())
    other = small_config(name="transformer", hidden=8, num_heads=2)
    other.train.num_seeds = 2
    with pytest.raises(ckpt.CheckpointError):
        ckpt.restore_dir(
            tmp_path / "run" / "latest", Ensemble(other, beats(), [0, 1]).abstract_state()
        )


def test_truncated_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    config = small_config()
    config.train.num_seeds = 2
    config.train.epochs = 1
    run_training(config, splits(), tmp_path / "run", evaluate_test=False)
    for f in (tmp_path / "run" / "latest").rglob("*"):
        if f.is_file() and f.stat().st_size > 64 and "state" in f.parts:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    ens = Ensemble(config, beats(), [0, 1])
    with pytest.raises(ckpt.CheckpointError, match="cannot restore"):
        ckpt.restore_dir(tmp_path / "run" / "latest", ens.abstract_state())
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.restore_dir(tmp_path / "nowhere", ens.abstract_state())


def test_non_finite_loss_raises() -> None:
    bad = beats()
    x = bad.x.copy()
    x[:, 5] = np.inf
    ens = Ensemble(small_config(), replace(bad, x=x), [0])
    with pytest.raises(NonFiniteLossError, match="seeds"):
        ens.train_epoch(ens.init(), 1)


def test_rr_context_without_columns_is_a_clear_error() -> None:
    config = small_config(rr_context=True)
    with pytest.raises(ValueError, match="rr_context"):
        Ensemble(config, beats(), [0])


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    config = small_config()
    config.train.num_seeds = 1
    config.train.epochs = 6
    config.optim.learning_rate = 0.0  # nothing improves after epoch 1
    config.train.early_stop_patience = 2
    result = run_training(config, splits(), tmp_path / "run")
    assert result.stopped_early
    assert result.best_epoch == 1
    assert result.epochs_run == 3
    assert (tmp_path / "run" / "best" / "1").is_dir()
