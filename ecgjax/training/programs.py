"""The compiled programs of an ensemble strategy, built once per process and shape.

``jit``/``vmap``/``scan`` are applied here, once (DESIGN.md point 5), and the jitted functions
are memoised on what determines them (the strategy and the model, loss, optimizer and
augmentation settings): two ensembles of the same config share their compiled programs.
That makes ``loop`` and ``sequential`` ensembles of any size re-use one single-seed
program, so their compile time does not grow with the seed count, and a restored ensemble
does not compile again what its training run compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ecgjax.data import inputs
from ecgjax.models import create_model
from ecgjax.training.losses import make_loss
from ecgjax.training.optim import make_optimizer
from ecgjax.training.step import (
    DeviceData,
    StepFns,
    TrainState,
    create_train_state,
    predict_probs,
    scan_steps,
    train_step,
)

_KEY_SECTIONS = ("model", "loss", "optim", "augment")


@dataclass(frozen=True)
class Programs:
    """Jitted functions of one strategy; ``step``/``scan`` donate the state they advance and
    ``init`` builds one member (the engine stacks them)."""

    model: nn.Module
    tx: optax.GradientTransformation
    fns: StepFns
    step: Callable[..., Any]
    scan: Callable[..., Any]
    predict: Callable[..., Any]
    init: Callable[..., Any]
    # The step with the flat optimizer state, not jitted: ``packing.packed_programs`` jits it
    # around a state layout (``flat`` dispatch).
    flat_step: Callable[..., Any]


def programs_for(
    config: ml_collections.ConfigDict,
    strategy: str,
    num_seeds: int,
    steps_per_epoch: int,
    context_dim: int,
    num_channels: int = 1,
    *,
    member_hparams: bool = False,
) -> Programs:
    """The (memoised) programs of ``strategy`` for this config; see :mod:`ecgjax.training.engine`.

    ``member_hparams``: the step's 4th argument (class weights, or a population's dict of
    traced values) has a leading member axis, mapped like the state's.
    """
    key = json.dumps({s: config[s].to_dict() for s in _KEY_SECTIONS}, sort_keys=True, default=list)
    group = strategy if strategy in ("vmap", "wide", "unrolled") else "member"
    normal_stats = str(config.model.get("bn_stats", "batch")) == "normal"
    rate = float(config.augment.get("drop_channels_rate", 0.0))
    dropped = (
        inputs.channel_indices(config.data.channels, config.augment.drop_channels) if rate else ()
    )
    adversary = float(config.model.get("patient_adversary", 0.0)) > 0
    return _build(
        key,
        group,
        num_seeds if group == "unrolled" else 0,
        int(config.data.num_classes),
        steps_per_epoch,
        int(config.train.epochs),
        context_dim,
        num_channels,
        member_hparams,
        list(config.data.class_names).index("N") if normal_stats else -1,
        dropped,
        list(config.data.class_names).index("N") if adversary else -1,
    )


@functools.lru_cache(maxsize=32)
def _build(
    key: str,
    group: str,
    num_seeds: int,
    num_classes: int,
    steps_per_epoch: int,
    epochs: int,
    context_dim: int,
    num_channels: int,
    member_hparams: bool = False,
    norm_class: int = -1,
    drop_channels: tuple[int, ...] = (),
    adversary_class: int = -1,
) -> Programs:
    sections = json.loads(key)
    cfg = {s: ml_collections.ConfigDict(sections[s]) for s in _KEY_SECTIONS}
    model = create_model(cfg["model"], num_classes)
    tx = make_optimizer(cfg["optim"], steps_per_epoch, epochs)
    fns = StepFns(
        model,
        tx,
        make_loss(cfg["loss"]),
        cfg["augment"],
        wide=group == "wide",
        norm_class=norm_class,
        drop_channels=drop_channels,
        drop_rate=float(cfg["augment"].get("drop_channels_rate", 0.0)),
        adversary_class=adversary_class,
        sam_rho=float(cfg["optim"].get("sam_rho", 0.0)),
        weight_ema=float(cfg["optim"].get("weight_ema", 0.0)),
    )
    single: Callable[..., Any] = functools.partial(train_step, fns=fns)
    flat: Callable[..., Any] = functools.partial(
        train_step, fns=dataclasses.replace(fns, flat_optimizer=True)
    )
    multi: Callable[..., Any] = functools.partial(scan_steps, fns=fns)
    predict: Callable[..., Any] = functools.partial(predict_probs, model=model, wide=fns.wide)
    if group in ("vmap", "wide"):
        in_axes = (0, 0, None, 0 if member_hparams else None)
        step, scan = jax.vmap(single, in_axes=in_axes), jax.vmap(multi, in_axes=in_axes)
        flat = jax.vmap(flat, in_axes=in_axes)
        predict = jax.vmap(predict, in_axes=(0, 0, None, None))
    elif group == "unrolled":
        step = unrolled(single, num_seeds, member_hparams)
        scan = unrolled(multi, num_seeds, member_hparams)
        flat = unrolled(flat, num_seeds, member_hparams)
    else:
        step, scan = single, multi
    init: Callable[..., Any] = functools.partial(
        create_train_state,
        model=model,
        tx=tx,
        context_dim=context_dim,
        num_channels=num_channels,
        average=fns.weight_ema > 0,
    )
    return Programs(
        model=model,
        tx=tx,
        fns=fns,
        step=jax.jit(step, donate_argnums=0),
        scan=jax.jit(scan, donate_argnums=0),
        predict=jax.jit(predict),
        init=jax.jit(init),
        flat_step=flat,
    )


def unrolled(fn: Callable[..., Any], n: int, member_hparams: bool = False) -> Callable[..., Any]:
    """One program that runs ``fn`` on each of ``n`` members of a stacked state separately.

    XLA then sees n independent single-seed graphs (plain convs, no grouped ones) and one
    dispatch per step instead of n; members are sliced and restacked inside the program.
    """

    def run(state: TrainState, idx: jax.Array, data: DeviceData, hp: Any) -> Any:
        def member(tree: Any, s: int) -> Any:
            return jax.tree.map(lambda a: a[s], tree)

        outs = [
            fn(member(state, s), idx[s], data, member(hp, s) if member_hparams else hp)
            for s in range(n)
        ]
        return jax.tree.map(lambda *a: jnp.stack(a), *outs)

    return run


def planned_bytes(jitted: Any, *args: Any) -> int | None:
    """Bytes XLA plans for one call (arguments + outputs + temporaries - donated buffers), from
    the compiled program's memory analysis; ``None`` where the backend gives none."""
    stats = jitted.lower(*args).compile().memory_analysis()
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
