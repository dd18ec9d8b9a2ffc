"""The reference 1D conv + Transformer (hidden 16, 4 heads, 1 block), as in the PyTorch original.

    uv run scripts/train.py --config configs/default_transformer.py
    uv run scripts/train.py --config configs/default_transformer.py:smoke   # seconds

Expected on the beat-level MIT-BIH split, 2-core CPU: ~10 minutes for 4 seeds x 5 epochs of
a fifth of the data each; validation macro recall ~0.7-0.8 (the small model is weak on S/F).
"""

import ml_collections

from ecgjax.config import base_config, smoke_train


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "default_transformer"
    c.model.name = "transformer"
    c.model.hidden = 16
    c.model.num_heads = 4
    c.model.num_blocks = 1
    c.model.dropout = 0.1
    c.train.batch_size = 32
    c.train.epochs = 5
    c.train.steps_per_epoch = 550
    c.train.num_seeds = 4
    if arg == "smoke":
        c = smoke_train(c, {"optim.learning_rate": 3e-3})
    elif arg is not None:
        raise ValueError(f"unknown config variant {arg!r}; use smoke")
    return c
