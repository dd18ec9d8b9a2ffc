"""Populations inside each trial: the 1D ResNet's continuous hyper-parameters as data.

    uv run scripts/tune.py --config configs/population_resnet1d.py --hypothesis "..."
    uv run scripts/tune.py --config configs/population_resnet1d.py:smoke --hypothesis "..."  # ~1 min
    uv run scripts/tune.py --config configs/population_resnet1d.py:full --hypothesis "..."

Ray Tune's searcher picks the structure (width, depth); each trial then trains
``tune.population`` settings of learning rate, weight decay, dropout, class-weight power and
label smoothing x ``tune.seeds_per_trial`` seeds as one program, drawn from this file's
search space with a key per trial (member 0 is the searcher's own point), and runs PBT
inside the program every ``tune.population_interval`` epochs (exploit: a gather of the top
settings' weights and optimizer state; explore: perturbed values within the space's bounds).
The trial reports its best setting; the member table of every epoch is an MLflow artifact.
Same objective as the other sweeps (validation macro F2 over N/S/V/F).
"""

from pathlib import Path

import ml_collections

from ecgjax.config import load_config_file, sweep_variant

# The same model, loss, optimiser and objective; PBT here runs inside each trial instead.
BASE = Path(__file__).with_name("pbt_resnet1d.py")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_config_file(BASE)
    c.name = "population_resnet1d"
    c.tune.scheduler = "fifo"  # Ray's PBT is refused with a population
    c.tune.num_samples = 2
    c.tune.population = 8
    c.tune.population_selection = "pbt"
    c.tune.population_interval = 2
    c.tune.population_quantile = 0.25
    c.ensemble.strategy = "auto"
    return sweep_variant(
        c,
        arg,
        smoke={
            "model.hidden": 8,
            "model.num_blocks": 1,
            "train.batch_size": 32,
            "tune.num_samples": 1,
            "tune.max_epochs": 3,
            "tune.population": 4,
            "tune.population_interval": 1,
            "tune.seeds_per_trial": 1,
        },
        full={
            "tune.num_samples": 8,
            "tune.max_epochs": 30,
            "tune.population": 16,
            "tune.population_interval": 3,
            "tune.max_concurrent": 4,
            "tune.gpus_per_trial": 0.25,
        },
    )


def get_search_space(tune):
    # Structural keys go to Ray's searcher; the traced ones (ecgjax.training.space.TRACED) are
    # drawn per member inside each trial and bound PBT's explore.
    return {
        "model.hidden": tune.choice([16, 32]),
        "optim.learning_rate": tune.loguniform(1e-4, 1e-2),
        "optim.weight_decay": tune.loguniform(1e-6, 1e-3),
        "model.dropout": tune.uniform(0.0, 0.3),
        "loss.class_weight_power": tune.uniform(0.0, 1.0),
        "loss.label_smoothing": tune.uniform(0.0, 0.1),
    }
