"""Normalisation by name, the one building block the encoders share.

Kept here (not in each model file) so every encoder reads ``model.norm`` the same way;
rhythm fusion and the head live in :mod:`ecgjax.models.classifier`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import flax.linen as nn
from jaxtyping import Array

NORMS = ("none", "batch", "layer")
BN_MOMENTUM = 0.9  # running statistics: new = momentum * old + (1 - momentum) * batch

_INPUT_STATISTICS = contextvars.ContextVar("ecgjax_bn_input_statistics", default=False)


@contextlib.contextmanager
def input_statistics() -> Iterator[None]:
    """Within this block (while tracing), batch norm normalises with the statistics of the batch
    it is given even at evaluation (dropout stays off), and updates ``batch_stats`` with them.

    Why: patient adaptation (AdaBN, :mod:`ecgjax.training.adapt`) needs each layer's mean and
    variance over one record's beats, in the network's inference mode.
    """
    token = _INPUT_STATISTICS.set(True)
    try:
        yield
    finally:
        _INPUT_STATISTICS.reset(token)


def check_norm(norm: str) -> None:
    """Raise a clear error for an unknown ``model.norm``."""
    if norm not in NORMS:
        raise ValueError(f"model.norm must be one of {NORMS}, got {norm!r}")


def make_norm(norm: str, train: bool) -> Callable[[Array], Array]:
    """Return a fresh normalisation layer (call inside ``nn.compact``).

    ``batch`` keeps running statistics in the ``batch_stats`` collection and uses them at
    evaluation time; ``layer`` normalises each example over all of its non-batch axes
    (GroupNorm with one group, per-channel scale and bias), which is the conv-net meaning
    of layer norm and needs no running state; ``none`` is the identity. Inside
    :func:`input_statistics` batch norm uses the batch's own statistics at evaluation too.
    """
    check_norm(norm)
    if norm == "batch":
        own = train or _INPUT_STATISTICS.get()
        return nn.BatchNorm(use_running_average=not own, momentum=BN_MOMENTUM)
    if norm == "layer":
        return nn.GroupNorm(num_groups=1)
    return lambda y: y
