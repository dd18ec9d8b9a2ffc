"""Optuna TPE with ASHA over the inter-patient recipe, scored by 4-fold CV over the DS1 records.

    uv run scripts/tune.py --config configs/optuna_interpatient.py --hypothesis "..."        # ~25-60 min, 2-core CPU
    uv run scripts/tune.py --config configs/optuna_interpatient.py:smoke --hypothesis "..."  # ~1 min
    uv run scripts/tune.py --config configs/optuna_interpatient.py:full --hypothesis "..."   # one GPU

Honest selection for new patients: every trial trains one ensemble per fold of whole DS1
records (``data.cv_folds = 4``, ``ecgjax/data/folds.py``), epoch by epoch, and reports the mean over
the folds; ASHA stops poor settings on that mean. DS2 (``data.test_file``) is loaded but never
evaluated by a trial, so nothing here is chosen by looking at it; evaluate it once, for the
final recipe, after writing the hypothesis in the journal.

The model is ``configs/interpatient_resnet1d.py:rr`` (1D ResNet + RR rhythm branch). The
search covers optimisation (learning rate, weight decay, dropout, width), imbalance
(class-weight power, balanced sampling), the rhythm branch's modality dropout, and the
patient-adaptive inputs: extra channels (the record's template, beat minus template, the
neighbouring beats, the second lead), a record-wide or causal template, causal RR features.

Objective: validation macro F2 over N/S/V/F (``ecgjax.scoring.metrics.objectives``; Q, 8 beats in
DS1, is left out), fold mean, in both ``tune.metric`` and ``train.select_metric``. F2 weighs
recall four times precision, so a missed S beat costs more than a false alarm, but a model
that calls one normal beat in four abnormal (N recall 0.755 on DS2 with macro-recall
selection) loses on S/V/F precision. It is smooth, which TPE models better than the
``recall_floor`` objective's cliff at N recall 0.9; ``recall_floor`` is logged beside it.

Budget (default): 16 trials x <= 6 epochs x 4 folds x 200 steps of 64 beats, 2 seeds a fold,
two trials at a time (one core each); ASHA keeps a third of the trials past epoch 2, so ~52
trial-epochs. Estimated, not timed end to end (the machine was shared when this was written):
from ``interpatient_resnet1d.py``'s measured ~2 min for 3 seeds x 6 epochs of 400 steps with a
~10k-beat validation, one trial-epoch (4 folds, each validating a quarter of DS1) takes
~1-2 min on one core, so the sweep ~25-60 min. The :smoke variant (2 folds, 2 trials of 2
epochs of 5 steps on a few hundred beats) took 3 min wall on a 2-core CPU busy with other
jobs (load 8); about a minute is expected on an idle one. The ``lead2`` channel needs data prepared with the
second lead (``scripts/prepare_data.py --force``); on older files its trials fail with that
message and the sweep goes on.
"""

from pathlib import Path

import ml_collections

from ecgjax.config import load_config_file, sweep_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_config_file(Path(__file__).with_name("interpatient_resnet1d.py:rr"))
    c.name = "optuna_interpatient"
    c.data.cv_folds = 4  # folds of whole DS1 records; data.val_split/val_fraction unused
    c.train.select_metric, c.tune.metric = "macro_f2", "val/macro_f2"
    c.train.steps_per_epoch = 200
    c.tune.scheduler, c.tune.search = "asha", "optuna"
    c.tune.num_samples, c.tune.max_epochs = 16, 6
    c.tune.grace_period, c.tune.reduction_factor = 2, 3
    c.tune.seeds_per_trial = 2
    c.tune.max_concurrent, c.tune.cpus_per_trial = 2, 1.0
    return sweep_variant(
        c,
        arg,
        smoke={
            "data.cv_folds": 2,
            "train.batch_size": 32,
            "tune.num_samples": 2,
            "tune.max_epochs": 2,
            "tune.grace_period": 1,
        },
        full={
            "tune.num_samples": 64,
            "tune.max_epochs": 20,
            "tune.grace_period": 3,
        },
    )


def get_search_space(tune):
    # The first trial is the config's own values (beat channel only, RR on), inside this space.
    return {
        "optim.learning_rate": tune.loguniform(5e-4, 5e-3),
        "optim.weight_decay": tune.loguniform(1e-5, 1e-3),
        "model.dropout": tune.uniform(0.0, 0.3),
        "model.hidden": tune.choice([16, 32, 48]),
        "model.rr_beat_dropout": tune.uniform(0.0, 0.5),
        "loss.class_weight_power": tune.uniform(0.0, 1.0),
        "sampling.name": tune.choice(["uniform", "balanced"]),
        "data.channels": tune.choice(
            [
                "beat",
                "beat,beat_minus_template",
                "beat,template",
                "beat,beat_minus_template,prev,next",
                "beat,beat_minus_template,lead2",
            ]
        ),
        "data.template": tune.choice(["record", "causal"]),
        "data.rr_causal": tune.choice([False, True]),
    }
