"""The packed train state of the ``flat`` dispatch: an exact round trip, the same training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecgjax.training.engine import Ensemble
from ecgjax.training.packing import Layout
from tests.test_train import beats, small_config


def _tree() -> dict:
    return {
        "w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
        "b": jnp.float32(-1.5),
        "step": jnp.int32(7),
        "key": jax.random.PRNGKey(3),
        "none": None,
        "v": jnp.linspace(0, 1, 4, dtype=jnp.float32),
    }


def test_pack_unpack_is_exact_per_dtype() -> None:
    tree = _tree()
    layout = Layout.of(tree)
    buffers = layout.pack(tree)
    assert layout.groups == ("float32", "int32", "uint32")
    assert [b.shape for b in buffers] == [(11,), (1,), (2,)]
    back = layout.unpack(buffers)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(back), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lead_axis_is_kept() -> None:
    stacked = jax.tree.map(lambda a: jnp.stack([a, a + 1]), _tree())
    layout = Layout.of(stacked, lead=1)
    buffers = layout.pack(stacked)
    assert [b.shape for b in buffers] == [(2, 11), (2, 1), (2, 2)]
    back = layout.unpack(buffers)
    for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_leaves_with_different_lead_axes_are_refused() -> None:
    with pytest.raises(ValueError, match="leading axes"):
        Layout.of({"a": jnp.zeros((2, 3)), "b": jnp.zeros((3,))}, lead=1)


def test_flat_dispatch_trains_like_python_dispatch() -> None:
    """Packing only moves bytes; Adam fused over one vector rounds a few results differently
    (an ulp), so the two agree to float tolerance, not bit for bit."""
    states = {}
    for dispatch in ("python", "flat"):
        config = small_config(norm="batch")
        config.ensemble.strategy, config.ensemble.dispatch = "loop", dispatch
        ens = Ensemble(config, beats(), [5, 6])
        state = ens.init()
        for epoch in (1, 2):
            state, metrics = ens.train_epoch(state, epoch)
        states[dispatch] = (state, metrics)
    (a, ma), (b, mb) = states["python"], states["flat"]
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
