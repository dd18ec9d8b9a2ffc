"""On-device beat augmentation: amplitude scale, baseline shift, noise, circular time shift,
(``augment.stretch`` > 0) a time stretch about the R peak, and channel dropout
(:func:`drop_channels`).

Runs inside the jitted train step (pure, jit- and vmap-able), so it costs no host work.
Each beat draws its own scale in ``[1-s, 1+s]``, baseline shift in ``[-shift, shift]``,
Gaussian noise of std ``noise`` per sample, and an integer time shift in
``[-time_shift, time_shift]``. The stretch draws a factor in ``[1-stretch, 1+stretch]`` and
resamples the beat (linear interpolation) at ``t / factor``, starting from the R peak where the
prepared beats start: a wider or narrower QRS and T wave, the way patients' conduction differs
(a new patient's ventricular beats are rarely as wide as the training patients'). Every channel
is stretched together, so a beat minus its template stays consistent with a patient whose
template is stretched too.

The zero-padded tail: a beat's *support* is everything up to its last nonzero sample
(a beat normalised to [0, 1] can touch 0 inside, so ``x != 0`` alone would punch holes).
The beat and its support mask are rolled together, and scale/shift/noise are applied only
on the (rolled) support, so the padding stays exactly zero and the model cannot learn the
augmentation from the tail. A circular roll moves at most ``time_shift`` samples across
the 192-sample border: a right shift wraps padding zeros to the start, a left shift wraps
the first samples into the tail (a few samples; a cheap, jit-friendly approximation).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
from jaxtyping import Array, Float, Int, PRNGKeyArray


def support_mask(x: Float[Array, "batch time 1"]) -> Float[Array, "batch time 1"]:
    """1.0 up to and including each beat's last nonzero sample, 0.0 on the padded tail."""
    nonzero = (x != 0).astype(jnp.int32)
    return (jnp.cumsum(nonzero[:, ::-1], axis=1)[:, ::-1] > 0).astype(x.dtype)


def roll_each(
    x: Float[Array, "batch time c"], shifts: Int[Array, " batch"]
) -> Float[Array, "batch time c"]:
    """``jnp.roll`` of each beat by its own shift, as one gather."""
    t = x.shape[1]
    idx = (jnp.arange(t)[None, :] - shifts[:, None]) % t
    return jnp.take_along_axis(x, idx[:, :, None], axis=1)


def stretch_each(
    x: Float[Array, "batch time c"], factors: Float[Array, " batch"]
) -> Float[Array, "batch time c"]:
    """Each beat resampled at ``t / factor`` (linear interpolation; past the end: the last sample)."""
    t = x.shape[1]
    pos = jnp.clip(jnp.arange(t, dtype=x.dtype)[None, :] / factors[:, None], 0, t - 1)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, :, None]
    below, above = (jnp.take_along_axis(x, i[:, :, None], axis=1) for i in (lo, hi))
    return below * (1 - w) + above * w


def drop_channels(
    key: PRNGKeyArray, x: Float[Array, "batch time c"], channels: tuple[int, ...], rate: float
) -> Float[Array, "batch time c"]:
    """``x`` with ``channels`` zeroed together in each beat with probability ``rate``.

    Modality dropout at the input (as ``model.rr_rhythm_dropout`` is for the rhythm branch):
    the model also learns from the channels left, so it cannot lean on one that marks the
    training patients' beats well but moves between patients.
    """
    if not channels or rate <= 0:
        return x
    drop = jax.random.bernoulli(key, rate, (x.shape[0], 1, 1))
    which = jnp.zeros((x.shape[-1],), bool).at[jnp.asarray(channels)].set(True)
    return jnp.where(drop & which, jnp.zeros_like(x), x)


STRENGTHS = ("scale", "shift", "noise", "time_shift")


def augment_batch(
    key: PRNGKeyArray,
    x: Float[Array, "batch time 1"],
    aug_cfg: ml_collections.ConfigDict,
    traced: Mapping[str, Array] | None = None,
) -> Float[Array, "batch time 1"]:
    """Return an augmented copy of ``x`` (or ``x`` itself when ``aug_cfg.enabled`` is False).

    The config values are Python numbers read at trace time: changing them recompiles.
    ``traced`` overrides any of :data:`STRENGTHS` with arrays (a population member's values,
    one program for all); a traced ``time_shift`` of 0 rolls by 0, the same numbers as none.
    """
    if not aug_cfg.enabled:
        return x
    traced = traced or {}
    scale_s, shift_s, noise_s, time_s = (traced.get(k, aug_cfg[k]) for k in STRENGTHS)
    b = x.shape[0]
    k_scale, k_shift, k_noise, k_time = jax.random.split(key, 4)
    mask = support_mask(x)
    if aug_cfg.get("stretch", 0.0) > 0:  # its own key: runs without it draw as before
        s = float(aug_cfg.stretch)
        factors = jax.random.uniform(jax.random.fold_in(key, 5), (b,), x.dtype, 1 - s, 1 + s)
        x = stretch_each(x, factors)
        mask = (stretch_each(mask, factors) >= 0.5).astype(x.dtype)
    if "time_shift" in traced or aug_cfg.time_shift > 0:
        shifts = jax.random.randint(k_time, (b,), -time_s, time_s + 1)
        x, mask = roll_each(x, shifts), roll_each(mask, shifts)
    scale = jax.random.uniform(k_scale, (b, 1, 1), x.dtype, 1.0 - scale_s, 1.0 + scale_s)
    shift = jax.random.uniform(k_shift, (b, 1, 1), x.dtype, -shift_s, shift_s)
    noise = noise_s * jax.random.normal(k_noise, x.shape, x.dtype)
    return (x * scale + shift + noise) * mask
