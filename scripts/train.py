"""Train one multi-seed ensemble without Ray, or cross-validate it over the training records.

uv run scripts/train.py --config configs/resnet1d.py
uv run scripts/train.py --config configs/default_cnn.py:smoke --config.train.num_seeds=2
uv run scripts/train.py --config configs/interpatient_resnet1d.py:rr --config.data.cv_folds=4

With ``--config.data.cv_folds=k`` (k >= 2) one ensemble trains per fold of whole records
(``checkpoints/<name>/fold<i>/``) and the score is the fold mean with its spread; the test
file is not evaluated unless ``--refit`` asks for a final ordinary run after the folds.
"""

from absl import app, flags
from ml_collections import config_flags

from ecgjax.runtime import configure_jax
from ecgjax.training.crossval import train_cv
from ecgjax.training.experiment import train_run

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_NAME = flags.DEFINE_string(
    "name", None, "Run name (folder under checkpoints/); default: config name + time."
)
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue the run named --name from its latest checkpoint."
)
_REFIT = flags.DEFINE_bool(
    "refit",
    False,
    "With data.cv_folds >= 2: after the folds, train one ordinary run and evaluate the test file.",
)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    configure_jax()
    if int(config.data.cv_folds) >= 2:
        train_cv(config, run_name=_NAME.value, resume=_RESUME.value, refit=_REFIT.value)
    elif _REFIT.value:
        raise app.UsageError("--refit applies to cross-validation (--config.data.cv_folds >= 2)")
    else:
        train_run(config, run_name=_NAME.value, resume=_RESUME.value)


if __name__ == "__main__":
    app.run(main)
