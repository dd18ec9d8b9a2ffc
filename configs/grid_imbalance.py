"""A full grid over the class-imbalance remedies for one fixed model (the reference CNN).

    uv run scripts/tune.py --config configs/grid_imbalance.py --hypothesis "..."        # ~10 min
    uv run scripts/tune.py --config configs/grid_imbalance.py:smoke --hypothesis "..."  # < 1 min
    uv run scripts/tune.py --config configs/grid_imbalance.py:full --hypothesis "..."   # one GPU

Loss (weighted cross-entropy or weighted focal) x class-weight power (0 = unweighted, 0.5,
1 = inverse frequency) x sampling (uniform, class-balanced): 12 trials, every one run to the
end (FIFO) so the grid is a clean comparison. Budgeted from the measured ~6 s per 200-step
epoch of this model at ~10 min (not timed end to end). Expected, from the asha_cnn sweep:
power 0 with uniform sampling lowest (~0.65-0.75 validation macro recall), balanced sampling
~0.85; weighting on top of balanced sampling over-corrects (N recall drops), which the
objective, validation macro F2 over N/S/V/F (see asha_cnn.py), penalises through S/V/F precision.
"""

import ml_collections

from ecgjax.config import base_config, sweep_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "grid_imbalance"
    c.model.name = "cnn2d"
    c.model.hidden, c.model.num_blocks = 16, 1
    c.train.batch_size = 32
    c.train.steps_per_epoch = 400
    c.train.select_metric, c.tune.metric = "macro_f2", "val/macro_f2"
    c.tune.scheduler, c.tune.search = "fifo", "grid"
    c.tune.num_samples = 1  # each grid point once
    c.tune.max_epochs = 8
    c.tune.seeds_per_trial = 2
    return sweep_variant(
        c,
        arg,
        smoke={"tune.max_epochs": 2},
        full={
            "tune.max_epochs": 15,
            "tune.max_concurrent": 12,
            "tune.gpus_per_trial": 0.08,
        },
    )


def get_search_space(tune):
    return {
        "loss.name": tune.grid_search(["weighted_ce", "weighted_focal"]),
        "loss.class_weight_power": tune.grid_search([0.0, 0.5, 1.0]),
        "sampling.name": tune.grid_search(["uniform", "balanced"]),
    }
