"""The reference 2D CNN (16x12 view, hidden 16, 1 block), as in the PyTorch original.

    uv run scripts/train.py --config configs/default_cnn.py
    uv run scripts/train.py --config configs/default_cnn.py:smoke   # seconds, for tests

Expected on the beat-level MIT-BIH split, 2-core CPU: a few minutes for 4 seeds x 5 epochs
of a fifth of the data each (the reference's "epoch"), validation macro recall ~0.8.
"""

import ml_collections

from ecgjax.config import base_config, smoke_train


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.name = "default_cnn"
    c.model.name = "cnn2d"
    c.model.hidden = 16
    c.model.num_blocks = 1
    c.train.batch_size = 32
    c.train.epochs = 5
    c.train.steps_per_epoch = 550  # ~a fifth of the training beats per epoch, like the reference
    c.train.num_seeds = 4
    if arg == "smoke":
        c = smoke_train(c, {"optim.learning_rate": 3e-3})
    elif arg is not None:
        raise ValueError(f"unknown config variant {arg!r}; use smoke")
    return c
