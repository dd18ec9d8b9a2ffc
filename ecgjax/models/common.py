"""Building blocks shared by the models: normalisation by name and context fusion.

Kept here (not in each model file) so every model reads ``model.norm`` and
``model.rr_context`` the same way; this is a models-only module, not a grab-bag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

NORMS = ("none", "batch", "layer")


def config_fields(module_cls: type[nn.Module], cfg: Any, num_classes: int) -> dict[str, Any]:
    """The module's own attributes, read from the ``model`` config section by name.

    Every model declares the hyper-parameters it uses as dataclass fields named like the
    config keys; keys a model does not declare are ignored, fields absent from the config
    keep their module default.
    """
    skip = {"num_classes", "parent", "name"}  # flax's own fields; model.name is the registry key
    names = {f.name for f in dataclasses.fields(module_cls)} - skip
    if "norm" in names:
        check_norm(cfg.norm)  # fail at creation (a failed Tune trial), not inside jit
    return {"num_classes": num_classes, **{k: cfg[k] for k in sorted(names) if k in cfg}}


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


class ContextFusion(nn.Module):
    """Concatenate a projected per-beat context (e.g. R-R intervals) onto pooled features.

    The morphology of one beat cannot tell a premature beat from a normal one; the R-R
    context can. A small Dense+ReLU lets the head combine the two on a common scale.

    Attributes:
        enabled: ``model.rr_context``; when False the context is ignored.
        features: width of the context projection.
    """

    enabled: bool
    features: int = 16

    @nn.compact
    def __call__(
        self, h: Float[Array, "batch d"], context: Float[Array, "batch f"] | None
    ) -> Float[Array, "batch e"]:
        if not self.enabled:
            return h
        if context is None:
            raise ValueError(
                "model.rr_context is True but no context was passed to the model; "
                "pass the R-R features as `context` or set model.rr_context=False"
            )
        c = nn.relu(nn.Dense(self.features, name="context_proj")(context.astype(jnp.float32)))
        return jnp.concatenate([h, c], axis=-1)
