"""Sharpness-aware minimisation (``optim.sam_rho``): the step's gradient is the one at the
weights moved ``rho`` along the normalised gradient, and it trains through every strategy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ecgjax.config import base_config
from ecgjax.training import step as step_lib
from ecgjax.training.engine import Ensemble
from ecgjax.training.validate import ConfigError, validate
from tests.test_adapt import OneNorm, config, records


def _loss(logits, labels, weights, traced):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_sam_point_moves_rho_along_the_gradient() -> None:
    params = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array([[0.5]])}}
    grads = {"a": jnp.array([3.0, 0.0]), "b": {"c": jnp.array([[4.0]])}}  # global norm 5
    moved = step_lib.sam_point(params, grads, 0.5)
    np.testing.assert_allclose(moved["a"], [1.3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(moved["b"]["c"], [[0.9]], rtol=1e-6)


@pytest.mark.parametrize("norm_class", [-1, 0])
def test_a_sam_step_descends_with_the_gradient_at_the_moved_weights(norm_class: int) -> None:
    """By hand: p1 = p0 - lr * grad L(p0 + rho g / |g|), g = grad L(p0), with batch norm in
    training mode in both passes (and its own-class statistics entered twice for N-only stats)."""
    y = jnp.asarray(np.r_[np.zeros(10, np.int32), np.ones(6, np.int32)])
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 192, 3)) + 2.0 * y[:, None, None]
    data = step_lib.DeviceData(x=x, y=y, context=None)
    lr, rho = 0.5, 0.05
    tx = optax.sgd(lr)
    model = OneNorm()
    fns = step_lib.StepFns(model, tx, _loss, base_config().augment, norm_class=norm_class,
                           sam_rho=rho)  # fmt: skip
    state = step_lib.create_train_state(jax.random.PRNGKey(1), model, tx, 0, 3)
    idx = jnp.arange(16)
    new, metrics = step_lib.train_step(state, idx, data, jnp.ones(2), fns)

    mask = step_lib.normal_stats_mask(y, norm_class)

    def loss(p):
        variables = {"params": p, "batch_stats": state.batch_stats}
        if mask is None:
            logits, _ = model.apply(variables, x, None, train=True, mutable=["batch_stats"])
        else:
            from ecgjax.models.common import input_statistics

            with input_statistics(mask):
                logits, _ = model.apply(variables, x, None, train=True, mutable=["batch_stats"])
        return _loss(logits, y, None, None)

    g = jax.grad(loss)(state.params)
    norm = optax.global_norm(g)
    moved = jax.tree.map(lambda p, gi: p + rho * gi / norm, state.params, g)
    expected = jax.tree.map(lambda p, gi: p - lr * gi, state.params, jax.grad(loss)(moved))
    for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    plain = step_lib.train_step(state, idx, data, jnp.ones(2), fns.__class__(
        model, tx, _loss, base_config().augment, norm_class=norm_class))[0]  # fmt: skip
    assert not np.allclose(plain.params["Dense_0"]["kernel"], new.params["Dense_0"]["kernel"])
    assert float(metrics["loss"]) == pytest.approx(float(loss(state.params)), rel=1e-5)


@pytest.mark.parametrize("strategy", ["vmap", "wide", "sequential"])
def test_an_ensemble_trains_with_sam(strategy: str) -> None:
    c = config("none")
    c.optim.sam_rho = 0.05
    c.ensemble.strategy = strategy
    ens = Ensemble(validate(c), records(), [0, 1])
    state, metrics = ens.train_epoch(ens.init(), 1)
    assert np.isfinite(metrics["loss"]).all()
    assert ens.predict(state, records(1)).shape == (2, 120, 5)


def test_a_negative_radius_is_refused() -> None:
    c = config("none")
    c.optim.sam_rho = -0.1
    with pytest.raises(ConfigError, match=r"optim\.sam_rho"):
        validate(c)
