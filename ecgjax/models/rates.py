"""Dropout rates as traced values, so one program can train members with different rates.

Why: ``nn.Dropout(rate)`` takes a Python float and branches on it (``rate == 0``), so a
population whose members differ in ``model.dropout`` could not share one compiled step.
Inside :func:`traced_dropout` every ``nn.Dropout`` of an applied model draws its mask with
the keep probability given as an array (one per member once the step is vmapped), and
:class:`~ecgjax.models.classifier.ContextFusion` reads ``rr_beat_dropout`` the same way.

The mask is drawn exactly as Flax draws it (``bernoulli(make_rng("dropout"), keep, shape)``
and ``inputs / keep``), from the same per-module rng, so a member equals a single run with
the same rate and seed. Keep probabilities are passed (not rates) so the caller computes
``1 - rate`` once on the host in float64, as the Python-float path does; a rate of 0 keeps
every unit (``uniform < 1`` always holds) and only costs the mask.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

_KEEP: contextvars.ContextVar[dict[str, Array] | None] = contextvars.ContextVar(
    "ecgjax_traced_keep", default=None
)


def traced_keep(name: str) -> Array | None:
    """The traced keep probability ``name`` set by :func:`traced_dropout`, else ``None``."""
    keep = _KEEP.get()
    return None if keep is None else keep.get(name)


def _intercept(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
    module = context.module
    keep = traced_keep("dropout")
    if keep is None or type(module) is not nn.Dropout or context.method_name != "__call__":
        return next_fun(*args, **kwargs)
    (inputs,) = args
    deterministic = nn.merge_param(
        "deterministic", module.deterministic, kwargs.get("deterministic")
    )
    if deterministic:
        return inputs
    rng = kwargs.get("rng")
    if rng is None:
        rng = module.make_rng(module.rng_collection)
    shape = list(inputs.shape)
    for dim in module.broadcast_dims:
        shape[dim] = 1
    mask = jnp.broadcast_to(jax.random.bernoulli(rng, keep, shape), inputs.shape)
    return lax.select(mask, inputs / keep.astype(inputs.dtype), jnp.zeros_like(inputs))


@contextlib.contextmanager
def traced_dropout(keep: dict[str, Array]) -> Iterator[None]:
    """Within this context, dropout reads its keep probability from ``keep``.

    Keys: ``dropout`` (every ``nn.Dropout``, i.e. ``model.dropout``) and ``rr_beat_dropout``
    (the rhythm branch's modality dropout); an absent key keeps the config's constant.
    """
    if not keep:
        yield
        return
    token = _KEEP.set(dict(keep))
    try:
        if "dropout" in keep:
            with nn.intercept_methods(_intercept):
                yield
        else:
            yield
    finally:
        _KEEP.reset(token)
