"""Normalisation by name, the one building block the encoders share.

Kept here (not in each model file) so every encoder reads ``model.norm`` the same way;
rhythm fusion and the head live in :mod:`ecgjax.models.classifier`.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
from jaxtyping import Array

NORMS = ("none", "batch", "layer")


def check_norm(norm: str) -> None:
    """Raise a clear error for an unknown ``model.norm``."""
    if norm not in NORMS:
        raise ValueError(f"model.norm must be one of {NORMS}, got {norm!r}")


def make_norm(norm: str, train: bool) -> Callable[[Array], Array]:
    """Return a fresh normalisation layer (call inside ``nn.compact``).

    ``batch`` keeps running statistics in the ``batch_stats`` collection and uses them at
    evaluation time; ``layer`` normalises each example over all of its non-batch axes
    (GroupNorm with one group, per-channel scale and bias), which is the conv-net meaning
    of layer norm and needs no running state; ``none`` is the identity.
    """
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9)
    if norm == "layer":
        return nn.GroupNorm(num_groups=1)
    return lambda y: y
