"""Classification losses for imbalanced beats: CE, class-weighted CE and focal loss.

Every loss has the same signature ``loss(logits, labels, class_weights) -> scalar`` so the
train step never special-cases one. ``class_weights`` arrive as data (an array computed by
the data side from class counts ** -power), not as a compile-time constant, so a new power
does not recompile. Label smoothing applies to every loss.

- ``ce``: mean cross-entropy; ``class_weights`` are ignored.
- ``weighted_ce``: weighted mean ``sum_i w[y_i] l_i / sum_i w[y_i]``; dividing by the weight
  sum (not the batch size) keeps the loss scale, and so the learning rate, independent of
  the weights and of the batch's class mix.
- ``focal``: Lin et al. 2017, ``-sum_c q_c (1 - p_c) ** gamma log p_c`` with ``q`` the
  (smoothed) target; down-weights easy, confident beats. Plain mean, weights ignored;
  ``gamma = 0`` is exactly ``ce``.
- ``weighted_focal``: focal loss with the ``weighted_ce`` weighting (the alpha-balanced
  focal loss of the paper, alpha = class weight).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from jaxtyping import Array, Float, Int

LossFn = Callable[..., Float[Array, ""]]  # (logits, labels, class_weights[, traced])
LOSSES = ("ce", "weighted_ce", "focal", "weighted_focal")


def smooth_targets(
    labels: Int[Array, " batch"], num_classes: int, smoothing: float | Array
) -> Float[Array, "batch classes"]:
    """One-hot targets mixed with the uniform distribution (``smoothing`` = its weight)."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def per_example_loss(
    logits: Float[Array, "batch classes"],
    labels: Int[Array, " batch"],
    *,
    gamma: float | Array = 0.0,
    smoothing: float | Array = 0.0,
) -> Float[Array, " batch"]:
    """Focal loss per example; with ``gamma=0`` it is the (smoothed) cross-entropy."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    q = smooth_targets(labels, logits.shape[-1], smoothing)
    if not (isinstance(gamma, int | float) and gamma == 0):  # a traced gamma always applies
        # (1-p)**gamma via exp keeps the gradient finite when p -> 1.
        logp = logp * jnp.exp(gamma * jnp.log1p(-jnp.exp(logp).clip(max=1.0 - 1e-7)))
    return -(q * logp).sum(axis=-1)


def weighted_mean(
    values: Float[Array, " batch"], labels: Int[Array, " batch"], class_weights: Float[Array, " c"]
) -> Float[Array, ""]:
    """``sum(w[y] * v) / sum(w[y])``: a mean whose scale does not depend on the weights."""
    w = class_weights.astype(jnp.float32)[labels]
    return (w * values).sum() / jnp.maximum(w.sum(), 1e-12)


def make_loss(loss_cfg: ml_collections.ConfigDict) -> LossFn:
    """Return the loss named by ``loss_cfg.name`` with its hyper-parameters bound.

    Args:
        loss_cfg: the ``loss`` config section (name, focal_gamma, label_smoothing).

    Returns:
        ``loss(logits, labels, class_weights) -> scalar``: pure, jit- and vmap-able.

    Raises:
        ValueError: for an unknown name or an out-of-range hyper-parameter.
    """
    name = loss_cfg.name
    if name not in LOSSES:
        raise ValueError(f"unknown loss.name {name!r}; choose one of {list(LOSSES)}")
    smoothing = float(loss_cfg.label_smoothing)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"loss.label_smoothing must be in [0, 1), got {smoothing}")
    gamma = float(loss_cfg.focal_gamma) if name in ("focal", "weighted_focal") else 0.0
    if gamma < 0:
        raise ValueError(f"loss.focal_gamma must be >= 0, got {gamma}")
    weighted = name in ("weighted_ce", "weighted_focal")

    focal = name in ("focal", "weighted_focal")

    def loss(
        logits: Float[Array, "batch classes"],
        labels: Int[Array, " batch"],
        class_weights: Float[Array, " classes"],
        traced: Mapping[str, Array] | None = None,
    ) -> Float[Array, ""]:
        # ``traced``: a population member's label_smoothing / focal_gamma (arrays, no recompile).
        traced = traced or {}
        s = traced.get("label_smoothing", smoothing)
        g = traced["focal_gamma"] if focal and "focal_gamma" in traced else gamma
        values = per_example_loss(logits, labels, gamma=g, smoothing=s)
        if weighted:
            return weighted_mean(values, labels, class_weights)
        return values.mean()

    return loss
