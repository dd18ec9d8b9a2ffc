"""Losses against optax and hand computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ecgjax.config import base_config
from ecgjax.training.losses import make_loss

C = 5


def loss_cfg(name: str, **overrides):
    cfg = base_config().loss
    cfg.name = name
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


@pytest.fixture
def batch():
    logits = jax.random.normal(jax.random.key(0), (8, C)) * 3
    labels = jnp.array([0, 1, 2, 3, 4, 0, 0, 2])
    weights = jnp.array([0.1, 2.0, 1.0, 5.0, 0.5], jnp.float32)
    return logits, labels, weights


def test_ce_matches_optax_and_ignores_weights(batch):
    logits, labels, weights = batch
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss = make_loss(loss_cfg("ce"))
    np.testing.assert_allclose(loss(logits, labels, weights), expected, rtol=1e-6)
    np.testing.assert_allclose(loss(logits, labels, jnp.ones(C)), expected, rtol=1e-6)


def test_weighted_ce_by_hand(batch):
    logits, labels, weights = batch
    per = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    w = np.asarray(weights)[np.asarray(labels)]
    expected = (w * per).sum() / w.sum()
    got = make_loss(loss_cfg("weighted_ce"))(logits, labels, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Uniform weights give plain CE.
    np.testing.assert_allclose(
        make_loss(loss_cfg("weighted_ce"))(logits, labels, jnp.full(C, 3.0)),
        per.mean(),
        rtol=1e-6,
    )


def test_focal_gamma_zero_is_ce(batch):
    logits, labels, weights = batch
    ce = make_loss(loss_cfg("ce", label_smoothing=0.1))(logits, labels, weights)
    focal = make_loss(loss_cfg("focal", focal_gamma=0.0, label_smoothing=0.1))
    np.testing.assert_allclose(focal(logits, labels, weights), ce, rtol=1e-6)


def test_focal_by_hand_and_downweights_easy(batch):
    logits, labels, weights = batch
    p = np.asarray(jax.nn.softmax(logits))[np.arange(8), np.asarray(labels)]
    expected = (-((1 - p) ** 2) * np.log(p)).mean()
    focal = make_loss(loss_cfg("focal", focal_gamma=2.0))
    np.testing.assert_allclose(focal(logits, labels, weights), expected, rtol=1e-5)
    assert focal(logits, labels, weights) < make_loss(loss_cfg("ce"))(logits, labels, weights)
    w = np.asarray(weights)[np.asarray(labels)]
    per = -((1 - p) ** 2) * np.log(p)
    np.testing.assert_allclose(
        make_loss(loss_cfg("weighted_focal", focal_gamma=2.0))(logits, labels, weights),
        (w * per).sum() / w.sum(),
        rtol=1e-5,
    )


def test_label_smoothing_matches_optax(batch):
    logits, labels, weights = batch
    eps = 0.2
    targets = optax.smooth_labels(jax.nn.one_hot(labels, C), eps)
    expected = optax.softmax_cross_entropy(logits, targets).mean()
    got = make_loss(loss_cfg("ce", label_smoothing=eps))(logits, labels, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["ce", "weighted_ce", "focal", "weighted_focal"])
def test_jit_vmap_and_finite_grads(batch, name):
    logits, labels, weights = batch
    loss = make_loss(loss_cfg(name, label_smoothing=0.05))
    # A confident correct logit must not give NaN gradients (focal's (1-p)**gamma at p=1).
    logits = logits.at[0, 0].set(100.0)
    grads = jax.jit(jax.grad(loss))(logits, labels, weights)
    assert bool(jnp.isfinite(grads).all())
    stacked = jax.vmap(loss, in_axes=(0, 0, None))(
        jnp.stack([logits, logits]), jnp.stack([labels, labels]), weights
    )
    np.testing.assert_allclose(stacked[0], stacked[1])


def test_bad_config_raises():
    with pytest.raises(ValueError, match=r"loss\.name"):
        make_loss(loss_cfg("hinge"))
    with pytest.raises(ValueError, match="label_smoothing"):
        make_loss(loss_cfg("ce", label_smoothing=1.5))
