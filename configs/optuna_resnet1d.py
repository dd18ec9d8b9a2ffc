"""Bayesian search (Optuna TPE) with ASHA early stopping over the 1D ResNet.

    uv run scripts/tune.py --config configs/optuna_resnet1d.py --hypothesis "..."        # ~20 min
    uv run scripts/tune.py --config configs/optuna_resnet1d.py:smoke --hypothesis "..."  # < 1 min
    uv run scripts/tune.py --config configs/optuna_resnet1d.py:full --hypothesis "..."   # one GPU

TPE proposes each new trial from the results so far (the first is configs/resnet1d.py's own
setting), at most two at a time on a 2-core CPU. Budgeted from measured step times at ~17 min
(the default run was not timed end to end); expected: validation macro recall ~0.9 for the
best of 12 trials. Objective: validation macro F2 over N/S/V/F (recall first, precision not
ignored; see asha_cnn.py).
"""

import ml_collections

from ecgjax.config import base_config, sweep_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "optuna_resnet1d"
    c.model.name = "resnet1d"
    c.model.hidden, c.model.num_blocks, c.model.kernel_size = 32, 3, 5
    c.model.norm, c.model.dropout = "batch", 0.1
    c.loss.name, c.loss.class_weight_power = "weighted_ce", 0.5
    c.optim.name, c.optim.learning_rate, c.optim.weight_decay = "adamw", 3e-3, 1e-4
    c.train.batch_size = 64
    c.train.steps_per_epoch = 150
    c.train.select_metric, c.tune.metric = "macro_f2", "val/macro_f2"
    c.tune.scheduler, c.tune.search = "asha", "optuna"
    c.tune.num_samples, c.tune.max_epochs = 12, 6
    c.tune.grace_period, c.tune.reduction_factor = 2, 3
    c.tune.seeds_per_trial = 2
    return sweep_variant(
        c,
        arg,
        smoke={
            "train.batch_size": 32,
            "tune.num_samples": 3,
            "tune.max_epochs": 2,
            "tune.grace_period": 1,
        },
        full={
            "tune.num_samples": 64,
            "tune.max_epochs": 20,
        },
    )


def get_search_space(tune):
    return {
        "model.hidden": tune.choice([16, 32, 48]),
        "model.num_blocks": tune.choice([2, 3, 4]),
        "model.kernel_size": tune.choice([5, 7, 9]),
        "model.dropout": tune.uniform(0.0, 0.3),
        "optim.learning_rate": tune.loguniform(1e-3, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-5, 1e-3),
        "loss.class_weight_power": tune.uniform(0.0, 1.0),
    }
