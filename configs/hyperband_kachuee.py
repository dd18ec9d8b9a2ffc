"""HyperBand with random search over the Kachuee et al. (2018) residual 1D CNN.

    uv run scripts/tune.py --config configs/hyperband_kachuee.py --hypothesis "..."        # ~20 min
    uv run scripts/tune.py --config configs/hyperband_kachuee.py:smoke --hypothesis "..."  # < 1 min
    uv run scripts/tune.py --config configs/hyperband_kachuee.py:full --hypothesis "..."   # one GPU

HyperBand runs brackets that trade many short trials against few long ones, pausing trials
at rung boundaries and resuming them from their Tune checkpoints. Budgeted from measured step
times at ~15 min (not timed end to end); expected: validation macro recall ~0.85-0.9 for the
best trial, with balanced sampling or weighting as in the asha_cnn sweep. Objective:
validation macro F2 over N/S/V/F (recall first, precision not ignored; see asha_cnn.py).
"""

import ml_collections

from ecgjax.config import base_config, sweep_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "hyperband_kachuee"
    c.model.name = "kachuee"
    c.model.hidden, c.model.kernel_size = 32, 5
    c.train.batch_size = 32
    c.train.steps_per_epoch = 200
    c.train.select_metric, c.tune.metric = "macro_f2", "val/macro_f2"
    c.tune.scheduler, c.tune.search = "hyperband", "random"
    c.tune.num_samples, c.tune.max_epochs, c.tune.reduction_factor = 12, 9, 3
    c.tune.seeds_per_trial = 2
    return sweep_variant(
        c,
        arg,
        smoke={"tune.num_samples": 3, "tune.max_epochs": 2},
        full={
            "tune.num_samples": 64,
            "tune.max_epochs": 27,
        },
    )


def get_search_space(tune):
    return {
        "model.hidden": tune.choice([16, 32, 64]),
        "model.kernel_size": tune.choice([3, 5, 7]),
        "model.dropout": tune.choice([0.0, 0.1, 0.2]),
        "model.norm": tune.choice(["none", "batch"]),
        "optim.learning_rate": tune.loguniform(3e-4, 3e-3),
        "loss.name": tune.choice(["ce", "weighted_ce", "weighted_focal"]),
        "loss.class_weight_power": tune.uniform(0.25, 1.0),
        "sampling.name": tune.choice(["uniform", "balanced"]),
    }
