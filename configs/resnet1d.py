"""The strongest single config: a 1D ResNet with squeeze-and-excitation, 4 seeds.

    uv run scripts/train.py --config configs/resnet1d.py
    uv run scripts/train.py --config configs/resnet1d.py:smoke   # seconds

Target on the beat-level MIT-BIH split (2-core CPU): seed-mean test macro recall >= 0.90 and
accuracy >= 0.98. Class-weighted cross-entropy (power 0.5) trades a little N precision for
recall of the rare disease classes; the best epoch is chosen on validation macro recall.
"""

import ml_collections

from ecgjax.config import base_config, smoke_train


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "resnet1d"
    c.model.name = "resnet1d"
    c.model.hidden = 32
    c.model.num_blocks = 3
    c.model.norm = "batch"
    c.model.dropout = 0.1
    c.loss.name = "weighted_ce"
    c.loss.class_weight_power = 0.5
    c.optim.name = "adamw"
    c.optim.learning_rate = 3e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_epochs = 1
    c.train.batch_size = 64
    c.train.epochs = 8
    c.train.steps_per_epoch = 600
    c.train.num_seeds = 4
    if arg == "smoke":
        c = smoke_train(c)
    elif arg is not None:
        raise ValueError(f"unknown config variant {arg!r}; use smoke")
    return c
