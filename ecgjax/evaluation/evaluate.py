"""Evaluate a saved ensemble: restore it with Orbax, score it per seed and as an ensemble.

The checkpoint folder carries its own config and metadata, so an evaluation needs nothing but
the folder (or the MLflow run that points at it) and, optionally, another test file in the
seed's layout (e.g. the inter-patient DS2 file). Results go beside the checkpoint
(``<run>/evaluation/<name>.json`` and PNGs) and to the run's MLflow entry.

Every evaluation says which protocol its numbers come from: the evaluated records are checked
against the checkpoint's training file (:mod:`ecgjax.evaluation.patients`), and the AAMI statistics
(:mod:`ecgjax.scoring.aami`) carry the label "beat-level (patients seen in training)" or
"inter-patient (new patients)".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.data import inputs as inputs_lib
from ecgjax.evaluation import patients as patients_lib
from ecgjax.evaluation import plots as eval_plots
from ecgjax.evaluation.tracking import EVAL_EXPERIMENT, check_owner, log_evaluation
from ecgjax.evaluation.tracking import find_tracked_run as find_tracked_run  # re-exported
from ecgjax.scoring import aami, af_gate
from ecgjax.scoring import decision as decision_lib
from ecgjax.scoring import metrics as metrics_lib
from ecgjax.scoring import operating_point as op_lib
from ecgjax.tracking import Tracker
from ecgjax.training import checkpoint as ckpt
from ecgjax.training import rundir
from ecgjax.training.engine import Ensemble
from ecgjax.training.run import postprocess
from ecgjax.training.step import TrainState
from ecgjax.training.validate import validate

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Loaded:
    """A restored ensemble with everything needed to score it."""

    config: ml_collections.ConfigDict
    meta: dict[str, Any]
    ensemble: Ensemble
    state: TrainState
    run_dir: Path
    which: str
    epoch: int
    decision: dict[str, Any] | None = None  # class offsets (attach_decision), part of predict

    @property
    def finished(self) -> bool:
        """False while the run is training or after it was interrupted (its resume note)."""
        return not (self.run_dir / rundir.RESUME_NOTE).is_file()

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])


def resolve_source(source: str | Path) -> Path:
    """A checkpoint folder from a path, a run/sweep name under ``checkpoints/`` or an MLflow run id.

    A sweep folder (``checkpoints/<sweep_id>``) resolves to its ``best`` copy.
    """
    text = str(source)
    candidates = [Path(text), paths.checkpoints_dir() / text]
    for path in candidates:
        if path.is_dir():
            if not (path / "config.json").is_file() and (path / "best" / "config.json").is_file():
                return path / "best"
            return path
    if _RUN_ID.match(text):
        tracker = Tracker(EVAL_EXPERIMENT)
        try:
            run = tracker.client.get_run(text)
        except Exception as err:  # MLflow raises MlflowException subclasses for unknown ids
            raise ckpt.CheckpointError(f"MLflow run {text}: not found in {tracker.uri}") from err
        tags = run.data.tags
        folder = tags.get("ecgjax.checkpoint") or tags.get("ecgjax.run_dir")
        if not folder:
            raise ckpt.CheckpointError(f"MLflow run {text}: has no ecgjax.checkpoint tag")
        check_owner(tracker, run, folder)
        return Path(folder)
    raise ckpt.CheckpointError(
        f"{text}: no such checkpoint folder, sweep or MLflow run id "
        f"(looked for {candidates[0]} and {candidates[1]})"
    )


def load_ensemble(source: str | Path) -> Loaded:
    """Restore the ensemble of a run/trial folder (its ``best`` state when it has one).

    Raises:
        CheckpointError: the folder, its config/meta or the Orbax state is missing or damaged, or
            the state does not match the model the config describes.
    """
    # Orbax insists on absolute paths; users type relative ones.
    run_dir, which = ckpt.find_run_dir(resolve_source(source).resolve())
    config_json, meta = ckpt.read_run_files(run_dir)
    try:
        config = validate(config_lib.from_json(config_json))
        n = int(meta["num_classes"])
        if n != int(config.data.num_classes) or len(meta["class_names"]) != n:
            raise ValueError(
                f"meta.json says {meta['num_classes']} classes {meta['class_names']}, "
                f"config.json says {config.data.num_classes}"
            )
        ens = Ensemble(
            config, None, [int(s) for s in meta["seeds"]], context_dim=int(meta["context_dim"])
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ckpt.CheckpointError(
            f"{run_dir}: config.json/meta.json do not describe a model ({err})"
        ) from err
    state, progress = ckpt.restore_dir(run_dir / which, ens.abstract_state())
    return Loaded(config, meta, ens, state, run_dir, which, int(progress.get("epoch", 0)))


def _data_file(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else paths.data_dir() / path


def load_data(
    loaded: Loaded, data_path: str | Path | None = None
) -> tuple[data_lib.BeatData, data_lib.BeatData | None]:
    """``(test, val)``: the config's test and validation splits, or a whole parquet file as test.

    Whole files: a smoke config's ``data.max_eval`` does not apply here (:func:`sample_beats`
    takes a sample when asked, and the report names it).
    ``val`` (for the operating point) comes from the config's training file; it is ``None`` when
    that file is not here but another test file was given.

    Raises:
        DataError: unreadable file, labels outside the model's classes, or an RR-context model on a
            file without ``record``/``sample`` columns.
    """
    config = config_lib.with_overrides(loaded.config, {"data.max_eval": 0})
    try:
        splits: data_lib.Splits | None = data_lib.load_splits(config)
    except data_lib.DataError:
        if data_path is None:
            raise
        splits = None
    val = splits.val if splits is not None else None
    if data_path is None:
        assert splits is not None
        return splits.test, val
    path = Path(data_path)
    test = data_lib.load_parquet(path, loaded.num_classes)
    if config.model.rr_context:
        if test.context is None:
            raise data_lib.DataError(
                f"{path}: the model uses RR context (model.rr_context=True) but the file has no "
                "'record' and 'sample' columns to compute it from"
            )
        if path.resolve() == _data_file(config.data.test_file).resolve():
            # A beat-level split scatters records over train and test: RR needs both files.
            train = data_lib.load_parquet(_data_file(config.data.train_file), loaded.num_classes)
            test = data_lib.joint_context(train, test)[1]
    if not inputs_lib.is_plain(config.data):  # patient-adaptive channels (ecgjax.data.inputs)
        if path.resolve() == _data_file(config.data.test_file).resolve():
            train = data_lib.load_parquet(_data_file(config.data.train_file), loaded.num_classes)
            test = data_lib.attach_inputs(*data_lib.joint_context(train, test), config.data)[1]
        else:
            test = data_lib.with_inputs(test, config.data)
    if config.model.rr_context and test.context is not None:  # after any extra RR columns
        dim = int(loaded.meta["context_dim"])
        if test.context.shape[1] != dim:
            raise data_lib.DataError(
                f"{path}: {test.context.shape[1]} RR features, the model expects {dim}"
            )
    return test, val


def sample_beats(loaded: Loaded, split: data_lib.BeatData, max_beats: int) -> data_lib.BeatData:
    """A stratified sample of ``max_beats`` beats of ``split`` (all of them when it is smaller)."""
    if max_beats >= len(split):
        return split
    seed = int(loaded.config.data.split_seed)
    return split.subset(data_lib.stratified_subsample(split.y, max_beats, seed))


def predict(loaded: Loaded, split: data_lib.BeatData) -> np.ndarray:
    """Per-seed probabilities ``(S, N, C)``; the ensemble is their mean."""
    if split.num_classes != loaded.num_classes:
        raise data_lib.DataError(
            f"{split.source}: loaded for {split.num_classes} classes, "
            f"the model has {loaded.num_classes}"
        )
    if loaded.config.model.rr_context and split.context is None:
        raise data_lib.DataError(f"{split.source}: the model needs RR context; the data has none")
    probs = postprocess(loaded.config, split, loaded.ensemble.predict(loaded.state, split))
    if loaded.decision is not None:
        probs = decision_lib.apply(probs, loaded.decision["offset_list"])
    return probs


def attach_decision(loaded: Loaded, path: str | Path) -> None:
    """Decide with the class offsets of ``decision.json`` (``scripts/decision_study.py``).

    They were fitted on the out-of-fold pool of a CV of the training patients, under one
    cluster smoothing; applied to another training file or smoothing they mean nothing.

    Raises:
        DecisionError: unreadable file, or classes, training file or smoothing that differ.
    """
    d = decision_lib.load(path)
    data = loaded.config.data
    mine = {
        "class_names": loaded.class_names,
        "train_file": Path(str(data.train_file)).name,
        "cluster_smoothing": float(data.cluster_smoothing),
        "cluster_k": int(data.cluster_k) if float(data.cluster_smoothing) > 0 else None,
    }
    theirs = {
        "class_names": list(d["class_names"]),
        "train_file": d["train_file"],
        "cluster_smoothing": float(d["cluster_smoothing"]),
        "cluster_k": int(d["cluster_k"]) if float(d["cluster_smoothing"]) > 0 else None,
    }
    for key, value in mine.items():
        if theirs[key] != value:
            raise decision_lib.DecisionError(
                f"{d['path']}: fitted with {key}={theirs[key]!r}, the checkpoint "
                f"{loaded.run_dir} evaluates with {value!r}; refit it (scripts/decision_study.py)"
            )
    loaded.decision = d


def default_name(loaded: Loaded, data_path: str | Path | None) -> str:
    stem = Path(data_path).stem if data_path is not None else "test"
    return stem if loaded.which == "best" else f"{stem}_{loaded.which}"


def patients_of(loaded: Loaded, split: data_lib.BeatData) -> dict[str, Any]:
    """Seen or new patients: ``split``'s records against the checkpoint's training file."""
    train = patients_lib.training_file(loaded.meta)
    return patients_lib.overlap(train, split.source, split.record, split.sample)


def whole_records(
    split: data_lib.BeatData, patients: dict[str, Any], beats_in_file: int | None
) -> None:
    """The rhythm gates (``data.af_gate``, ``data.prematurity_gate``) need every beat of each
    evaluated record (DataError otherwise): a file sharing records with the checkpoint's
    training file, or a sample of it, is refused."""
    partial = None
    if patients["patients"] == patients_lib.SEEN:
        partial = "it shares records with the checkpoint's training file (a beat-level split)"
    elif beats_in_file is not None and beats_in_file > len(split):
        partial = f"only {len(split):,} of its {beats_in_file:,} beats are evaluated (--max_beats)"
    try:
        af_gate.require_whole_records(split.source, partial)
    except ValueError as err:
        raise data_lib.DataError(str(err)) from None


def evaluate(
    loaded: Loaded,
    split: data_lib.BeatData,
    *,
    name: str = "test",
    val: data_lib.BeatData | None = None,
    target_recall: float = 0.9,
    min_normal_recall: float = 0.95,
    n_boot: int = 1000,
    patients: dict[str, Any] | None = None,
    write: bool = True,
    log_mlflow: bool = True,
    beats_in_file: int | None = None,
) -> dict[str, Any]:
    """Score ``loaded`` on ``split``: per seed, seed mean/std/worst and ensemble, plus figures.

    With ``val``, a recall-first operating point is fitted there (ensemble probabilities),
    keeping N recall >= ``min_normal_recall``, and compared with argmax on ``split``. The
    ``aami`` section holds the ensemble's gross, record-average and per-record Se/+P/FPR with
    ``n_boot`` record-bootstrap intervals (gross only for the seeds). ``patients`` is
    :func:`patients_of` (computed when not given). ``beats_in_file``: the file's size when
    ``split`` is a sample of it (``--max_beats``), for the title. Returns the report written to
    ``<run>/evaluation/<name>.json``.
    """
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ValueError(f"evaluation name {name!r}: use letters, digits, '_', '-' and '.' only")
    names = loaded.class_names
    patients = patients if patients is not None else patients_of(loaded, split)
    gate = af_gate.GateSettings.from_config(loaded.config.data)
    if gate.active:
        whole_records(split, patients, beats_in_file)
    probs = predict(loaded, split)
    protocol = patients["protocol"]
    section = aami.report(
        split.y, probs.mean(0), names, split.record, n_boot=n_boot, protocol=protocol
    )
    seeds = [aami.gross(aami.confusion(split.y, p.argmax(-1), len(names)), names) for p in probs]
    report: dict[str, Any] = {
        "name": name,
        "checkpoint": str(loaded.run_dir),
        "label": checkpoint_label(loaded.run_dir),
        "which": loaded.which,
        "epoch": loaded.epoch,
        "data": {
            "file": split.source,
            "n": len(split),
            "n_file": beats_in_file or len(split),
            "class_counts": data_lib.class_counts(split.y, loaded.num_classes).tolist(),
        },
        "class_names": names,
        "seeds": list(loaded.ensemble.seeds),
        "patients": patients["patients"],
        "protocol": protocol,
        "cluster_smoothing": float(loaded.config.data.cluster_smoothing),
        "af_gate": gate.enabled,
        "af_gate_pwave": gate.pwave_max if gate.enabled else 0.0,
        "af_gate_mode": gate.mode if gate.enabled else None,
        "prematurity_gate": gate.prematurity,
        "sv_split": float(loaded.config.data.get("sv_split", 0.0)),
        "adapt_norm": str(loaded.config.data.adapt_norm),
        "adapt_rounds": int(loaded.config.data.adapt_rounds),
        "adapt_min_prob": float(loaded.config.data.adapt_min_prob),
        "tta_shift": int(loaded.config.data.get("tta_shift", 0)),
        "decision": None
        if loaded.decision is None
        else {
            "file": loaded.decision["path"],
            "offsets": loaded.decision["offsets"],
            "adopted": bool(loaded.decision.get("adopted", True)),
            "fitted_on": loaded.decision["protocol"],
            "goals": loaded.decision["goals"],
        },
        "patient_overlap": patients,
        "metrics": metrics_lib.ensemble_report(probs, split.y, loaded.num_classes),
        "aami": {"ensemble": section, "seeds": seeds},
        "finished": loaded.finished,
        "warnings": _warnings(split, names, patients) + _unfinished(loaded),
        "operating_point": None,
    }
    if val is not None:
        point = op_lib.fit(
            predict(loaded, val).mean(0), val.y, target_recall, min_normal_recall=min_normal_recall
        )
        report["operating_point"] = op_lib.compare_on(probs.mean(0), split.y, point)
    if write:
        out = loaded.run_dir / "evaluation"
        figures = eval_plots.evaluation_pngs(report, probs.mean(0), split.y, out)
        report["figures"] = [str(p) for p in figures]
        ckpt.write_json_atomic(loaded.run_dir / "evaluation" / f"{name}.json", report)
    if log_mlflow:
        report["mlflow_run_id"] = log_evaluation(loaded, report)
    return report


def checkpoint_label(run_dir: Path) -> str:
    """``<run>`` or ``<sweep>/<trial>``: the folder relative to ``checkpoints/`` when inside."""
    try:
        return run_dir.resolve().relative_to(paths.checkpoints_dir().resolve()).as_posix()
    except ValueError:
        return run_dir.name


def _unfinished(loaded: Loaded) -> list[str]:
    if loaded.finished:
        return []
    return [
        f"{loaded.run_dir}: the run has not finished (it is still training, or it was "
        f"interrupted; {rundir.RESUME_NOTE} is there): this is its {loaded.which} state so far, "
        f"epoch {loaded.epoch}, not the finished run's"
    ]


def _warnings(split: data_lib.BeatData, names: list[str], patients: dict[str, Any]) -> list[str]:
    out = [] if patients["patients"] == "new" else [patients_lib.describe(patients)]
    counts = data_lib.class_counts(split.y, len(names))
    absent = [n for n, k in zip(names, counts, strict=True) if k == 0]
    if absent:
        out.append(
            f"{split.source}: no beats of class {', '.join(absent)}; their recall is undefined "
            "and left out of the macro means (is this a file of another dataset?)"
        )
    return out
