"""The epoch driver: one object that trains a whole seed ensemble with a chosen strategy.

Strategies (same numbers, different speed; measured by scripts/bench.py, see
:mod:`ecgjax.training.strategy` for what wins where):
  * ``vmap``: one compiled step over a leading seed axis (vmapped conv kernels lower to
    grouped convolutions).
  * ``wide``: ``vmap`` with convolutions computed as im2col + matmul (:mod:`ecgjax.training.wide`),
    so each layer of the ensemble is one batched matmul: seeds folded into one wide model.
  * ``unrolled``: one program holding S independent single-seed steps (plain convs, one
    dispatch per step for all seeds).
  * ``loop``: a Python loop over seeds inside each step, re-using one single-seed program.
  * ``sequential``: each seed runs its whole epoch in turn (separate runs, one program).
Dispatch: ``python`` (a loop over a jitted step), ``scan`` (``lax.scan`` over k steps) or ``flat``
(the ``python`` loop over a step whose state is packed into one buffer per dtype for the epoch
and whose Adam update runs fused over one vector, :mod:`ecgjax.training.packing`: the same
numbers to float rounding, fewer buffers and kernels per call).
``auto`` resolves both through :func:`ecgjax.training.strategy.choose`. Per step, Python does one
dispatch per program call and nothing else: indices arrive as host rows computed once per
epoch, and metrics stay on the device until the epoch ends.
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
from ecgjax.data import inputs as inputs_lib
from ecgjax.data.rr import record_groups
from ecgjax.models.classifier import MAX_PATIENTS
from ecgjax.training import adapt as adapt_lib
from ecgjax.training import strategy as strategy_lib
from ecgjax.training.packing import lane_programs
from ecgjax.training.programs import planned_bytes, programs_for
from ecgjax.training.step import (
    DeviceData,
    TrainState,
    epoch_indices,
    inference_state,
    record_epoch_indices,
)

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Raised when any seed's training loss becomes NaN or infinite."""


def seed_keys(seeds: list[int]) -> jax.Array:
    """Stacked raw keys; member k of the ensemble uses ``PRNGKey(seeds[k])``."""
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def to_device(
    split: data_lib.BeatData, use_context: bool, patients: np.ndarray | None = None
) -> DeviceData:
    """Put a split on the device once, in the model's 1D view ``(N, 192, channels)``;
    ``patients`` (each beat's patient index, for the patient adversary) goes with it."""
    if use_context and split.context is None:
        raise ValueError(
            f"{split.source}: model.rr_context=True needs RR features, but this file has no "
            "'record' and 'sample' columns; prepare the data with scripts/prepare_data.py "
            "or set model.rr_context=False"
        )
    ctx = jnp.asarray(split.context, jnp.float32) if use_context else None
    x = jnp.asarray(data_lib.model_view(split))
    record = None if patients is None else jnp.asarray(patients, jnp.int32)
    return DeviceData(x, jnp.asarray(split.y, jnp.int32), ctx, record)


def patient_indices(train: data_lib.BeatData) -> np.ndarray:
    """Each training beat's patient as ``0..R-1`` (records in sorted order), for
    ``model.patient_adversary``.

    Raises:
        DataError: the file has no records, or more than the adversary's outputs.
    """
    records = _train_records(train, "model.patient_adversary")
    names, index = np.unique(records, return_inverse=True)
    if len(names) > MAX_PATIENTS:
        raise data_lib.DataError(
            f"{train.source}: model.patient_adversary tells at most {MAX_PATIENTS} patients "
            f"apart, this training file has {len(names)} records"
        )
    return index.astype(np.int32)


def steps_per_epoch(config: ml_collections.ConfigDict, n_train: int) -> int:
    """Configured steps, or one full pass (last partial batch dropped)."""
    if config.train.steps_per_epoch > 0:
        return int(config.train.steps_per_epoch)
    return max(1, n_train // int(config.train.batch_size))


class Ensemble:
    """Trains and evaluates ``len(seeds)`` copies of one model on one training split."""

    member_hparams = False  # True: the step's hyper-parameter argument has a member axis

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
        self.batch_size = int(config.train.batch_size)
        power = float(config.sampling.get("patient_power", 0.0))
        self.patient_factors = (
            None
            if train is None or not power
            else data_lib.patient_factors(
                train.y, _train_records(train, "sampling.patient_power"), power
            )
        )
        inference = train is None
        if train is None:
            train = _placeholder(
                self.num_classes,
                context_dim if self.use_context else None,
                inputs_lib.num_channels(config.data),
            )
        self.steps = steps_per_epoch(config, len(train))
        adversary = float(config.model.get("patient_adversary", 0.0)) > 0
        patients = patient_indices(train) if adversary and not inference else None
        self.data = to_device(train, self.use_context, patients)
        self.context_dim = 0 if self.data.context is None else int(self.data.context.shape[1])
        self.num_channels = int(self.data.x.shape[-1])
        self.class_weights = jnp.asarray(
            data_lib.class_weights(train.y, self.num_classes, float(config.loss.class_weight_power))
        )
        self.sample_probs = self._sample_probs(train.y)
        choice = strategy_lib.choose(config, jax.default_backend(), len(self.seeds))
        self.strategy, self.dispatch = choice.strategy, choice.dispatch
        self.scan_k = max(1, min(int(config.ensemble.scan_steps), self.steps))
        log.info(
            "ensemble strategy %s / dispatch %s (%s)", self.strategy, self.dispatch, choice.reason
        )
        programs = programs_for(
            config,
            self.strategy,
            len(self.seeds),
            self.steps,
            self.context_dim,
            self.num_channels,
            member_hparams=self.member_hparams,
        )
        self.model, self.tx, self.fns = programs.model, programs.tx, programs.fns
        self._step, self._scan = programs.step, programs.scan
        self._predict, self._init = programs.predict, programs.init
        self._flat_step = programs.flat_step
        self._flat_programs: tuple[Any, Any, Any] | None = None  # built on first use (flat)
        self._stats: adapt_lib.StatsFn | None = None  # built on first use (record adaptation)
        self.record_rows = _record_rows(train) if config.sampling.name == "record" else None
        if self.record_rows is not None:
            self._indices = _record_indices_program(self.steps, self.batch_size)
        else:
            self._indices = _indices_program(
                int(self.data.y.shape[0]),
                self.steps,
                self.batch_size,
                self.sample_probs is not None and self.sample_probs.ndim == 2,
            )

    def _sample_probs(self, y: np.ndarray) -> jax.Array | None:
        name = self.config.sampling.name
        if name not in ("uniform", "balanced", "record"):
            raise ValueError(f"unknown sampling {name!r}; use uniform, balanced or record")
        if name == "record" or (name == "uniform" and self.patient_factors is None):
            return None  # a permutation per epoch (or per-record batches): no probabilities
        power = float(self.config.sampling.balance_power)
        p = np.ones(len(y)) if name == "uniform" else self._balanced(y, power)
        return jnp.asarray(p / p.sum(), jnp.float32)

    def _balanced(self, y: np.ndarray, power: float) -> np.ndarray:
        """Unnormalised per-beat weights ``count[class] ** -power`` (times the patient factors
        of ``sampling.patient_power``)."""
        counts = data_lib.class_counts(y, self.num_classes).astype(np.float64)
        per_class = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
        p = per_class[y]
        return p if self.patient_factors is None else p * self.patient_factors

    @property
    def stacked(self) -> bool:
        """Whether one program steps all seeds at once (vmap, wide, unrolled)."""
        return self.strategy in strategy_lib.STACKED

    def init(self) -> TrainState:
        """A fresh ensemble state with a leading seed axis."""
        # One single-seed init program stacked: the same members as a vmapped init, but
        # compiled once per model rather than once per seed count.
        return _stack([self._init(key) for key in seed_keys(self.seeds)])

    def abstract_state(self) -> Any:
        """Shapes and dtypes of :meth:`init`, for restoring checkpoints without computing."""
        return jax.eval_shape(self.init)

    def train_epoch(
        self, state: TrainState, epoch: int
    ) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run one epoch; returns the new state and per-seed mean loss/accuracy (numpy, ``(S,)``)."""
        # Host indices: one transfer per epoch, then each step gets its rows as an argument,
        # so the only per-step work in Python is one dispatch per program call.
        how = self.sample_probs if self.record_rows is None else self.record_rows
        idx = np.asarray(self._indices(state.key, jnp.asarray(epoch, jnp.int32), how))
        n = len(self.seeds)
        if self.stacked:
            lanes, means = self._advance([state], [idx], [self.hparams(None)])
            state, metrics = lanes[0], means[0]
        elif self.strategy == "sequential":
            members = _unstack(state, n)
            outs = [self._advance([m], [idx[s]], [self.hparams(s)]) for s, m in enumerate(members)]
            state = _stack([o[0][0] for o in outs])
            metrics = _stack([o[1][0] for o in outs])
        else:
            hps = [self.hparams(s) for s in range(n)]
            members, means = self._advance(_unstack(state, n), list(idx), hps)
            state, metrics = _stack(members), _stack(means)
        host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        if not np.all(np.isfinite(host["loss"])):
            bad = [self.seeds[i] for i in np.flatnonzero(~np.isfinite(host["loss"]))]
            raise NonFiniteLossError(f"non-finite training loss in epoch {epoch} for seeds {bad}")
        return state, host

    def hparams(self, member: int | None) -> Any:
        """The step's hyper-parameter argument for one member (``None``: the stacked lane).

        An ensemble's members share their class weights; a population overrides this.
        """
        return self.class_weights

    def _advance(
        self, lanes: list[TrainState], lane_idx: list[np.ndarray], hps: list[Any]
    ) -> tuple[list[TrainState], list[dict[str, jax.Array]]]:
        """Step every lane through its indices ``(..., steps, batch)``, interleaved per call.

        A lane is the stacked state (vmap, wide, unrolled) or one member (loop); ``scan``
        dispatch runs ``scan_k`` steps per call and single steps for the remainder; ``flat``
        packs each lane once for the epoch, steps it packed and unpacks it at the end. Metrics
        stay on the device until the epoch ends (no host sync inside the epoch).
        """
        if self.dispatch == "flat":
            pack, step, unpack = self._packed(lanes[0])
            packed, means = self._steps([pack(lane) for lane in lanes], lane_idx, hps, step, 0)
            return [unpack(p) for p in packed], means
        k = self.scan_k if self.dispatch == "scan" else 0
        return self._steps(lanes, lane_idx, hps, self._step, k)

    def _steps(
        self, lanes: list[Any], lane_idx: list[np.ndarray], hps: list[Any], step: Any, k: int
    ) -> tuple[list[Any], list[dict[str, jax.Array]]]:
        """The epoch's calls of :meth:`_advance`: ``step`` per step, or ``scan`` per ``k``."""
        total = lane_idx[0].shape[-2]
        parts: list[tuple[list[Any], list[Any]]] = [([], []) for _ in lanes]
        pos = 0
        while pos < total:
            chunk = k > 0 and pos + k <= total
            for i, idx in enumerate(lane_idx):
                if chunk:
                    lanes[i], m = self._scan(
                        lanes[i], idx[..., pos : pos + k, :], self.data, hps[i]
                    )
                    parts[i][1].append(m)
                else:
                    lanes[i], m = step(lanes[i], idx[..., pos, :], self.data, hps[i])
                    parts[i][0].append(m)
            pos += k if chunk else 1
        return lanes, [_mean_metrics(steps, chunks, total) for steps, chunks in parts]

    def _packed(self, lane: TrainState) -> tuple[Any, Any, Any]:
        """The ``(pack, step, unpack)`` programs of the ``flat`` dispatch; a lane's layout never
        changes within an ensemble, so it is worked out (traced) once, on the first lane."""
        if self._flat_programs is None:
            self._flat_programs = lane_programs(
                self._flat_step, lane, lead=1 if self.stacked else 0
            )
        return self._flat_programs

    def predict(self, state: TrainState, split: data_lib.BeatData) -> np.ndarray:
        """Per-seed class probabilities ``(S, N, C)`` on a split, in fixed-size chunks; with
        ``data.adapt_norm`` ``record`` or ``normal`` each record under batch-norm statistics
        of its own beats or of those it calls N (``data.adapt_rounds`` passes, beats with an
        N probability of at least ``data.adapt_min_prob``; :mod:`ecgjax.training.adapt`).
        With ``data.tta_shift`` k > 0 every pass is the mean over the beats rolled by -k, 0, +k.

        Raises:
            DataError: record adaptation is on and the split has no record of each beat.
        """
        state = inference_state(state)  # optim.weight_ema: the average predicts
        if str(self.config.data.adapt_norm) == "none" or len(split) == 0:
            return self._predict_split(state, split)
        if split.record is None:
            raise data_lib.DataError(
                f"{split.source}: data.adapt_norm={self.config.data.adapt_norm!r} needs the "
                "record of each beat (a 'record' column); prepare the data with "
                "scripts/prepare_data.py or evaluate with --adapt_norm=none"
            )
        normal_only = str(self.config.data.adapt_norm) == "normal"
        n_index = list(self.config.data.class_names).index("N") if normal_only else -1
        rounds = int(self.config.data.get("adapt_rounds", 1)) if normal_only else 1
        min_prob = float(self.config.data.get("adapt_min_prob", 0.0))
        out = np.zeros((len(self.seeds), len(split), self.num_classes))
        for rows in _records_of(split):
            part = split.subset(rows)
            if not normal_only:
                adapted = state.replace(batch_stats=self.record_stats(state, part))
                out[:, rows] = self._predict_split(adapted, part)
                continue
            # Statistics of the beats the ensemble calls N: first unadapted, then (with
            # data.adapt_rounds > 1) as the last adapted pass calls them.
            probs = self._predict_split(state, part)
            for _ in range(rounds):
                normal = adapt_lib.called_normal(probs.mean(0), n_index, min_prob)
                if len(normal) < adapt_lib.MIN_NORMAL_BEATS:
                    break  # too few: the last prediction stands (the first: training statistics)
                adapted = state.replace(batch_stats=self.record_stats(state, part.subset(normal)))
                probs = self._predict_split(adapted, part)
            out[:, rows] = probs
        return out

    def record_stats(self, state: TrainState, split: data_lib.BeatData) -> Any:
        """Every member's batch-norm statistics over ``split`` (one record's beats), stacked like
        ``state.batch_stats``; from at most ``adapt.ADAPT_BEATS`` beats spread over it."""
        if self._stats is None:
            self._stats = adapt_lib.stats_program(self.model)
        rows = adapt_lib.spread_rows(len(split))
        dev = to_device(split.subset(rows), self.use_context)
        size = adapt_lib.bucket(len(rows))
        x = _pad_to(dev.x, size)
        ctx = None if dev.context is None else _pad_to(dev.context, size)
        mask = jnp.arange(size) < len(rows)
        members = zip(
            _unstack(state.params, len(self.seeds)),
            _unstack(state.batch_stats, len(self.seeds)),
            strict=True,
        )
        return _stack([self._stats(p, b, x, ctx, mask) for p, b in members])

    def _predict_split(self, state: TrainState, split: data_lib.BeatData) -> np.ndarray:
        dev = to_device(split, self.use_context)
        n = int(dev.y.shape[0])
        # Small splits (a record's beats) pad to a power of two: a few compiled sizes, not one
        # per record (padded rows are dropped; inference-mode outputs are per example).
        chunk = min(int(self.config.train.eval_batch_size), adapt_lib.bucket(n))
        vmapped = self.strategy in ("vmap", "wide")
        params = [] if vmapped else _unstack(state.params, len(self.seeds))
        stats = [] if vmapped else _unstack(state.batch_stats, len(self.seeds))
        k = int(self.config.data.get("tta_shift", 0))
        shifts = (-k, 0, k) if k else (0,)

        def one_pass(x: jax.Array, ctx: jax.Array | None) -> jax.Array:
            if vmapped:
                return self._predict(state.params, state.batch_stats, x, ctx)
            return jnp.stack(
                [self._predict(p, b, x, ctx) for p, b in zip(params, stats, strict=True)]
            )

        out = []
        for start in range(0, n, chunk):
            x = _pad_to(dev.x[start : start + chunk], chunk)
            ctx = (
                None if dev.context is None else _pad_to(dev.context[start : start + chunk], chunk)
            )
            # data.tta_shift: the mean over rolled copies (a roll of 0 is the beat itself).
            passes = [one_pass(jnp.roll(x, s, axis=1) if s else x, ctx) for s in shifts]
            probs = passes[0] if len(passes) == 1 else jnp.mean(jnp.stack(passes), axis=0)
            out.append(np.asarray(probs)[:, : min(chunk, n - start)])
        if not out:
            return np.zeros((len(self.seeds), 0, self.num_classes))
        return np.concatenate(out, axis=1)

    def program_memory(self, state: TrainState) -> int | None:
        """Compile the programs an epoch calls (if not yet) and return the bytes XLA plans for
        the largest, plus the members a loop keeps idle meanwhile; ``None`` where the backend
        gives no memory analysis. The benchmark times this call as the compile time."""
        k = self.scan_k
        idx = np.zeros((len(self.seeds), k, self.batch_size), np.int32)
        lane = state if self.stacked else jax.tree.map(lambda a: a[0], state)
        lane_idx = idx if self.stacked else idx[0]
        calls = []
        if self.dispatch == "flat":
            pack, step, unpack = self._packed(lane)
            lane = pack(lane)
            jax.block_until_ready(unpack(lane))  # compiles the epoch's closing program too
            calls.append((step, lane_idx[..., 0, :]))
        elif self.dispatch == "python" or self.steps % k:
            calls.append((self._step, lane_idx[..., 0, :]))
        if self.dispatch == "scan" and self.steps >= k:
            calls.append((self._scan, lane_idx))
        hp = self.hparams(None if self.stacked else 0)
        sizes = [planned_bytes(fn, lane, i, self.data, hp) for fn, i in calls]
        known = [size for size in sizes if size is not None]
        if len(known) < len(sizes):
            return None
        idle = 0 if self.stacked else _nbytes(lane) * (len(self.seeds) - 1)
        return max(known) + idle


@functools.lru_cache(maxsize=16)
def _indices_program(n: int, steps: int, batch: int, member_probs: bool = False) -> Any:
    """Per-seed epoch indices ``(S, steps, batch)``, jitted once per data size and shape
    (``member_probs``: each member samples with its own probabilities, a population's)."""
    return jax.jit(
        jax.vmap(
            lambda key, epoch, probs: epoch_indices(key, epoch, n, steps, batch, probs),
            in_axes=(0, None, 0 if member_probs else None),
        )
    )


def _records_of(split: data_lib.BeatData) -> list[np.ndarray]:
    """Each record's rows in time order (file order where the split has no R-peak samples)."""
    assert split.record is not None
    sample = split.sample if split.sample is not None else np.arange(len(split))
    return record_groups(split.record, sample)


def _train_records(train: data_lib.BeatData, setting: str) -> np.ndarray:
    """The training beats' records, for a sampling ``setting`` that reads them (a clear error
    naming the file and the setting where the file has none)."""
    if train.record is None:
        raise data_lib.DataError(
            f"{train.source}: {setting} samples by patient and needs a 'record' column; "
            "prepare the data with scripts/prepare_data.py"
        )
    return train.record


def _record_rows(train: data_lib.BeatData) -> tuple[jax.Array, jax.Array]:
    """Each record's rows, padded into a ``(records, longest)`` table, and their counts."""
    _train_records(train, "sampling.name='record'")
    groups = _records_of(train)
    table = np.zeros((len(groups), max(len(g) for g in groups)), np.int32)
    for r, g in enumerate(groups):
        table[r, : len(g)] = g
    counts = np.array([len(g) for g in groups], np.int32)
    return jnp.asarray(table), jnp.asarray(counts)


def _record_indices_program(steps: int, batch: int) -> Any:
    """Per-seed epoch indices ``(S, steps, batch)``, every batch from one record."""
    return jax.jit(
        jax.vmap(
            lambda key, epoch, rc: record_epoch_indices(key, epoch, rc[0], rc[1], steps, batch),
            in_axes=(0, None, None),
        )
    )


def _mean_metrics(steps: list[Any], chunks: list[Any], total: int) -> dict[str, jax.Array]:
    """Mean over an epoch of per-step metrics (``(...)``) and scan chunks (``(..., k)``)."""
    keys = (steps or chunks)[0].keys()
    out = {}
    for key in keys:
        acc = jnp.stack([m[key] for m in steps]).sum(0) if steps else jnp.zeros(())
        if chunks:
            acc = acc + jnp.concatenate([m[key] for m in chunks], axis=-1).sum(-1)
        out[key] = acc / total
    return out


def _nbytes(tree: Any) -> int:
    return sum(int(a.size) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def _placeholder(num_classes: int, context_dim: int | None, num_channels: int) -> data_lib.BeatData:
    """A one-batch stand-in for the training split of an inference-only ensemble."""
    y = np.arange(num_classes, dtype=np.int32)
    ctx = None if context_dim is None else np.zeros((num_classes, context_dim), np.float32)
    x = np.zeros((num_classes, data_lib.FEATURE_LEN), np.float32)
    inputs = None if num_channels == 1 else np.zeros((*x.shape, num_channels), np.float32)
    return data_lib.BeatData(
        x=x, y=y, num_classes=num_classes, source="(inference only)", context=ctx, inputs=inputs
    )


def _unstack(tree: Any, n: int) -> list[Any]:
    return [jax.tree.map(lambda a, s=s: a[s], tree) for s in range(n)]


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _pad_to(a: jax.Array, size: int) -> jax.Array:
    if a.shape[0] == size:
        return a
    pad = [(0, size - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad)
