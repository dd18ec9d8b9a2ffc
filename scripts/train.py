"""Train one multi-seed ensemble without Ray.

uv run scripts/train.py --config configs/resnet1d.py
uv run scripts/train.py --config configs/default_cnn.py:smoke --config.train.num_seeds=2
"""

from absl import app, flags
from ml_collections import config_flags

from ecgjax.experiment import train_run
from ecgjax.runtime import configure_jax

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_NAME = flags.DEFINE_string(
    "name", None, "Run name (folder under checkpoints/); default: config name + time."
)
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue the run named --name from its latest checkpoint."
)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    configure_jax()
    train_run(_CONFIG.value, run_name=_NAME.value, resume=_RESUME.value)


if __name__ == "__main__":
    app.run(main)
