"""The pure training core: a train state pytree and module-level step functions.

Nothing here is jitted or vmapped: ``ecgjax.training.engine`` applies ``jit``/``vmap``/``scan`` once,
where the steps are called, and picks the combination per backend. Data arrays live on the
device for the whole run; a step receives batch *indices* and gathers the beats itself, so
each seed can see its own shuffled order without copying data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int

from ecgjax.data.augment import augment_batch, drop_channels
from ecgjax.models.common import input_statistics
from ecgjax.models.rates import traced_dropout
from ecgjax.training.wide import convs_as_matmuls


class TrainState(flax.struct.PyTreeNode):
    """Everything one model (one seed) needs to continue training; a leading axis stacks seeds."""

    step: Int[Array, ""]
    params: Any
    batch_stats: Any
    opt_state: Any
    key: Array  # raw uint32 key (jax.random.PRNGKey) so Orbax saves it as a plain array
    # optim.weight_ema: the running average of ``params`` and ``batch_stats`` that predictions
    # use (:func:`inference_state`); None when off, so the state saves as it always did.
    average: Any = None


class DeviceData(flax.struct.PyTreeNode):
    """A split put on the device once: beats ``(N, 192, C)``, labels, optional RR context, and
    (for ``model.patient_adversary``) each training beat's patient as an index."""

    x: Float[Array, "n 192 c"]
    y: Int[Array, " n"]
    context: Float[Array, "n f"] | None
    record: Int[Array, " n"] | None = None


@dataclass(frozen=True)
class StepFns:
    """The static pieces a step closes over (shapes and code, never tuned floats).

    ``wide`` computes convolutions as im2col + matmul (:mod:`ecgjax.training.wide`): the same numbers,
    but a vmap over seeds then gives batched matmuls instead of grouped convolutions.
    """

    model: nn.Module
    tx: optax.GradientTransformation
    loss_fn: Callable[..., Array]  # (logits, labels, class_weights, traced)
    augment_cfg: ml_collections.ConfigDict
    wide: bool = False
    # model.bn_stats='normal': batch norm's training statistics come from the batch's beats of
    # this class (-1: from every beat), as data.adapt_norm='normal' normalises at evaluation.
    norm_class: int = -1
    # augment.drop_channels: input channels zeroed together in a fraction of the training beats.
    drop_channels: tuple[int, ...] = ()
    drop_rate: float = 0.0
    # model.patient_adversary: the class whose beats train the patient adversary (-1: none).
    adversary_class: int = -1
    # optim.sam_rho: sharpness-aware minimisation's radius (0: plain gradient, one pass).
    sam_rho: float = 0.0
    # optim.weight_ema: decay of the weight average predictions use (0: off, the last weights).
    weight_ema: float = 0.0
    # The ``flat`` dispatch (ecgjax.training.packing): the optimizer state's params-shaped parts
    # (Adam's moments) are single vectors and the update runs on the raveled gradient.
    flat_optimizer: bool = False


def create_train_state(
    key: Array,
    model: nn.Module,
    tx: optax.GradientTransformation,
    context_dim: int,
    num_channels: int = 1,
    average: bool = False,
) -> TrainState:
    """Initialise one seed; ``jax.vmap`` over ``key`` builds the ensemble. ``average`` starts
    the weight average (``optim.weight_ema``) at the initial weights."""
    init_key, state_key = jax.random.split(key)
    x = jnp.zeros((1, 192, num_channels), jnp.float32)
    ctx = jnp.zeros((1, context_dim), jnp.float32) if context_dim else None
    variables = model.init({"params": init_key, "dropout": init_key}, x, ctx, train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        key=state_key,
        average={"params": params, "batch_stats": batch_stats} if average else None,
    )


def inference_state(state: TrainState) -> TrainState:
    """The state predictions use: the weight average's params and statistics where
    ``optim.weight_ema`` keeps one, else ``state`` itself."""
    if state.average is None:
        return state
    return state.replace(params=state.average["params"], batch_stats=state.average["batch_stats"])


def _gather(data: DeviceData, idx: Array) -> tuple[Array, Array, Array | None]:
    ctx = None if data.context is None else data.context[idx]
    return data.x[idx], data.y[idx], ctx


def split_hparams(hp: Array | Mapping[str, Any]) -> tuple[Array, dict[str, Any]]:
    """``(class_weights, traced)`` from a step's hyper-parameter argument.

    An ensemble passes its class weights alone; a population passes a dict of one member's
    traced values (``class_weights``, ``dropout_keep``, ``rr_beat_dropout_keep``,
    ``label_smoothing``, ``focal_gamma``, ``augment``), see :mod:`ecgjax.training.population`.
    """
    if isinstance(hp, Mapping):
        traced = dict(hp)
        return traced.pop("class_weights"), traced
    return hp, {}


MIN_NORMAL_IN_BATCH = 8  # model.bn_stats='normal': fewer labelled N beats use the whole batch


def normal_stats_mask(y: Array, norm_class: int) -> Array | None:
    """Which beats of a training batch give batch norm its statistics (``model.bn_stats``):
    ``None`` (all, plain batch norm) when ``norm_class < 0``; else the beats labelled
    ``norm_class``, or all of them when the batch holds fewer than
    :data:`MIN_NORMAL_IN_BATCH` such beats (a record's run of ectopic beats)."""
    if norm_class < 0:
        return None
    normal = y == norm_class
    return jnp.where(normal.sum() >= MIN_NORMAL_IN_BATCH, normal, jnp.ones_like(normal))


def train_step(
    state: TrainState,
    idx: Int[Array, " batch"],
    data: DeviceData,
    class_weights: Array | Mapping[str, Any],
    fns: StepFns,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer step on the beats ``data[idx]``; returns the new state and the batch loss.

    ``class_weights`` may be a population member's dict of traced values (:func:`split_hparams`).
    """
    class_weights, traced = split_hparams(class_weights)
    keep = {k[: -len("_keep")]: v for k, v in traced.items() if k.endswith("_keep")}
    step_key = jax.random.fold_in(state.key, state.step)
    dropout_key, augment_key = jax.random.split(step_key)
    x, y, ctx = _gather(data, idx)
    x = augment_batch(augment_key, x, fns.augment_cfg, traced.get("augment"))
    if fns.drop_channels:  # its own key: runs without it draw as before
        x = drop_channels(jax.random.fold_in(step_key, 11), x, fns.drop_channels, fns.drop_rate)

    stats_mask = normal_stats_mask(y, fns.norm_class)
    adversary = fns.adversary_class >= 0
    if adversary and data.record is None:
        raise ValueError("model.patient_adversary needs the training beats' records on device")

    def loss_of(params: Any) -> tuple[Array, tuple[Any, Array, Array]]:
        variables = {"params": params, "batch_stats": state.batch_stats}
        own_stats = (  # made per pass: a second (SAM) pass enters it again
            contextlib.nullcontext() if stats_mask is None else input_statistics(stats_mask)
        )
        with convs_as_matmuls(fns.wide), traced_dropout(keep), own_stats:
            logits, updates = fns.model.apply(
                variables,
                x,
                ctx,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats", "intermediates"] if adversary else ["batch_stats"],
            )
        loss = fns.loss_fn(logits, y, class_weights, traced)
        if not adversary:
            return loss, (updates, logits, loss)
        assert data.record is not None
        patients = updates["intermediates"]["patient_logits"][0]
        return loss + patient_loss(patients, data.record[idx], y == fns.adversary_class), (
            updates,
            logits,
            loss,
        )

    (_, (updates, logits, loss)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    if fns.sam_rho > 0:
        grads = jax.grad(lambda p: loss_of(p)[0])(sam_point(state.params, grads, fns.sam_rho))
    if fns.flat_optimizer:  # one fused update over one vector instead of one per array
        flat_params, unravel = ravel_pytree(state.params)
        flat_updates, opt_state = fns.tx.update(
            ravel_pytree(grads)[0], state.opt_state, flat_params
        )
        params = unravel(optax.apply_updates(flat_params, flat_updates))
    else:
        param_updates, opt_state = fns.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, param_updates)
    batch_stats = updates.get("batch_stats", state.batch_stats)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        average=weight_average(
            state.average, {"params": params, "batch_stats": batch_stats}, state.step, fns
        ),
    )
    correct = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
    return new_state, {"loss": loss, "accuracy": correct}


def weight_average(average: Any, current: Any, step: Array, fns: StepFns) -> Any:
    """The bias-corrected exponential moving average after one more update (as
    ``optax.ema(decay, debias=True)``: update ``n = step + 1`` weighs the weights of update
    ``k`` by ``(1 - d) d^(n-k) / (1 - d^n)``); ``None`` when off.

    Why: an average of the weights along the last stretch of training sits in a flatter region
    than any one of them (SWA, Izmailov et al. 2018; SWAD, Cha et al. 2021), which is what
    shifted data such as new patients is found to reward, at no extra gradient pass. The
    batch-norm running statistics are averaged alongside the weights they were collected with.
    """
    if average is None:  # optim.weight_ema off: create_train_state made none
        return None
    d = jnp.float32(fns.weight_ema)
    t = step.astype(jnp.float32)  # updates before this one
    # The debiased average's own recursion: a_n = b a_(n-1) + (1 - b) w_n, b = 0 at the first.
    decay = d * (1.0 - d**t) / (1.0 - d ** (t + 1.0))
    return jax.tree.map(lambda a, c: decay * a + (1.0 - decay) * c, average, current)


def sam_point(params: Any, grads: Any, rho: float) -> Any:
    """``params`` moved ``rho`` along the normalised gradient: the nearby point whose gradient
    sharpness-aware minimisation (Foret et al. 2021) steps with.

    Why: a minimum that stays low within a radius of the weights is flat, and flat minima are
    the ones found to carry over to shifted data (new patients). The second pass reuses the first
    pass's dropout and augmentation draws; batch-norm statistics come from the first pass.
    """
    norm = optax.global_norm(grads)
    scale = rho / (norm + 1e-12)
    return jax.tree.map(lambda p, g: p + scale * g.astype(p.dtype), params, grads)


def patient_loss(
    logits: Float[Array, "batch patients"], patient: Int[Array, " batch"], mask: Array
) -> Array:
    """Mean cross-entropy of the patient adversary over the beats in ``mask`` (0 when none).

    Its gradient reaches the encoder reversed (:func:`ecgjax.models.classifier.reverse_gradient`);
    the reported training loss stays the class loss alone.
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, patient)
    weight = mask.astype(ce.dtype)
    return jnp.sum(ce * weight) / jnp.maximum(weight.sum(), 1.0)


def scan_steps(
    state: TrainState,
    idx: Int[Array, "k batch"],
    data: DeviceData,
    class_weights: Array | Mapping[str, Any],
    fns: StepFns,
) -> tuple[TrainState, dict[str, Array]]:
    """``k`` steps in one ``lax.scan`` (fewer dispatches; wins on GPUs, loses on XLA:CPU convs)."""

    def body(carry: TrainState, batch_idx: Array) -> tuple[TrainState, dict[str, Array]]:
        return train_step(carry, batch_idx, data, class_weights, fns)

    return jax.lax.scan(body, state, idx)


def predict_probs(
    params: Any,
    batch_stats: Any,
    x: Float[Array, "b 192 1"],
    ctx: Array | None,
    model: nn.Module,
    wide: bool = False,
) -> Float[Array, "b c"]:
    """Class probabilities of one model in inference mode (``wide``: see :class:`StepFns`)."""
    with convs_as_matmuls(wide):
        logits = model.apply({"params": params, "batch_stats": batch_stats}, x, ctx, train=False)
    return jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)


def record_epoch_indices(
    key: Array,
    epoch: Int[Array, ""],
    rows: Int[Array, "r l"],
    counts: Int[Array, " r"],
    steps: int,
    batch: int,
) -> Int[Array, "steps batch"]:
    """Batch indices of one epoch in which every batch comes from one record (``rows[r, :counts[r]]``
    are record ``r``'s beats), a pure function of ``(key, epoch)``.

    The record of each step is drawn in proportion to its beats (so each beat is as likely as
    under uniform sampling) and its beats uniformly with replacement: batch norm then trains on
    one patient's statistics at a time, which is what record adaptation
    (``data.adapt_norm``) gives it on a new patient.
    """
    epoch_key = jax.random.fold_in(jax.random.fold_in(key, 7919), epoch)
    k_record, k_beat = jax.random.split(epoch_key)
    p = counts.astype(jnp.float32) / jnp.sum(counts)
    record = jax.random.choice(k_record, counts.shape[0], (steps,), replace=True, p=p)
    u = jax.random.uniform(k_beat, (steps, batch))
    pos = jnp.minimum((u * counts[record][:, None]).astype(jnp.int32), counts[record][:, None] - 1)
    return rows[record[:, None], pos].astype(jnp.int32)


def epoch_indices(
    key: Array, epoch: Int[Array, ""], n: int, steps: int, batch: int, probs: Array | None
) -> Int[Array, "steps batch"]:
    """Batch indices of one epoch for one seed, a pure function of ``(key, epoch)``.

    Uniform sampling walks a fresh permutation (repeating it when ``steps*batch > n``);
    class-balanced sampling draws with replacement from per-beat probabilities.
    """
    epoch_key = jax.random.fold_in(jax.random.fold_in(key, 7919), epoch)
    total = steps * batch
    if probs is not None:
        flat = jax.random.choice(epoch_key, n, (total,), replace=True, p=probs)
    else:
        reps = -(-total // n)
        perms = [jax.random.permutation(jax.random.fold_in(epoch_key, r), n) for r in range(reps)]
        flat = jnp.concatenate(perms)[:total]
    return flat.reshape(steps, batch).astype(jnp.int32)
