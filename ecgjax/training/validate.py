"""Config validation in one place, run by every script before anything is written.

:func:`validate` checks value ranges, names and cross-field rules of a whole config and
raises :class:`ConfigError` (a one-line :class:`ecgjax.errors.UserError`) naming the key, the
value and what is allowed. The allowed names come from the registries that use them
(``models.MODELS``, ``losses.LOSSES``, ``inputs.CHANNELS``, ``strategy.STRATEGIES``, ...), so a
new model or loss is valid as soon as it is registered. This sits in ``training`` because it
needs those registries; the tuning names it checks are the ones ``ecgjax.tuning.trainable``
accepts (a test keeps the two lists equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import ml_collections

from ecgjax.data import inputs
from ecgjax.errors import UserError
from ecgjax.models import MODELS
from ecgjax.scoring import af_gate
from ecgjax.scoring.metrics import FLAT_SCALARS, OBJECTIVES
from ecgjax.training.adapt import ADAPTS
from ecgjax.training.losses import LOSSES
from ecgjax.training.strategy import DISPATCHES, STRATEGIES

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
SAMPLINGS = ("uniform", "balanced", "record")
NORMS = ("none", "batch", "layer")
POOLS = ("flatten", "global")
VAL_SPLITS = ("stratified", "record")
DATASETS = ("mitbih", "ptb", "interpatient")
SCHEDULERS = ("asha", "hyperband", "pbt", "fifo")  # ecgjax.tuning.trainable.make_scheduler
SEARCHES = ("random", "grid", "optuna")  # ecgjax.tuning.trainable.make_search


class ConfigError(UserError, ValueError):
    """A config value is out of range, unknown, or inconsistent with another value."""


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# (key, check, what is allowed); the check gets the value.
def _at_least(lo: float, integer: bool = True) -> tuple[Callable[[Any], bool], str]:
    kind = "an integer" if integer else "a number"
    return (lambda v: (_int(v) if integer else _num(v)) and v >= lo), f"{kind} >= {lo:g}"


def _above(lo: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _num(v) and v > lo), f"a number > {lo:g}"


def _unit(closed_right: bool = True) -> tuple[Callable[[Any], bool], str]:
    if closed_right:
        return (lambda v: _num(v) and 0 <= v <= 1), "a number in [0, 1]"
    return (lambda v: _num(v) and 0 <= v < 1), "a number in [0, 1)"


def _open_unit() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _num(v) and 0 < v < 1), "a number in (0, 1)"


def _one_of(names: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    allowed = tuple(names)
    return (lambda v: v in allowed), "one of " + ", ".join(allowed)


def select_metrics(class_names: Iterable[str]) -> list[str]:
    """Names ``train.select_metric`` accepts (validation keys ``val/<name>`` of every epoch)."""
    per_class = [f"{k}_{n}" for k in ("recall", "precision", "f1") for n in class_names]
    return [*FLAT_SCALARS, *OBJECTIVES, "macro_precision", *per_class]


def _rules(c: ml_collections.ConfigDict) -> dict[str, tuple[Callable[[Any], bool], str]]:
    return {
        "seed": _at_least(0),
        "data.dataset": _one_of(DATASETS),
        "data.num_classes": _at_least(2),
        "data.val_fraction": _open_unit(),
        "data.cluster_smoothing": _unit(),
        "data.sv_split": _unit(),
        "data.af_gate_mode": _one_of(af_gate.MODES),
        "data.cv_epoch": _one_of(("last", "best")),
        "data.prematurity_gate": (
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= 0,
            "a number >= 0 (a multiple of the record's mean RR interval; 0 turns it off)",
        ),
        "data.af_gate_pwave": (
            lambda v: isinstance(v, int | float) and 0 <= v < 1,
            "a number in [0, 1): 0 turns the P-wave test off",
        ),
        "data.split_seed": _at_least(0),
        "data.val_split": _one_of(VAL_SPLITS),
        "data.cv_folds": ((lambda v: _int(v) and (v == 0 or v >= 2)), "0 (off) or an integer >= 2"),
        "data.cv_rhythms": (
            lambda v: isinstance(v, str) and all(r.strip() == r and r for r in v.split(",") if v),
            "comma-separated rhythm names as annotated, e.g. 'AFIB,AFL' ('' for none)",
        ),
        "data.max_train": _at_least(0),
        "data.max_eval": _at_least(0),
        "data.template": _one_of(inputs.TEMPLATES),
        "data.template_beats": _at_least(1),
        "data.cluster_k": _at_least(1),
        "data.tta_shift": (lambda v: _int(v) and 0 <= v < 96, "an integer in [0, 96)"),
        "data.adapt_norm": _one_of(ADAPTS),
        "data.adapt_rounds": _at_least(1),
        "data.adapt_min_prob": _unit(closed_right=False),
        "model.name": _one_of(MODELS),
        "model.hidden": _at_least(1),
        "model.num_blocks": _at_least(1),
        "model.num_heads": _at_least(1),
        "model.dropout": _unit(closed_right=False),
        "model.norm": _one_of(NORMS),
        "model.bn_stats": _one_of(("batch", "normal")),
        "model.pool": _one_of(POOLS),
        "model.kernel_size": _at_least(1),
        "model.se_ratio": _at_least(0),
        "model.rr_width": _at_least(1),
        "model.rr_beat_dropout": _unit(closed_right=False),
        "model.rr_rhythm_dropout": _unit(closed_right=False),
        "model.patient_adversary": _at_least(0, integer=False),
        "loss.name": _one_of(LOSSES),
        "loss.class_weight_power": _at_least(0, integer=False),
        "loss.focal_gamma": _at_least(0, integer=False),
        "loss.label_smoothing": _unit(closed_right=False),
        "sampling.name": _one_of(SAMPLINGS),
        "sampling.balance_power": _unit(),
        "sampling.patient_power": _unit(),
        "augment.scale": _unit(closed_right=False),
        "augment.shift": _at_least(0, integer=False),
        "augment.noise": _at_least(0, integer=False),
        "augment.time_shift": _at_least(0),
        "augment.stretch": _unit(closed_right=False),
        "augment.drop_channels_rate": _unit(closed_right=False),
        "optim.name": _one_of(OPTIMIZERS),
        "optim.learning_rate": _above(0),
        "optim.weight_decay": _at_least(0, integer=False),
        "optim.momentum": _unit(closed_right=False),
        "optim.schedule": _one_of(SCHEDULES),
        "optim.warmup_epochs": _at_least(0),
        "optim.plateau_patience": _at_least(1),
        "optim.plateau_factor": _open_unit(),
        "optim.grad_clip": _at_least(0, integer=False),
        "optim.sam_rho": _at_least(0, integer=False),
        "optim.weight_ema": _unit(closed_right=False),
        "train.batch_size": _at_least(1),
        "train.epochs": _at_least(1),
        "train.steps_per_epoch": _at_least(0),
        "train.num_seeds": _at_least(1),
        "train.eval_batch_size": _at_least(1),
        "train.select_metric": _one_of(select_metrics(c.data.class_names)),
        "train.early_stop_patience": _at_least(0),
        "ensemble.strategy": _one_of(("auto", *STRATEGIES)),
        "ensemble.dispatch": _one_of(("auto", *DISPATCHES)),
        "ensemble.scan_steps": _at_least(1),
        "tune.scheduler": _one_of(SCHEDULERS),
        "tune.search": _one_of(SEARCHES),
        "tune.mode": _one_of(("max", "min")),
        "tune.num_samples": _at_least(1),
        "tune.max_epochs": _at_least(1),
        "tune.grace_period": _at_least(1),
        "tune.reduction_factor": _above(1),
        "tune.perturbation_interval": _at_least(1),
        "tune.max_concurrent": _at_least(1),
        "tune.cpus_per_trial": _above(0),
        "tune.gpus_per_trial": _at_least(0, integer=False),
        "tune.seeds_per_trial": _at_least(1),
    }


def _get(c: ml_collections.ConfigDict, dotted: str) -> Any:
    node: Any = c
    for part in dotted.split("."):
        node = node[part]
    return node


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config: {key}={value!r} is not allowed; use {allowed}")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Check every value of ``config``; return it unchanged, or raise :class:`ConfigError`.

    Raises:
        ConfigError: the first bad value, naming the key and the allowed values.
    """
    c = config
    try:
        rules = _rules(c)
        values = {key: _get(c, key) for key in rules}
    except (KeyError, AttributeError) as err:
        raise ConfigError(f"config: missing key {err} (start configs from base_config())") from None
    for key, (check, allowed) in rules.items():
        if not check(values[key]):
            raise _bad(key, values[key], allowed)
    _cross_field(c)
    return config


def _cross_field(c: ml_collections.ConfigDict) -> None:
    names = list(c.data.class_names)
    if len(names) != int(c.data.num_classes) or len(set(names)) != len(names):
        raise ConfigError(
            f"config: data.class_names={names} must be {c.data.num_classes} distinct names "
            "(data.num_classes)"
        )
    try:
        inputs.parse_channels(c.data.channels)
    except ValueError as err:
        raise ConfigError(f"config: {err}") from None
    if c.sampling.get("patient_power", 0.0) > 0 and c.sampling.name == "record":
        raise ConfigError(
            "config: sampling.patient_power reweights beats within their class for "
            "sampling.name 'uniform' or 'balanced'; 'record' draws whole-record batches"
        )
    dropped = inputs.parse_names(c.augment.get("drop_channels", ""))
    rate = float(c.augment.get("drop_channels_rate", 0.0))
    if bool(dropped) != (rate > 0) or not set(dropped) <= set(
        inputs.parse_channels(c.data.channels)
    ):
        raise ConfigError(
            f"config: augment.drop_channels={c.augment.drop_channels!r} with "
            f"augment.drop_channels_rate={rate} must name channels of data.channels="
            f"{c.data.channels!r} and come with a rate above 0 (or be '' with rate 0)"
        )
    if c.data.adapt_norm != "none" and c.model.norm != "batch":
        raise ConfigError(
            f"config: data.adapt_norm={c.data.adapt_norm!r} adapts batch-norm statistics; it "
            f"needs model.norm='batch' (got {c.model.norm!r}), or data.adapt_norm='none'"
        )
    if c.data.adapt_norm == "normal" and "N" not in names:
        raise ConfigError(
            f"config: data.adapt_norm='normal' takes statistics over the beats called N; "
            f"data.class_names={names} has no 'N' (use data.adapt_norm='record')"
        )
    if c.data.p_wave_features and c.data.rr_causal:
        raise ConfigError(
            "config: data.p_wave_features compares each beat's P wave with its neighbours' ahead "
            "and its whole record's, so it is not causal; it cannot go with data.rr_causal"
        )
    for gate, off in (("af_gate", "False"), ("prematurity_gate", "0")):  # the rhythm gates on S
        if c.data[gate] and (c.data.max_eval > 0 or c.data.max_train > 0):
            raise ConfigError(
                f"config: data.{gate} reads the RR intervals between consecutive beats, so it "
                f"needs every beat of each record; data.max_train={c.data.max_train} / "
                f"data.max_eval={c.data.max_eval} take a sample (set them to 0, or "
                f"data.{gate}={off})"
            )
    if c.data.af_gate and not {"N", "S"} <= set(names):
        raise ConfigError(
            f"config: data.af_gate moves S probability to N where the rhythm looks like atrial "
            f"fibrillation; data.class_names={names} needs both 'N' and 'S'"
        )
    if c.data.prematurity_gate > 0 and "S" not in names:
        raise ConfigError(
            f"config: data.prematurity_gate takes S away from beats that are not premature; "
            f"data.class_names={names} has no 'S'"
        )
    if c.data.sv_split > 0 and not {"S", "V"} <= set(names):
        raise ConfigError(
            f"config: data.sv_split moves each beat's split between S and V towards its "
            f"cluster's; data.class_names={names} needs both 'S' and 'V'"
        )
    if c.model.bn_stats == "normal" and (c.model.norm != "batch" or "N" not in names):
        raise ConfigError(
            f"config: model.bn_stats='normal' trains batch norm on the statistics of each batch's "
            f"beats labelled N; it needs model.norm='batch' (got {c.model.norm!r}) and a class "
            f"named N (data.class_names={names})"
        )
    refined = int(c.data.adapt_rounds) != 1 or float(c.data.adapt_min_prob) != 0.0
    if refined and c.data.adapt_norm != "normal":
        raise ConfigError(
            f"config: data.adapt_rounds={c.data.adapt_rounds} and data.adapt_min_prob="
            f"{c.data.adapt_min_prob} refine data.adapt_norm='normal' (got "
            f"{c.data.adapt_norm!r}); set it, or leave them at 1 and 0.0"
        )
    if c.model.name == "transformer" and int(c.model.hidden) % int(c.model.num_heads):
        raise ConfigError(
            f"config: model.hidden={c.model.hidden} must be divisible by model.num_heads="
            f"{c.model.num_heads} for the transformer"
        )
    if c.tune.scheduler == "asha" and c.tune.grace_period > c.tune.max_epochs:
        raise ConfigError(
            f"config: tune.grace_period={c.tune.grace_period} must be <= tune.max_epochs="
            f"{c.tune.max_epochs} (ASHA's first rung)"
        )
    if c.tune.scheduler == "pbt" and c.tune.search != "random":
        raise ConfigError(
            f"config: tune.search={c.tune.search!r} with tune.scheduler='pbt'; use "
            "tune.search='random' (PBT samples its population itself)"
        )
    metric = str(c.tune.metric)
    prefix, _, rest = metric.partition("/")
    if prefix not in ("val", "cv") or rest.rpartition("/")[2] not in select_metrics(names):
        raise ConfigError(
            f"config: tune.metric={metric!r} is not allowed; use val/<metric> with <metric> one "
            f"of {', '.join(select_metrics(names))}"
        )
