"""One ensemble run: epochs, validation, early stopping, plateau, checkpoints, hooks.

Used by ``scripts/train.py`` directly and by the Ray Tune trainable. Metrics leave the
device once per epoch and go to the hooks (MLflow, Ray, the progress bar); this module never
imports a tracker, so data flows one way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import inputs
from ecgjax.data.rr import RR_FEATURES, rr_features
from ecgjax.scoring import af_gate, clusters
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.training import checkpoint as ckpt
from ecgjax.training.engine import Ensemble
from ecgjax.training.optim import get_hyperparams, set_hyperparams
from ecgjax.training.step import TrainState

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    """What one epoch produced; ``metrics`` are flat floats ready for any logger."""

    epoch: int
    metrics: dict[str, float]
    val_report: dict[str, Any]
    is_best: bool
    state: TrainState
    progress: dict[str, Any]


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_early: bool
    strategy: str
    dispatch: str
    history: list[dict[str, float]] = field(default_factory=list)
    test_report: dict[str, Any] | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    test_probs: np.ndarray | None = None  # (seeds, beats, classes) of the best epoch
    val_probs: np.ndarray | None = None  # the same on the validation split (out-of-fold in CV)


Hook = Callable[[EpochResult], None]


def seeds_of(config: ml_collections.ConfigDict) -> list[int]:
    """Member k trains with ``PRNGKey(config.seed + k)``."""
    return [int(config.seed) + k for k in range(int(config.train.num_seeds))]


def select_key(config: ml_collections.ConfigDict) -> str:
    return f"val/{config.train.select_metric}"


def run_metadata(
    config: ml_collections.ConfigDict, splits: data_lib.Splits, ens: Ensemble
) -> dict[str, Any]:
    """What evaluation needs besides the config: class names, seeds, data provenance."""
    return {
        "class_names": list(config.data.class_names),
        "num_classes": int(config.data.num_classes),
        "model": config.model.name,
        "seeds": ens.seeds,
        "context_dim": ens.context_dim,
        "strategy": ens.strategy,
        "dispatch": ens.dispatch,
        "backend": jax.default_backend(),
        "data": {
            "train": splits.train.source,
            "test": splits.test.source,
            "n_train": len(splits.train),
            "n_val": len(splits.val),
            "n_test": len(splits.test),
            "manifest": _manifest(),
        },
    }


def _manifest() -> dict[str, Any] | None:
    """The prepared data's manifest (source checksums, parameters), if the data was prepared."""
    path = paths.data_dir() / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class TrainingRun:
    """One ensemble's training, an epoch at a time.

    :func:`run_training` steps one to the end; a cross-validated Tune trial steps k of them
    in turn (epoch e of every fold, then a report). Construction restores or initialises the
    state; :meth:`close` must run before :meth:`result`.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        splits: data_lib.Splits,
        run_dir: Path,
        *,
        resume: bool = False,
        checkpoints: bool = True,
        restore_from: Path | None = None,
    ) -> None:
        self.config = config
        self.splits = splits
        self.run_dir = Path(run_dir)
        self.ens = Ensemble(config, splits.train, seeds_of(config))
        self.names = list(config.data.class_names)
        self.saver = ckpt.RunCheckpointer(self.run_dir) if checkpoints else None
        if self.saver is not None:
            ckpt.write_run_files(
                self.run_dir, config_lib.to_json(config), run_metadata(config, splits, self.ens)
            )
        try:
            self.state, self.progress = _start(self.ens, self.saver, resume, restore_from)
        except BaseException:
            self.close()  # no checkpoint writer left running behind a failed restore
            raise
        if restore_from is not None:
            self.state = self.state.replace(
                opt_state=set_hyperparams(
                    self.state.opt_state,
                    learning_rate=float(config.optim.learning_rate),
                    weight_decay=float(config.optim.weight_decay),
                )
            )
        self.best_host: Any = None
        self.best_val_probs: np.ndarray | None = None
        self.last_val_probs: np.ndarray | None = None

    @property
    def stopped_early(self) -> bool:
        patience = int(self.config.train.early_stop_patience)
        return bool(patience and self.progress["since_best"] >= patience)

    @property
    def done(self) -> bool:
        return int(self.progress["epoch"]) >= int(self.config.train.epochs) or self.stopped_early

    def step(self) -> EpochResult:
        """Train the next epoch, validate, keep the best, checkpoint."""
        epoch = int(self.progress["epoch"]) + 1
        progress, splits = self.progress, self.splits
        state, train_m = self.ens.train_epoch(self.state, epoch)
        val_probs = self.ens.predict(state, splits.val)
        report = metrics_lib.ensemble_report(val_probs, splits.val.y, self.ens.num_classes)
        flat = metrics_lib.flat_metrics(report, "val", self.names)
        lrs = np.asarray(get_hyperparams(state.opt_state)["learning_rate"])
        flat.update(_train_metrics(train_m, lrs))
        value = flat[select_key(self.config)]
        is_best = progress["best_epoch"] == 0 or value > progress["best_metric"]
        if is_best:
            progress.update(best_metric=value, best_epoch=epoch, since_best=0)
            self.best_host = jax.device_get(state)
            self.best_val_probs = val_probs
        else:
            progress["since_best"] += 1
        self.last_val_probs = val_probs
        state = _plateau(self.config, state, flat, progress)
        progress["epoch"] = epoch
        progress["history"].append({"epoch": epoch, **flat})
        if self.saver is not None:
            self.saver.save(epoch, state, progress, is_best=is_best)
        self.state = state
        if self.stopped_early:
            log.info("early stop at epoch %d (best %d)", epoch, progress["best_epoch"])
        return EpochResult(epoch, flat, report, is_best, state, progress)

    def close(self) -> None:
        """Wait for and close the checkpoint writers."""
        if self.saver is not None:
            self.saver.close()

    def result(
        self, evaluate_test: bool, keep_val_probs: bool = False, val_epoch: str = "best"
    ) -> RunResult:
        """The run's summary; ``evaluate_test`` predicts the test split with the best state,
        ``keep_val_probs`` keeps the validation probabilities of the ``val_epoch`` (``best`` or
        ``last``) epoch (cross-validation pools them; a run resumed after that epoch predicts
        them again from its checkpoint)."""
        progress = self.progress
        out = RunResult(
            run_dir=self.run_dir,
            best_epoch=int(progress["best_epoch"]),
            best_metric=float(progress["best_metric"]),
            epochs_run=int(progress["epoch"]),
            stopped_early=self.stopped_early,
            strategy=self.ens.strategy,
            dispatch=self.ens.dispatch,
            history=list(progress["history"]),
        )
        ens, best = self.ens, self.best_host
        if keep_val_probs and val_epoch == "last":
            last = self.last_val_probs
            out.val_probs = last if last is not None else ens.predict(self.state, self.splits.val)
        elif keep_val_probs and self.best_val_probs is not None:
            out.val_probs = self.best_val_probs
        elif keep_val_probs and len(
            self.splits.val.y
        ):  # resumed after the best epoch: predict with its checkpoint
            best = _restore_best(ens, self.run_dir, self.state)
            out.val_probs = ens.predict(best, self.splits.val)
        if evaluate_test:
            test = self.splits.test
            best_state = best if best is not None else _restore_best(ens, self.run_dir, self.state)
            out.test_probs = postprocess(self.config, test, ens.predict(best_state, test))
            out.test_report = metrics_lib.ensemble_report(out.test_probs, test.y, ens.num_classes)
            out.test_metrics = metrics_lib.flat_metrics(out.test_report, "test", self.names)
        return out


def apply_af_gate(
    settings: af_gate.GateSettings,
    probs: np.ndarray,
    x: np.ndarray,
    record: np.ndarray | None,
    sample: np.ndarray | None,
    names: list[str],
    source: str,
) -> np.ndarray:
    """The rhythm gates on S (the AF gate, the prematurity gate) on ``probs`` for these beats
    (a split's, or a CV pool's), with each beat's P-wave correlation computed when the P-wave
    test is on and its ``ratio_prev_record`` when the prematurity gate is.

    Raises:
        ValueError: a gate is on and a needed column is missing, or positions are bad.
    """
    if not settings.active:
        return probs
    p_corr = prev_ratio = None
    if record is not None and sample is not None:
        if settings.uses_p_waves:
            p_corr = inputs.p_wave_correlations(x, record, sample)[:, 0]
        if settings.prematurity > 0:
            rr = rr_features(record, sample, causal=settings.causal)
            prev_ratio = rr[:, RR_FEATURES.index("ratio_prev_record")]
    return af_gate.gate_ensemble(probs, sample, record, names, settings, source, p_corr, prev_ratio)


def label_free_steps(
    probs: np.ndarray,
    x: np.ndarray,
    record: np.ndarray | None,
    sample: np.ndarray | None,
    names: list[str],
    source: str,
    *,
    smoothing: float,
    k: int,
    gate: af_gate.GateSettings,
    sv_split: float,
) -> np.ndarray:
    """Cluster smoothing, the rhythm gates, then the S/V split on per-seed ``probs``, as
    :func:`postprocess` and the CV pool (:func:`ecgjax.training.crossval.pooled_probs`) both
    apply them; the record's shape clusters are made once for the two cluster steps.

    Raises:
        ValueError: a step is on and a needed column is missing, or positions are bad.
    """
    ids = None
    if smoothing > 0 or sv_split > 0:
        key = "data.cluster_smoothing" if smoothing > 0 else "data.sv_split"
        ids = clusters.ensemble_clusters(x, record, k, source, key)
    probs = clusters.smooth_ensemble(probs, x, record, names, smoothing, k, source, ids=ids)
    probs = apply_af_gate(gate, probs, x, record, sample, names, source)
    return clusters.split_ensemble(probs, x, record, names, sv_split, k, source, ids=ids)


def postprocess(
    config: ml_collections.ConfigDict, split: data_lib.BeatData, probs: np.ndarray
) -> np.ndarray:
    """The recipe's label-free post-processing of each seed's probabilities: the V/F evidence
    shared within the record's look-alike beats (``data.cluster_smoothing``,
    :mod:`ecgjax.scoring.clusters`), then S moved to N where the rhythm looks like atrial
    fibrillation (``data.af_gate``) and conditioned away where the beat is not premature
    (``data.prematurity_gate``; both :mod:`ecgjax.scoring.af_gate`), then each beat's split
    between S and V moved towards its cluster's (``data.sv_split``). Part of the prediction, so
    every evaluation of the checkpoint (the run's test table, evaluate, compare) applies it here."""
    try:
        return label_free_steps(
            probs,
            split.x,
            split.record,
            split.sample,
            list(config.data.class_names),
            split.source,
            smoothing=float(config.data.cluster_smoothing),
            k=int(config.data.cluster_k),
            gate=af_gate.GateSettings.from_config(config.data),
            sv_split=float(config.data.sv_split),
        )
    except ValueError as err:
        raise data_lib.DataError(str(err)) from None


def run_training(
    config: ml_collections.ConfigDict,
    splits: data_lib.Splits,
    run_dir: Path,
    *,
    hooks: Sequence[Hook] = (),
    resume: bool = False,
    evaluate_test: bool = True,
    checkpoints: bool = True,
    restore_from: Path | None = None,
    keep_val_probs: bool = False,
    val_epoch: str = "best",
) -> RunResult:
    """Train the ensemble described by ``config``; checkpoint into ``run_dir``.

    With ``resume`` and a saved latest state, training continues from the epoch after it, with
    the same data order and keys, so the result equals an uninterrupted run. ``restore_from``
    starts from another checkpoint folder instead (a Ray Tune checkpoint, possibly another
    trial's after a PBT exploit); its learning rate and weight decay are replaced by this
    config's, which is how PBT's perturbed values take effect without recompiling.
    """
    if evaluate_test and af_gate.GateSettings.from_config(config.data).active:
        _whole_test_records(splits)
    run = TrainingRun(
        config, splits, run_dir, resume=resume, checkpoints=checkpoints, restore_from=restore_from
    )
    try:
        while not run.done:
            result = run.step()
            for hook in hooks:
                hook(result)
    finally:
        run.close()
    return run.result(evaluate_test, keep_val_probs, val_epoch)


def _whole_test_records(splits: data_lib.Splits) -> None:
    """The rhythm gates (``data.af_gate``, ``data.prematurity_gate``) need every beat of each
    test record: refuse a beat-level split before training, not after it."""
    test, train = splits.test, splits.train
    if test.record is None or train.record is None:
        return  # postprocess names the missing column
    shared = set(np.asarray(test.record).astype(str)) & set(np.asarray(train.record).astype(str))
    partial = f"it shares {len(shared)} records with the training file" if shared else None
    try:
        af_gate.require_whole_records(test.source, partial)
    except ValueError as err:
        raise data_lib.DataError(str(err)) from None


def _start(
    ens: Ensemble, saver: ckpt.RunCheckpointer | None, resume: bool, restore_from: Path | None
) -> tuple[TrainState, dict[str, Any]]:
    fresh = {
        "epoch": 0,
        "best_metric": float("-inf"),
        "best_epoch": 0,
        "since_best": 0,
        "plateau_best": [float("-inf")] * len(ens.seeds),
        "plateau_wait": [0] * len(ens.seeds),
        "history": [],
    }
    if restore_from is not None:
        state, progress = ckpt.restore_dir(Path(restore_from), ens.abstract_state())
        log.info("starting from %s (epoch %d)", restore_from, progress["epoch"])
        return state, {**fresh, **progress}
    if resume and saver is not None and saver.latest_epoch() is not None:
        state, progress = saver.restore_latest(ens.abstract_state())
        log.info("resuming from epoch %d", progress["epoch"])
        return state, {**fresh, **progress}
    return ens.init(), fresh


def _restore_best(ens: Ensemble, run_dir: Path, fallback: TrainState) -> TrainState:
    """Best state of a resumed run (it was saved before the restart)."""
    try:
        return ckpt.restore_dir(run_dir / "best", ens.abstract_state())[0]
    except ckpt.CheckpointError:
        return fallback


def _train_metrics(train_m: dict[str, np.ndarray], lrs: np.ndarray) -> dict[str, float]:
    out = {
        "train/loss": float(train_m["loss"].mean()),
        "train/accuracy": float(train_m["accuracy"].mean()),
    }
    for k, (loss, lr) in enumerate(zip(train_m["loss"], lrs.reshape(-1), strict=True)):
        out[f"train/seed{k}/loss"] = float(loss)
        out[f"train/seed{k}/learning_rate"] = float(lr)
    out["train/learning_rate"] = float(lrs.mean())
    return out


def _plateau(
    config: ml_collections.ConfigDict,
    state: TrainState,
    flat: dict[str, float],
    progress: dict[str, Any],
) -> TrainState:
    """Reduce-on-plateau, per seed, as data: the learning rate array changes, nothing recompiles."""
    if config.optim.schedule != "plateau":
        return state
    lrs = np.array(get_hyperparams(state.opt_state)["learning_rate"], dtype=np.float32).reshape(-1)
    changed = False
    for k in range(lrs.shape[0]):
        value = flat[f"val/seed{k}/{config.train.select_metric}"]
        if value > progress["plateau_best"][k]:
            progress["plateau_best"][k] = value
            progress["plateau_wait"][k] = 0
            continue
        progress["plateau_wait"][k] += 1
        if progress["plateau_wait"][k] >= int(config.optim.plateau_patience):
            lrs[k] *= float(config.optim.plateau_factor)
            progress["plateau_wait"][k] = 0
            changed = True
    if not changed:
        return state
    return state.replace(opt_state=set_hyperparams(state.opt_state, learning_rate=lrs))
