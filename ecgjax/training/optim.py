"""Optimizers whose tuned numbers are data, not compile-time constants.

The learning rate and weight decay sit in ``optax.inject_hyperparams`` state, so a new value
(PBT exploit, reduce-on-plateau, a restored trial) changes an array, never the compiled step.
Schedules that have a fixed shape (cosine with warm-up) multiply the update afterwards.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

_HPARAMS = ("learning_rate", "weight_decay")
_INJECT_TYPES = tuple(
    getattr(optax, n)
    for n in ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
    if hasattr(optax, n)
)


def make_optimizer(
    optim_cfg: ml_collections.ConfigDict, steps_per_epoch: int, epochs: int
) -> optax.GradientTransformation:
    """Build the optimizer for one model (one seed); vmapping adds the seed axis."""
    name = optim_cfg.name
    if name not in ("adam", "adamw", "sgd"):
        raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")
    momentum = float(optim_cfg.momentum)

    def factory(learning_rate: Any, weight_decay: Any) -> optax.GradientTransformation:
        if name == "adamw":
            return optax.adamw(learning_rate, weight_decay=weight_decay)
        # adam / sgd: classic L2 weight decay added to the gradient before the update rule.
        base = (
            optax.adam(learning_rate)
            if name == "adam"
            else optax.sgd(learning_rate, momentum=momentum or None)
        )
        return optax.chain(optax.add_decayed_weights(weight_decay), base)

    parts: list[optax.GradientTransformation] = []
    if optim_cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(float(optim_cfg.grad_clip)))
    parts.append(
        optax.inject_hyperparams(factory)(
            learning_rate=float(optim_cfg.learning_rate),
            weight_decay=float(optim_cfg.weight_decay),
        )
    )
    if optim_cfg.schedule == "cosine":
        total = max(1, steps_per_epoch * epochs)
        warmup = min(total - 1, steps_per_epoch * int(optim_cfg.warmup_epochs))
        parts.append(optax.scale_by_schedule(_cosine_multiplier(warmup, total)))
    elif optim_cfg.schedule not in ("constant", "plateau"):
        raise ValueError(
            f"unknown schedule {optim_cfg.schedule!r}; choose constant, cosine or plateau"
        )
    return optax.chain(*parts)


def _cosine_multiplier(warmup: int, total: int) -> optax.Schedule:
    if warmup > 0:
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total, end_value=0.0)
    return optax.cosine_decay_schedule(1.0, total)


def _inject_states(opt_state: Any) -> list[Any]:
    found = []

    def visit(node: Any) -> None:
        if isinstance(node, _INJECT_TYPES):
            found.append(node)
        elif isinstance(node, tuple):
            for child in node:
                visit(child)

    visit(opt_state)
    if not found:
        raise ValueError("optimizer state holds no injected hyper-parameters")
    return found


def get_hyperparams(opt_state: Any) -> dict[str, jax.Array]:
    """The injected hyper-parameters (with a leading seed axis when the state is vmapped)."""
    state = _inject_states(opt_state)[0]
    return {k: state.hyperparams[k] for k in _HPARAMS}


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """Return ``opt_state`` with hyper-parameters replaced (scalars broadcast over seeds)."""
    unknown = set(values) - set(_HPARAMS)
    if unknown:
        raise KeyError(f"not an injected hyper-parameter: {sorted(unknown)}")

    def replace(node: Any) -> Any:
        if isinstance(node, _INJECT_TYPES):
            hp = dict(node.hyperparams)
            for k, v in values.items():
                hp[k] = jnp.broadcast_to(jnp.asarray(v, hp[k].dtype), hp[k].shape)
            return node._replace(hyperparams=hp)
        if isinstance(node, tuple) and not hasattr(node, "_fields"):
            return tuple(replace(c) for c in node)
        if isinstance(node, tuple):  # other namedtuple states
            return type(node)(*(replace(c) for c in node))
        return node

    return replace(opt_state)
