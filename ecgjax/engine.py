"""The epoch driver: one object that trains a whole seed ensemble with a chosen strategy.

Strategies (same numbers, different speed; DESIGN.md point 9):
  * ``vmap``: one compiled step over a leading seed axis. Wins on GPUs and for dense models.
  * ``loop``: a Python loop over seeds inside each step, re-using one single-seed program.
    Avoids the grouped convolutions vmapped conv kernels lower to, which XLA:CPU runs slowly.
  * ``sequential``: each seed runs its whole epoch in turn (separate runs, one program).
Dispatch: ``python`` (a loop over a jitted step) or ``scan`` (``lax.scan`` over k steps).
``auto`` resolves both through :func:`ecgjax.strategy.choose`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ecgjax import data as data_lib
from ecgjax import strategy as strategy_lib
from ecgjax.losses import make_loss
from ecgjax.models import create_model
from ecgjax.optim import make_optimizer
from ecgjax.train import (
    DeviceData,
    StepFns,
    TrainState,
    create_train_state,
    epoch_indices,
    predict_probs,
    scan_steps,
    train_step,
)

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Raised when any seed's training loss becomes NaN or infinite."""


def seed_keys(seeds: list[int]) -> jax.Array:
    """Stacked raw keys; member k of the ensemble uses ``PRNGKey(seeds[k])``."""
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def to_device(split: data_lib.BeatData, use_context: bool) -> DeviceData:
    """Put a split on the device once, in the model's 1D view."""
    if use_context and split.context is None:
        raise ValueError(
            f"{split.source}: model.rr_context=True needs RR features, but this file has no "
            "'record' and 'sample' columns; prepare the data with scripts/prepare_data.py "
            "or set model.rr_context=False"
        )
    ctx = jnp.asarray(split.context, jnp.float32) if use_context else None
    return DeviceData(jnp.asarray(data_lib.view_1d(split.x)), jnp.asarray(split.y, jnp.int32), ctx)


def steps_per_epoch(config: ml_collections.ConfigDict, n_train: int) -> int:
    """Configured steps, or one full pass (last partial batch dropped)."""
    if config.train.steps_per_epoch > 0:
        return int(config.train.steps_per_epoch)
    return max(1, n_train // int(config.train.batch_size))


class Ensemble:
    """Trains and evaluates ``len(seeds)`` copies of one model on one training split."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        train: data_lib.BeatData | None,
        seeds: list[int],
        *,
        context_dim: int | None = None,
    ) -> None:
        """Build the programs for ``seeds``; ``train=None`` builds an inference-only ensemble
        (evaluation from checkpoints), then ``context_dim`` gives the RR feature count."""
        self.config = config
        self.seeds = list(seeds)
        self.num_classes = int(config.data.num_classes)
        self.use_context = bool(config.model.rr_context)
        self.model = create_model(config.model, self.num_classes)
        self.batch_size = int(config.train.batch_size)
        if train is None:
            train = _placeholder(self.num_classes, context_dim if self.use_context else None)
        self.steps = steps_per_epoch(config, len(train))
        self.tx = make_optimizer(config.optim, self.steps, int(config.train.epochs))
        self.fns = StepFns(self.model, self.tx, make_loss(config.loss), config.augment)
        self.data = to_device(train, self.use_context)
        self.context_dim = 0 if self.data.context is None else int(self.data.context.shape[1])
        self.class_weights = jnp.asarray(
            data_lib.class_weights(train.y, self.num_classes, float(config.loss.class_weight_power))
        )
        self.sample_probs = self._sample_probs(train.y)
        choice = strategy_lib.choose(config, jax.default_backend(), len(self.seeds))
        self.strategy, self.dispatch = choice.strategy, choice.dispatch
        self.scan_k = max(1, min(int(config.ensemble.scan_steps), self.steps))
        log.info("ensemble strategy %s / dispatch %s (%s)", self.strategy, self.dispatch, choice.reason)
        self._compile()

    def _sample_probs(self, y: np.ndarray) -> jax.Array | None:
        if self.config.sampling.name == "uniform":
            return None
        if self.config.sampling.name != "balanced":
            raise ValueError(f"unknown sampling {self.config.sampling.name!r}; use uniform or balanced")
        counts = data_lib.class_counts(y, self.num_classes).astype(np.float64)
        per_class = np.where(counts > 0, np.maximum(counts, 1.0) ** -float(self.config.sampling.balance_power), 0.0)
        p = per_class[y]
        return jnp.asarray(p / p.sum(), jnp.float32)

    def _compile(self) -> None:
        fns = self.fns
        single = functools.partial(train_step, fns=fns)
        multi = functools.partial(scan_steps, fns=fns)
        predict = functools.partial(predict_probs, model=self.model)
        if self.strategy == "vmap":
            self._step = jax.jit(jax.vmap(single, in_axes=(0, 0, None, None)), donate_argnums=0)
            self._scan = jax.jit(jax.vmap(multi, in_axes=(0, 0, None, None)), donate_argnums=0)
            self._predict = jax.jit(jax.vmap(predict, in_axes=(0, 0, None, None)))
        else:
            self._step = jax.jit(single, donate_argnums=0)
            self._scan = jax.jit(multi, donate_argnums=0)
            self._predict = jax.jit(predict)
        n, steps, batch = int(self.data.y.shape[0]), self.steps, self.batch_size
        self._indices = jax.jit(
            jax.vmap(
                lambda key, epoch, probs: epoch_indices(key, epoch, n, steps, batch, probs),
                in_axes=(0, None, None),
            )
        )
        init = functools.partial(create_train_state, model=self.model, tx=self.tx, context_dim=self.context_dim)
        self._init = jax.jit(jax.vmap(init))

    def init(self) -> TrainState:
        """A fresh ensemble state with a leading seed axis."""
        return self._init(seed_keys(self.seeds))

    def abstract_state(self) -> Any:
        """Shapes and dtypes of :meth:`init`, for restoring checkpoints without computing."""
        return jax.eval_shape(self.init)

    def train_epoch(self, state: TrainState, epoch: int) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run one epoch; returns the new state and per-seed mean loss/accuracy (numpy, ``(S,)``)."""
        idx = self._indices(state.key, jnp.asarray(epoch, jnp.int32), self.sample_probs)
        if self.strategy == "vmap":
            state, metrics = self._run_steps(state, idx)
        elif self.strategy == "sequential":
            members = _unstack(state, len(self.seeds))
            outs = [self._run_steps(m, idx[s]) for s, m in enumerate(members)]
            state, metrics = _stack([o[0] for o in outs]), _stack([o[1] for o in outs])
        else:
            state, metrics = self._loop_steps(state, idx)
        host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        if not np.all(np.isfinite(host["loss"])):
            bad = [self.seeds[i] for i in np.flatnonzero(~np.isfinite(host["loss"]))]
            raise NonFiniteLossError(f"non-finite training loss in epoch {epoch} for seeds {bad}")
        return state, host

    def _run_steps(self, state: TrainState, idx: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """All steps of an epoch for a stacked (vmap) or single-member state; returns mean metrics."""
        step_axis = 1 if self.strategy == "vmap" else 0
        total = idx.shape[step_axis]
        sums: dict[str, jax.Array] = {}
        pos = 0
        if self.dispatch == "scan":
            k = self.scan_k
            while pos + k <= total:
                chunk = jax.lax.slice_in_dim(idx, pos, pos + k, axis=step_axis)
                state, m = self._scan(state, chunk, self.data, self.class_weights)
                sums = _accumulate(sums, {key: v.sum(axis=step_axis) for key, v in m.items()})
                pos += k
        while pos < total:
            batch = jnp.take(idx, pos, axis=step_axis)
            state, m = self._step(state, batch, self.data, self.class_weights)
            sums = _accumulate(sums, m)
            pos += 1
        return state, {key: v / total for key, v in sums.items()}

    def _loop_steps(self, state: TrainState, idx: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """Interleave seeds within each step (or scan chunk): one single-seed program, S calls."""
        members = _unstack(state, len(self.seeds))
        total = idx.shape[1]
        sums: list[dict[str, jax.Array]] = [{} for _ in members]
        pos = 0
        k = self.scan_k if self.dispatch == "scan" else 1
        while pos < total:
            width = k if pos + k <= total else 1
            for s in range(len(members)):
                if width > 1:
                    members[s], m = self._scan(members[s], idx[s, pos : pos + width], self.data, self.class_weights)
                    m = {key: v.sum(axis=0) for key, v in m.items()}
                else:
                    members[s], m = self._step(members[s], idx[s, pos], self.data, self.class_weights)
                sums[s] = _accumulate(sums[s], m)
            pos += width
        return _stack(members), _stack([{key: v / total for key, v in m.items()} for m in sums])

    def predict(self, state: TrainState, split: data_lib.BeatData) -> np.ndarray:
        """Per-seed class probabilities ``(S, N, C)`` on a split, in fixed-size chunks."""
        dev = to_device(split, self.use_context)
        n = int(dev.y.shape[0])
        chunk = min(int(self.config.train.eval_batch_size), max(n, 1))
        out = []
        for start in range(0, n, chunk):
            x = _pad_to(dev.x[start : start + chunk], chunk)
            ctx = None if dev.context is None else _pad_to(dev.context[start : start + chunk], chunk)
            if self.strategy == "vmap":
                probs = self._predict(state.params, state.batch_stats, x, ctx)
            else:
                params = _unstack(state.params, len(self.seeds))
                stats = _unstack(state.batch_stats, len(self.seeds))
                probs = jnp.stack([self._predict(p, b, x, ctx) for p, b in zip(params, stats, strict=True)])
            out.append(np.asarray(probs)[:, : min(chunk, n - start)])
        return np.concatenate(out, axis=1) if out else np.zeros((len(self.seeds), 0, self.num_classes))


def _placeholder(num_classes: int, context_dim: int | None) -> data_lib.BeatData:
    """A one-batch stand-in for the training split of an inference-only ensemble."""
    y = np.arange(num_classes, dtype=np.int32)
    ctx = None if context_dim is None else np.zeros((num_classes, context_dim), np.float32)
    x = np.zeros((num_classes, data_lib.FEATURE_LEN), np.float32)
    return data_lib.BeatData(x=x, y=y, num_classes=num_classes, source="(inference only)", context=ctx)


def _unstack(tree: Any, n: int) -> list[Any]:
    return [jax.tree.map(lambda a, s=s: a[s], tree) for s in range(n)]


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _accumulate(sums: dict[str, jax.Array], new: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: sums[k] + v if k in sums else v for k, v in new.items()}


def _pad_to(a: jax.Array, size: int) -> jax.Array:
    if a.shape[0] == size:
        return a
    pad = [(0, size - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad)
