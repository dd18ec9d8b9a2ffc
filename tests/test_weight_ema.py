"""Weight averaging (``optim.weight_ema``): the state keeps an exponential moving average of the
weights and batch-norm statistics, predictions use it, and it survives checkpoints, every
strategy and the population's exploit."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ecgjax.config import base_config
from ecgjax.training import checkpoint as ckpt
from ecgjax.training import selection
from ecgjax.training import step as step_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.run import run_training
from ecgjax.training.validate import validate
from tests.test_adapt import OneNorm, config, records
from tests.test_train import beats, small_config, splits


def _loss(logits, labels, weights, traced):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_the_average_is_the_debiased_ema_by_hand() -> None:
    """After updates w1, w2, w3 the average is sum_k (1 - d) d^(3-k) w_k / (1 - d^3), for the
    weights and the batch-norm statistics alike, and the weights train as without it."""
    y = jnp.asarray(np.r_[np.zeros(10, np.int32), np.ones(6, np.int32)])
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 192, 3)) + 2.0 * y[:, None, None]
    data = step_lib.DeviceData(x=x, y=y, context=None)
    tx = optax.sgd(0.5)
    model = OneNorm()
    d = 0.6
    fns = step_lib.StepFns(model, tx, _loss, base_config().augment, weight_ema=d)
    plain = step_lib.StepFns(model, tx, _loss, base_config().augment)
    state = step_lib.create_train_state(jax.random.PRNGKey(1), model, tx, 0, 3, average=True)
    assert state.average is not None
    idx = jnp.arange(16)
    states, ref = [state], [state.replace(average=None)]
    for _ in range(3):
        states.append(step_lib.train_step(states[-1], idx, data, jnp.ones(2), fns)[0])
        ref.append(step_lib.train_step(ref[-1], idx, data, jnp.ones(2), plain)[0])
    for got, want in zip(_leaves(states[-1].params), _leaves(ref[-1].params), strict=True):
        np.testing.assert_array_equal(got, want)
    assert ref[-1].average is None
    weights = np.array([(1 - d) * d ** (3 - k) for k in (1, 2, 3)]) / (1 - d**3)
    for part in ("params", "batch_stats"):
        trained = [_leaves(getattr(s, part)) for s in states[1:]]
        got = _leaves(states[-1].average[part])
        for i, g in enumerate(got):
            want = sum(w * t[i] for w, t in zip(weights, trained, strict=True))
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    first = _leaves(states[1].average["params"])
    for got, want in zip(first, _leaves(states[1].params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)  # the first update is its own average
    assert not np.allclose(_leaves(states[-1].average["params"])[0], _leaves(ref[-1].params)[0])


def test_predictions_use_the_average_with_record_adaptation() -> None:
    """The averaged weights predict (and give the per-record batch-norm statistics); the same
    state with its average taken as its weights predicts the same, the last weights do not."""
    c = config("normal")
    c.optim.weight_ema = 0.9
    ens = Ensemble(validate(c), records(), [0, 1])
    state, _ = ens.train_epoch(ens.init(), 1)
    plain_cfg = config("normal")
    plain = Ensemble(plain_cfg, records(), [0, 1])
    swapped = state.replace(
        params=state.average["params"], batch_stats=state.average["batch_stats"], average=None
    )
    got = ens.predict(state, records(1))
    np.testing.assert_allclose(got, plain.predict(swapped, records(1)), rtol=1e-5, atol=1e-6)
    last = plain.predict(state.replace(average=None), records(1))
    assert np.abs(got - last).max() > 1e-4


def test_off_keeps_no_average() -> None:
    ens = Ensemble(config("none"), records(), [0])
    state, _ = ens.train_epoch(ens.init(), 1)
    assert state.average is None


@pytest.mark.parametrize("strategy", ["wide", "sequential", "loop"])
def test_every_strategy_keeps_the_same_average_as_vmap(strategy: str) -> None:
    def average(name: str) -> list[np.ndarray]:
        c = config("none")
        c.optim.weight_ema = 0.9
        c.ensemble.strategy = name
        ens = Ensemble(validate(c), records(), [0, 1])
        state, _ = ens.train_epoch(ens.init(), 1)
        return _leaves(state.average)

    for got, want in zip(average(strategy), average("vmap"), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_the_average_is_checkpointed_and_restored(tmp_path: Path) -> None:
    c = small_config(norm="batch")
    c.train.num_seeds = 2
    c.optim.weight_ema = 0.9
    result = run_training(
        validate(c),
        splits(),
        tmp_path / "run",
        evaluate_test=False,
        keep_val_probs=True,
        val_epoch="last",
    )
    ens = Ensemble(c, beats(), [0, 1])
    state, progress = ckpt.restore_dir(tmp_path / "run" / "latest", ens.abstract_state())
    assert progress["epoch"] == 2
    assert state.average is not None
    assert not np.allclose(_leaves(state.average["params"])[0], _leaves(state.params)[0])
    # The run's last validation predictions came from the average the checkpoint holds.
    probs = ens.predict(state, splits().val)
    assert result.val_probs is not None
    np.testing.assert_allclose(probs, result.val_probs, rtol=1e-5, atol=1e-6)
    # A checkpoint written without the average does not restore as one with it, and says why.
    c.optim.weight_ema = 0.0
    run_training(validate(c), splits(), tmp_path / "plain", evaluate_test=False)
    with pytest.raises(ckpt.CheckpointError, match="cannot restore"):
        ckpt.restore_dir(tmp_path / "plain" / "latest", ens.abstract_state())


def test_exploit_copies_the_average_with_the_weights() -> None:
    c = config("none")
    c.optim.weight_ema = 0.9
    ens = Ensemble(validate(c), records(), [0, 1, 2])
    state, _ = ens.train_epoch(ens.init(), 1)
    copied = selection.exploit(state, np.array([2, 1, 2]))
    for got, src in zip(_leaves(copied.average), _leaves(state.average), strict=True):
        np.testing.assert_array_equal(got[0], src[2])
        np.testing.assert_array_equal(got[1], src[1])
