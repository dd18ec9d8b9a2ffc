"""Patient-adaptive batch norm (AdaBN, Li et al. 2016): each record normalised by its own beats.

Why: a model with batch norm normalises every layer with statistics pooled over the training
patients, so a new patient's recording, offset as a whole in amplitude, QRS width, baseline or
lead placement, shifts every activation. With ``data.adapt_norm='record'`` each record's beats
first pass through the network once (inference mode, no labels) to give every batch-norm layer
that record's mean and variance, and the record is then predicted with them: each beat is
judged against the patient's own usual beat inside the network, as the median-template channel
(:mod:`ecgjax.data.inputs`) does at the input. It needs the whole record, like the median
template, so it is not causal.

``data.adapt_norm='normal'`` takes the statistics over the beats that the unadapted ensemble
calls N (a record with fewer than :data:`MIN_NORMAL_BEATS` keeps the training statistics):
a record's ectopic beats, when they are many (a third of record 208's beats are V), would
otherwise pull its statistics towards themselves and make them look less unusual.

Two refinements of that set (evaluation only): ``data.adapt_rounds=K`` repeats the step K
times, each taking the statistics over the beats the last adapted pass called N, so V beats
missed at first (and counted as normal) can leave the set once the adapted model sees them;
``data.adapt_min_prob=p`` keeps only beats whose ensemble probability of N is at least ``p``.

The statistics come from at most :data:`ADAPT_BEATS` beats spread evenly over the record; fewer
beats are padded to the next power of two and masked out of the statistics, so a handful of
compiled programs serve every record exactly (a 30-minute MIT-BIH record has 1,500 to 3,400
beats, and the beats called N vary in number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ecgjax.models.common import BN_MOMENTUM, input_statistics

ADAPTS = ("none", "record", "normal")
ADAPT_BEATS = 1024
MIN_NORMAL_BEATS = 32  # ``normal``: fewer beats called N keep the training statistics

StatsFn = Callable[[Any, Any, Array, Array | None, Array], Any]


def spread_rows(n: int, cap: int = ADAPT_BEATS) -> np.ndarray:
    """``min(n, cap)`` row indices spread evenly over ``range(n)`` (all rows when ``n <= cap``)."""
    if n <= cap:
        return np.arange(n)
    return np.linspace(0, n - 1, cap).round().astype(np.int64)


def called_normal(probs: np.ndarray, n_index: int, min_prob: float = 0.0) -> np.ndarray:
    """Rows of ``probs`` (``(N, C)``, the ensemble mean) that ``normal`` adaptation takes its
    statistics from: argmax N, and with ``min_prob > 0`` an N probability of at least it."""
    called = probs.argmax(-1) == n_index
    if min_prob > 0:
        called &= probs[:, n_index] >= min_prob
    return np.flatnonzero(called)


def bucket(n: int, smallest: int = 32) -> int:
    """The compiled size for ``n`` examples: the next power of two, at least ``smallest``."""
    return max(smallest, 1 << max(n - 1, 0).bit_length())


def stats_program(model: nn.Module) -> StatsFn:
    """A jitted ``(params, batch_stats, x, ctx, mask) -> batch_stats`` of one member: every
    batch-norm layer's mean and variance over the beats of ``x`` flagged in ``mask``, in the
    layout of ``batch_stats``.

    Batch norm updates ``new = m * old + (1 - m) * batch``; starting from zeros leaves
    ``(1 - m) * batch``, divided out here, so the result is the batch's statistics exactly.
    """

    @jax.jit
    def stats(params: Any, batch_stats: Any, x: Array, ctx: Array | None, mask: Array) -> Any:
        zeros = jax.tree.map(jnp.zeros_like, batch_stats)
        with input_statistics(mask):
            _, updates = model.apply(
                {"params": params, "batch_stats": zeros},
                x,
                ctx,
                train=False,
                mutable=["batch_stats"],
            )
        return jax.tree.map(lambda a: a / (1.0 - BN_MOMENTUM), updates["batch_stats"])

    return stats
