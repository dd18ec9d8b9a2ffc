"""The one base config: every default of ecgjax lives here.

Experiment files in ``configs/`` start from :func:`base_config` and change what they need;
library code reads the config and never mutates it. Dotted paths (``optim.learning_rate``)
are the same keys the command line (``--config.optim.learning_rate=3e-4``) and the
tuning search spaces (``get_search_space(tune)``) use.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Return a fresh, unlocked base config with every default ecgjax knows."""
    c = ml_collections.ConfigDict()
    c.name = "run"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "mitbih"  # mitbih (5 classes), ptb (2 classes), interpatient (DS1/DS2)
    c.data.train_file = "heart_big_train.parq"  # relative to paths.data_dir()
    c.data.test_file = "heart_big_test.parq"
    c.data.num_classes = 5
    c.data.class_names = ("N", "S", "V", "F", "Q")
    c.data.val_fraction = 0.1
    c.data.split_seed = 42
    c.data.val_split = "stratified"  # stratified | record (patients never shared)
    # 0 = the one validation split above; k >= 2 = leave-records-out k-fold cross-validation
    # of the training file (ecgjax.data.folds): score = mean over folds; test never used for it.
    c.data.cv_folds = 0
    # Annotated rhythms (the data's ``rhythm`` column) whose records the folds spread apart, so
    # a held-out atrial-fibrillation patient is judged by a model that saw AF ("" = by class only).
    c.data.cv_rhythms = "AFIB,AFL"
    # The epoch each CV fold is scored and pooled at: "last" (no look at the held-out records)
    # or "best" (chosen on them, so optimistic; what runs before 2026-12-07 did).
    c.data.cv_epoch = "last"
    c.data.max_train = 0  # 0 = use all; >0 subsamples (stratified) for smoke runs
    c.data.max_eval = 0  # same for validation/test
    # Model input channels (ecgjax.data.inputs), comma-separated: beat | template | beat_minus_template
    # | prev | next | lead2 | lead2_minus_template | centred | centred_lead2. Patient-adaptive
    # inputs for new patients; "beat" is the reference.
    c.data.channels = "beat"
    c.data.template = "record"  # record: the record's median beat | causal: median of past beats
    c.data.template_beats = 64  # causal template: how many previous beats
    c.data.rr_causal = False  # RR features from past beats only (a real-time monitor)
    # Two more RR columns: how irregular the rhythm is around the beat and over the record
    # (ecgjax.data.rr.rr_irregularity), so an early beat in atrial fibrillation is not read as S.
    c.data.rr_irregularity = False
    # Three QRS-versus-the-patient's-template scalars appended to the RR features
    # (ecgjax.data.inputs.template_features): correlation, relative deviation, range ratio.
    c.data.template_features = False
    # Two P-wave scalars appended after those (ecgjax.data.inputs.p_wave_correlations): the
    # beat's P-region correlation with its 32 neighbours' median and with its record's median.
    # An atrial premature beat has an early, abnormal P wave. Not causal (neighbours ahead).
    c.data.p_wave_features = False
    # Patient-adaptive post-processing (ecgjax.scoring.clusters): each record's beats are
    # clustered by QRS shape (k clusters) and every beat's V/F probabilities move this far
    # (0 = off, 1 = all the way) towards its cluster's mean. Applied wherever the checkpoint is
    # evaluated, and to the out-of-fold pool of cross-validation (oof.npz keeps the raw ones).
    c.data.cluster_smoothing = 0.0
    c.data.cluster_k = 8
    # Atrial-fibrillation gate (ecgjax.scoring.af_gate): where the normal-to-normal RR intervals
    # around a beat look like AF (Dash et al. 2009, published thresholds), its S probability moves
    # to N (S is undefined in AF). Applied after the cluster smoothing, wherever the checkpoint is
    # evaluated; it needs record and sample columns and whole records (not a beat-level split).
    # Off in the recipe: it costs S sensitivity in records with frequent atrial premature beats
    # (report/journal.md, session 12).
    c.data.af_gate = False
    # With the gate: > 0 also requires inconsistent P waves (AF has none): the median correlation
    # of the window's P regions with their neighbours' below this (0 = RR tests only, as the gate
    # was before 2026-12-07; 0.5 lies between AF's ~0.2 and sinus rhythm's 0.75-0.98 on DS1;
    # ecgjax.scoring.af_gate).
    c.data.af_gate_pwave = 0.5
    # What a gated beat's S probability becomes: "to_n" (onto N) or "condition" (p / (1 - p(S))
    # over the other classes, so a beat whose runner-up was V becomes V).
    c.data.af_gate_mode = "to_n"
    # Prematurity gate (ecgjax.scoring.af_gate), after the AF gate: AAMI's S class is premature
    # by definition, so where a beat's previous RR interval is more than this times its record's
    # mean interval (ratio_prev_record; the running mean with data.rr_causal), S is conditioned
    # away (p / (1 - p(S))). 0 = off. Needs record and sample columns and whole records.
    c.data.prematurity_gate = 0.0
    # Cluster-shared S/V split (ecgjax.scoring.clusters.split_ectopic), after the gates: each
    # beat keeps p(S) + p(V) and its V share moves this fraction of the way to its QRS-shape
    # cluster's (data.cluster_k clusters per record), since S and V share the rhythm cue and
    # differ in shape. 0 = off; needs a record column. Tried at 0.5 in session 20 and left out
    # (configs/interpatient.py: S Se -.036 on DS2 -> DS1).
    c.data.sv_split = 0.0
    # Patient-adaptive batch norm (ecgjax.training.adapt, AdaBN): "record" predicts each record
    # with batch-norm statistics of its own beats instead of the training patients' running
    # ones, "normal" with those of its beats first called N (no labels; needs
    # model.norm="batch" and a record column). Wherever the model predicts: validation during
    # training, the CV's out-of-fold pool and evaluation.
    c.data.adapt_norm = "none"  # none | record | normal
    # Test-time augmentation: > 0 averages each beat's probabilities over the beat rolled by
    # -k, 0 and +k samples (every channel together, as augment.time_shift rolls in training),
    # wherever the model predicts. 0: off, one pass.
    c.data.tta_shift = 0
    # "normal" only: passes of (take statistics over the beats called N, predict again), the
    # first from the unadapted prediction; and the least ensemble N probability a beat needs to
    # count (0: argmax N is enough).
    c.data.adapt_rounds = 1
    c.data.adapt_min_prob = 0.0

    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn2d"
    c.model.hidden = 16
    c.model.num_blocks = 1
    c.model.num_heads = 4
    c.model.dropout = 0.0
    c.model.norm = "none"  # none | batch | layer
    # With norm="batch": which beats of a training batch give batch norm its statistics, all
    # ("batch") or those labelled N ("normal": how data.adapt_norm="normal" normalises a new
    # patient at evaluation; pair it with sampling.name="record" so a batch is one patient).
    c.model.bn_stats = "batch"
    c.model.pool = "flatten"  # flatten | global  (cnn2d head)
    c.model.kernel_size = 5
    c.model.se_ratio = 4
    c.model.rr_context = False  # fuse R-R (rhythm) features; needs record/sample columns
    c.model.rr_width = 32  # rhythm branch width (models.classifier.ContextFusion)
    c.model.rr_beat_dropout = 0.0  # modality dropout of the beat embedding, rr_context only
    c.model.rr_rhythm_dropout = 0.0  # the same for the rhythm embedding (morphology alone)
    # Weight of a patient adversary's reversed gradient into the encoder (0: off): the normal
    # beats' embedding is trained not to tell the training patients apart (needs records).
    # Off in the recipe: at 0.3 it cost S and V sensitivity on DS1 CV (report/journal.md).
    c.model.patient_adversary = 0.0

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "ce"  # ce | weighted_ce | focal | weighted_focal
    c.loss.class_weight_power = 1.0  # weights = (1/freq) ** power, normalised
    c.loss.focal_gamma = 2.0
    c.loss.label_smoothing = 0.0

    c.sampling = ml_collections.ConfigDict()
    # record: every batch from one record (batch norm learns per-patient statistics, as
    # data.adapt_norm gives it at evaluation; ecgjax.training.step.record_epoch_indices)
    c.sampling.name = "uniform"  # uniform | balanced | record
    c.sampling.balance_power = 0.5  # balanced: p(beat) ~ count[class] ** -power (1 = equal classes)
    # uniform/balanced: within each class, p(beat) also ~ (its record's beats of that class) **
    # -power, class totals kept (ecgjax.data.splits.patient_factors; 1 = equal patients, 0 = off).
    c.sampling.patient_power = 0.0

    c.augment = ml_collections.ConfigDict()
    c.augment.enabled = False
    c.augment.scale = 0.1  # amplitude scale in [1-s, 1+s]
    c.augment.shift = 0.05  # baseline shift
    c.augment.noise = 0.01  # Gaussian noise std
    c.augment.time_shift = 3  # samples, circular within the beat
    c.augment.stretch = 0.0  # time stretch about the R peak by a factor in [1-s, 1+s]; 0: off
    # Channel dropout: these data.channels (comma-separated) zeroed together for a fraction
    # of the training beats, whether or not augment.enabled (ecgjax.data.augment.drop_channels).
    c.augment.drop_channels = ""
    c.augment.drop_channels_rate = 0.0

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # adam | adamw | sgd
    c.optim.learning_rate = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.momentum = 0.9
    c.optim.schedule = "constant"  # constant | cosine | plateau
    c.optim.warmup_epochs = 0
    c.optim.plateau_patience = 2
    c.optim.plateau_factor = 0.5
    c.optim.grad_clip = 0.0  # 0 = off
    # Sharpness-aware minimisation (training.step.sam_point): each step's gradient is taken at
    # the weights moved this far along the normalised gradient (0: off; two passes per step).
    # Off in the recipe: at 0.05 and 0.1 it cleared no bar on DS1 CV (report/journal.md,
    # sessions 16 and 17).
    c.optim.sam_rho = 0.0
    # Weight averaging (training.step.weight_average): predictions, validation and checkpoints'
    # evaluations use an exponential moving average of the weights and batch-norm statistics
    # with this decay (0: off, the last weights; 0.999 weighs about the last 1,000 steps,
    # bias-corrected so short runs average what they have). Off in the recipe: at 0.999 it
    # called more normal beats S on DS1 CV (S +P -.113; report/journal.md, session 17).
    c.optim.weight_ema = 0.0

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.steps_per_epoch = 0  # 0 = one full pass over the training split
    c.train.num_seeds = 4
    c.train.eval_batch_size = 1024
    c.train.select_metric = "macro_recall"  # validation metric for best checkpoint / early stop
    c.train.early_stop_patience = 0  # epochs without improvement; 0 = off

    c.ensemble = ml_collections.ConfigDict()
    c.ensemble.strategy = "auto"  # auto | vmap | wide | unrolled | loop | sequential
    c.ensemble.dispatch = "auto"  # auto | python | scan | flat (python on a packed state)
    c.ensemble.scan_steps = 8

    c.tune = ml_collections.ConfigDict()
    c.tune.scheduler = "asha"  # asha | hyperband | pbt | fifo
    c.tune.search = "random"  # random | grid | optuna
    c.tune.metric = "val/macro_recall"
    c.tune.mode = "max"
    c.tune.num_samples = 8
    c.tune.max_epochs = 10
    c.tune.grace_period = 2
    c.tune.reduction_factor = 3
    c.tune.perturbation_interval = 2
    c.tune.max_concurrent = 2
    c.tune.cpus_per_trial = 1.0
    c.tune.gpus_per_trial = 0.0
    # Custom Ray resources each trial needs, "name:amount,...": trials then run only on nodes
    # started with them (`ray start --resources='{"name": 4}'`), e.g. the GPU machines.
    c.tune.resources = ""
    c.tune.seeds_per_trial = 2
    # Populations (ecgjax.training.population): P settings of the continuous hyper-parameters
    # per trial, drawn from the config's search space, trained in one program; 1 = off.
    c.tune.population = 1
    c.tune.population_selection = "none"  # none | pbt | halving (inside the program)
    c.tune.population_interval = 2  # epochs between selections
    c.tune.population_quantile = 0.25  # bottom fraction replaced (pbt; halving uses 0.5 at most)
    return c


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """Load ``configs/x.py`` or ``configs/x.py:arg`` by path (no import path tricks)."""
    text = str(path)
    arg: str | None = None
    if ":" in Path(text).name:
        text, arg = text.rsplit(":", 1)
    module = _load_module(Path(text))
    return module.get_config(arg) if arg is not None else module.get_config()


def load_search_space(path: str | Path, tune_module: Any) -> dict[str, Any]:
    """Return ``get_search_space(tune)`` of a config file.

    A file whose ``get_search_space`` takes a second argument gets the ``:arg`` suffix (None
    without one), as ``get_config`` does: a ``:smoke`` sweep can then keep its structures small
    (seconds on a CPU) while the real sweep searches the full space.
    """
    text, arg = str(path), None
    if ":" in Path(text).name:
        text, arg = text.rsplit(":", 1)
    module = _load_module(Path(text))
    if not hasattr(module, "get_search_space"):
        raise ValueError(f"{text}: config file has no get_search_space(tune)")
    if len(inspect.signature(module.get_search_space).parameters) > 1:
        return module.get_search_space(tune_module, arg)
    return module.get_search_space(tune_module)


def _load_module(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    spec = importlib.util.spec_from_file_location(f"ecgjax_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: cannot be loaded as a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: config file defines no get_config()")
    return module


# Settings that change only how a trained model predicts, never what it learned: they can be
# changed on an existing checkpoint (scripts/cv_rescore.py, scripts/compare.py SOURCE@key=value).
PREDICTION_KEYS = (
    "data.adapt_norm",
    "data.adapt_rounds",
    "data.adapt_min_prob",
    "data.af_gate",
    "data.af_gate_pwave",
    "data.af_gate_mode",
    "data.prematurity_gate",
    "data.sv_split",
    "data.cluster_smoothing",
    "data.cluster_k",
    "data.tta_shift",
)


def prediction_overrides(config: ml_collections.ConfigDict, spec: str) -> dict[str, Any]:
    """``"af_gate=true,af_gate_pwave=0.5"`` as typed overrides of :data:`PREDICTION_KEYS`, each
    value cast to the type it has in ``config`` (``data.`` may be left out of a key).

    Raises:
        ValueError: a key that is not a prediction-time setting, or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, eq, text = item.partition("=")
        key = key.strip() if "." in key else f"data.{key.strip()}"
        if not eq or key not in PREDICTION_KEYS:
            raise ValueError(
                f"{item!r}: give key=value with a prediction-time key "
                f"({', '.join(k.partition('.')[2] for k in PREDICTION_KEYS)})"
            )
        section, _, name = key.partition(".")
        current, text = config[section][name], text.strip()
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1")
            elif isinstance(current, int):
                out[key] = int(text)
            elif isinstance(current, float):
                out[key] = float(text)
            else:
                out[key] = text
        except ValueError:
            kind = type(current).__name__
            raise ValueError(f"{item!r}: {key} takes a {kind}, not {text!r}") from None
    return out


def with_overrides(
    config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
    """Return a copy of ``config`` with dotted-path overrides applied (the input is untouched)."""
    new = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in overrides.items():
        node = new
        *parents, leaf = dotted.split(".")
        for p in parents:
            if p not in node:
                raise KeyError(f"unknown config path {dotted!r}")
            node = node[p]
        if leaf not in node:
            raise KeyError(f"unknown config path {dotted!r}")
        current = node[leaf]
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        node[leaf] = value
    return new


# Smoke runs must visibly learn (validation macro recall well above the 0.2 of "all N"):
# equal-class sampling and a high learning rate teach a small model N, V and Q in ~20-40 steps.
SMOKE_LEARNS = {
    "data.max_train": 1000,
    "data.max_eval": 200,
    "sampling.name": "balanced",
    "sampling.balance_power": 1.0,
}
SMOKE = {
    **SMOKE_LEARNS,
    "train.steps_per_epoch": 10,
    "train.batch_size": 64,
    "optim.learning_rate": 3e-3,
}
SMOKE_TRAIN = {  # scripts/train.py configs: seconds on a CPU, 2 seeds, 2 epochs of 20 steps
    **SMOKE_LEARNS,
    "train.epochs": 2,
    "train.steps_per_epoch": 20,
    "train.num_seeds": 2,
    "train.batch_size": 32,
}


def smoke_train(
    config: ml_collections.ConfigDict, extra: dict[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """A training config's ``:smoke`` variant: seconds on a CPU, and it learns (SMOKE_TRAIN)."""
    return with_overrides(config, {**SMOKE_TRAIN, **(extra or {})})


FULL = {  # whole epochs, on one GPU shared by 8 trials of 4 seeds each
    "train.steps_per_epoch": 0,
    "tune.seeds_per_trial": 4,
    "tune.max_concurrent": 8,
    "tune.gpus_per_trial": 0.125,
}


def sweep_variant(
    config: ml_collections.ConfigDict,
    arg: str | None,
    *,
    smoke: dict[str, Any],
    full: dict[str, Any],
) -> ml_collections.ConfigDict:
    """A sweep config's ``:smoke`` (seconds, CPU) or ``:full`` (a GPU) variant, or itself.

    Every sweep config shares the shape of these variants (smoke: a few hundred beats and a
    handful of steps; full: whole epochs, 8 trials sharing one GPU); each file passes only
    what it changes on top.
    """
    if arg is None:
        return config
    if arg == "smoke":
        return with_overrides(config, {**SMOKE, **smoke})
    if arg == "full":
        return with_overrides(config, {**FULL, **full})
    raise ValueError(f"unknown config variant {arg!r}; use smoke or full")


def to_json(config: ml_collections.ConfigDict) -> str:
    """Serialise a config (tuples become lists) for saving beside checkpoints."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


# Keys whose base default is not what a checkpoint written before the key existed did. A
# missing key takes this value instead, so an old run is read as it ran (re-scoring an old CV
# pool deals its old folds: records were not spread by rhythm before data.cv_rhythms; a gate
# turned on for an old checkpoint is the RR-only gate it was trained beside).
BEFORE_KEY: dict[str, Any] = {
    "data.cv_rhythms": "",
    "data.cv_epoch": "best",
    "data.af_gate_pwave": 0.0,
}


def from_json(text: str) -> ml_collections.ConfigDict:
    """Inverse of :func:`to_json`, filling keys that older checkpoints lack: from
    :data:`BEFORE_KEY` where the key changed behaviour when it came, else from the base."""
    saved = json.loads(text)
    config = base_config()
    for dotted, value in BEFORE_KEY.items():
        section, _, key = dotted.partition(".")
        if key not in saved.get(section, {}):
            config[section][key] = value
    _merge(config, saved)
    return config


def _merge(node: ml_collections.ConfigDict, saved: dict[str, Any]) -> None:
    for key, value in saved.items():
        if (
            isinstance(value, dict)
            and key in node
            and isinstance(node[key], ml_collections.ConfigDict)
        ):
            _merge(node[key], value)
        elif key in node and isinstance(node[key], tuple):
            node[key] = tuple(value)
        else:
            node[key] = value


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """Flatten to dotted keys, for MLflow params and report tables."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
