"""Population-based training of the 1D ResNet over learning rate, weight decay and dropout.

    uv run scripts/tune.py --config configs/pbt_resnet1d.py --hypothesis "..."        # ~20 min
    uv run scripts/tune.py --config configs/pbt_resnet1d.py:smoke --hypothesis "..."  # < 1 min
    uv run scripts/tune.py --config configs/pbt_resnet1d.py:full --hypothesis "..."   # one GPU

Four members train (two at a time here); every 2 epochs the bottom quarter copies the weights and
optimizer state of the top quarter (restored from its Tune checkpoint) and perturbs the values
below. A new learning rate or weight decay is data in the optimizer state, so it takes effect
without recompiling; a new dropout rate recompiles (seconds, cached). Budgeted from measured
step times at ~15 min (the default run was not timed end to end); expected: the population's
best validation macro recall ~0.9 after 12 short epochs. Members are ranked (and exploited) by
validation macro F2 over N/S/V/F: recall first, precision not ignored (see asha_cnn.py).
``population_resnet1d.py`` builds on this file's values (PBT inside each trial instead).
"""

import ml_collections

from ecgjax.config import base_config, sweep_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "pbt_resnet1d"
    c.model.name = "resnet1d"
    c.model.hidden, c.model.num_blocks = 32, 3
    c.model.norm, c.model.dropout = "batch", 0.1
    c.loss.name, c.loss.class_weight_power = "weighted_ce", 0.5
    c.optim.name, c.optim.learning_rate, c.optim.weight_decay = "adamw", 3e-3, 1e-4
    c.optim.schedule = "constant"  # PBT itself schedules the learning rate
    c.train.batch_size = 64
    c.train.steps_per_epoch = 150
    c.train.select_metric, c.tune.metric = "macro_f2", "val/macro_f2"
    c.tune.scheduler, c.tune.search = "pbt", "random"
    c.tune.num_samples, c.tune.max_epochs = 4, 12
    c.tune.perturbation_interval = 2
    c.tune.seeds_per_trial = 2
    return sweep_variant(
        c,
        arg,
        smoke={
            "model.hidden": 8,  # compiles in seconds
            "model.num_blocks": 1,
            "train.batch_size": 32,
            "tune.num_samples": 2,
            "tune.max_epochs": 3,
            "tune.perturbation_interval": 1,
        },
        full={
            "tune.num_samples": 16,
            "tune.max_epochs": 30,
            "tune.perturbation_interval": 3,
            "tune.max_concurrent": 16,
            "tune.gpus_per_trial": 0.0625,
        },
    )


def get_search_space(tune):
    # Used both to sample the initial population and as PBT's mutation distributions.
    return {
        "optim.learning_rate": tune.loguniform(1e-4, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-3),
        "model.dropout": tune.uniform(0.0, 0.3),
    }
