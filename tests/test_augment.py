"""On-device augmentation: identity when off, bounded and padding-preserving when on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ecgjax.config import base_config
from ecgjax.data.augment import augment_batch, roll_each, stretch_each, support_mask
from ecgjax.data.synthetic import make_beats


def beats(n: int = 16) -> jnp.ndarray:
    x, _ = make_beats(n)
    return jnp.asarray(np.pad(x, ((0, 0), (0, 192 - x.shape[1]))))[:, :, None]


def aug_cfg(**overrides):
    cfg = base_config().augment
    cfg.enabled = True
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def test_disabled_is_identity():
    x = beats()
    cfg = base_config().augment
    cfg.enabled = False
    assert augment_batch(jax.random.key(0), x, cfg) is x


def test_shapes_finite_bounded_and_padding_kept():
    x = beats()
    cfg = aug_cfg(scale=0.1, shift=0.05, noise=0.0, time_shift=0)
    out = jax.jit(lambda k, x: augment_batch(k, x, cfg))(jax.random.key(0), x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool(jnp.isfinite(out).all())
    # |scale*x + shift - x| <= 0.1*|x| + 0.05 with x in [0, 1].
    assert float(jnp.abs(out - x).max()) <= 0.15 + 1e-6
    mask = support_mask(x)
    assert float(jnp.abs(out * (1 - mask)).max()) == 0.0  # tail stays exactly zero
    assert not np.allclose(out, x)


def test_time_shift_rolls_each_beat_within_bound():
    x = beats(8)
    cfg = aug_cfg(scale=0.0, shift=0.0, noise=0.0, time_shift=3)
    out = augment_batch(jax.random.key(1), x, cfg)
    for i in range(x.shape[0]):
        matches = [s for s in range(-3, 4) if np.allclose(out[i], jnp.roll(x[i], s, axis=0))]
        assert matches, f"beat {i} is not a roll of at most 3 samples"
    assert bool(jnp.isfinite(out).all())


def test_noise_statistics_and_vmap():
    x = beats(64)
    cfg = aug_cfg(scale=0.0, shift=0.0, noise=0.01, time_shift=0)
    out = augment_batch(jax.random.key(2), x, cfg)
    mask = np.asarray(support_mask(x)).astype(bool)
    diff = np.asarray(out - x)[mask]
    assert abs(diff.std() - 0.01) < 0.002
    keys = jax.random.split(jax.random.key(3), 2)
    both = jax.vmap(lambda k: augment_batch(k, x, cfg))(keys)
    assert both.shape == (2, *x.shape)


def test_support_mask_ignores_interior_zeros():
    x = jnp.array([[1.0, 0.0, 0.5, 0.0, 0.0]])[:, :, None]
    np.testing.assert_array_equal(support_mask(x)[0, :, 0], [1, 1, 1, 0, 0])
    rolled = roll_each(jnp.arange(5.0)[None, :, None], jnp.array([2]))
    np.testing.assert_array_equal(rolled[0, :, 0], [3, 4, 0, 1, 2])


def test_stretch_widens_each_beat_from_the_r_peak_and_keeps_the_padding_zero():
    x = beats(8)
    factors = jnp.array([1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.15, 0.85])
    out = stretch_each(x, factors)
    np.testing.assert_allclose(out[0], x[0], atol=1e-6)  # factor 1: the beat itself
    # out(t) = x(t / f): at t = 12 with f = 1.2, the beat's sample 10.
    np.testing.assert_allclose(out[1, 12], x[1, 10], atol=1e-6)
    np.testing.assert_allclose(out[2, 8], x[2, 10], atol=1e-6)
    cfg = aug_cfg(scale=0.0, shift=0.0, noise=0.0, time_shift=0, stretch=0.2)
    aug = jax.jit(lambda k, x: augment_batch(k, x, cfg))(jax.random.key(4), x)
    assert aug.shape == x.shape and bool(jnp.isfinite(aug).all()) and not np.allclose(aug, x)
    ends = np.asarray(support_mask(x)).sum(1)[:, 0]
    stretched_ends = np.asarray(support_mask(aug)).sum(1)[:, 0]
    assert (np.abs(stretched_ends - ends) <= 0.2 * ends + 2).all()  # support moves with the beat
    # stretch off: exactly the numbers of a config without it (same random draws).
    plain = aug_cfg(scale=0.1, shift=0.05, noise=0.01, time_shift=3)
    off = aug_cfg(scale=0.1, shift=0.05, noise=0.01, time_shift=3, stretch=0.0)
    del plain["stretch"]
    np.testing.assert_array_equal(
        augment_batch(jax.random.key(5), x, plain), augment_batch(jax.random.key(5), x, off)
    )


def test_drop_channels_zeroes_the_named_channels_together_at_the_rate() -> None:
    from ecgjax.data.augment import drop_channels

    x = jnp.ones((4000, 8, 3))
    out = np.asarray(drop_channels(jax.random.PRNGKey(0), x, (0, 2), 0.3))
    dropped = out[:, 0, 0] == 0
    assert 0.27 < dropped.mean() < 0.33
    np.testing.assert_array_equal(out[dropped][..., [0, 2]], 0.0)  # both, the whole beat
    np.testing.assert_array_equal(out[~dropped], 1.0)
    np.testing.assert_array_equal(out[..., 1], 1.0)  # the channel not named is never touched
    np.testing.assert_array_equal(drop_channels(jax.random.PRNGKey(0), x, (), 0.3), x)


def test_drop_channels_config_names_channels_of_the_input_and_a_rate() -> None:
    import pytest

    from ecgjax.data import inputs
    from ecgjax.training.validate import ConfigError, validate

    c = base_config()
    c.data.channels = "beat,beat_minus_template,lead2"
    c.augment.drop_channels, c.augment.drop_channels_rate = "beat, lead2", 0.3
    validate(c)
    assert inputs.channel_indices(c.data.channels, c.augment.drop_channels) == (0, 2)
    for names, rate in (("template", 0.3), ("lead2", 0.0), ("", 0.3)):
        c.augment.drop_channels, c.augment.drop_channels_rate = names, rate
        with pytest.raises(ConfigError, match=r"augment\.drop_channels"):
            validate(c)


def test_the_train_step_gets_the_dropped_channels_by_position() -> None:
    from ecgjax.training.programs import programs_for

    c = base_config()
    c.data.channels = "beat,beat_minus_template,lead2"
    c.augment.drop_channels, c.augment.drop_channels_rate = "lead2,beat", 0.25
    fns = programs_for(c, "loop", 1, 10, 0, 3).fns
    assert (fns.drop_channels, fns.drop_rate) == ((2, 0), 0.25)
    c.augment.drop_channels, c.augment.drop_channels_rate = "", 0.0
    assert programs_for(c, "loop", 1, 10, 0, 3).fns.drop_channels == ()
