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

# None: off; True: every example; an array: the per-example mask of examples to count.
_INPUT_STATISTICS: contextvars.ContextVar[Array | bool | None] = contextvars.ContextVar(
    "ecgjax_bn_input_statistics", default=None
)


@contextlib.contextmanager
def input_statistics(mask: Array | None = None) -> Iterator[None]:
    """Within this block (while tracing), batch norm normalises with the statistics of the batch
    it is given even at evaluation (dropout stays off), and updates ``batch_stats`` with them;
    ``mask`` (one flag per example) counts only the flagged examples, so padded batches of one
    compiled size give the exact statistics of the real ones.

    Why: patient adaptation (AdaBN, :mod:`ecgjax.training.adapt`) needs each layer's mean and
    variance over one record's beats, in the network's inference mode.
    """
    token = _INPUT_STATISTICS.set(True if mask is None else mask)
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
        given = _INPUT_STATISTICS.get()
        own = train or given is not None
        bn = nn.BatchNorm(use_running_average=not own, momentum=BN_MOMENTUM)
        if given is None or isinstance(given, bool):
            return bn
        mask: Array = given
        return lambda y: bn(y, mask=mask.reshape(mask.shape + (1,) * (y.ndim - 1)))
    if norm == "layer":
        return nn.GroupNorm(num_groups=1)
    return lambda y: y
