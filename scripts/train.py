"""Train one multi-seed ensemble without Ray, or cross-validate it over the training records.

uv run scripts/train.py --config configs/resnet1d.py
uv run scripts/train.py --config configs/default_cnn.py:smoke --config.train.num_seeds=2
uv run scripts/train.py --config configs/default_cnn.py:smoke --name mine --resume   # after a kill
uv run scripts/train.py --config configs/interpatient_resnet1d.py:rr --config.data.cv_folds=4

Each run owns ``checkpoints/<name>/`` (default name: config name, time and a random suffix). A
name that exists is refused unless ``--resume`` continues it (same config; only
``train.epochs`` may grow) or ``--overwrite`` deletes it and starts again. Until a run
finishes, its folder holds ``RESUME.txt`` with the command that continues it.

With ``--config.data.cv_folds=k`` (k >= 2) one ensemble trains per fold of whole records
(``checkpoints/<name>/fold<i>/``) and the score is the fold mean with its spread; the test
file is not evaluated unless ``--refit`` asks for a final ordinary run after the folds.

``--no_test`` trains and selects without evaluating the test file at the end, so a recipe
chosen on the training patients is not shown its test patients by accident; run
``scripts/evaluate.py checkpoints/<name>`` when the hypothesis is in the journal.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from ecgjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (path[:arg]).", lock_config=True
)
_NAME = flags.DEFINE_string(
    "name", None, "Run name (folder under checkpoints/); default: config name, time, suffix."
)
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue the run named --name from its latest checkpoint."
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete the run named --name (checkpoints, files) and start it again."
)
_REFIT = flags.DEFINE_bool(
    "refit",
    False,
    "With data.cv_folds >= 2: after the folds, train one ordinary run and evaluate the test file.",
)
_NO_TEST = flags.DEFINE_bool(
    "no_test",
    False,
    "Do not evaluate the test file at the end (nor after --refit): look at it later with "
    "scripts/evaluate.py, once the choice is made.",
)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    from ecgjax.training.validate import validate  # imports JAX: after the flags are parsed

    config = validate(_CONFIG.value)
    if _REFIT.value and int(config.data.cv_folds) < 2:
        raise app.UsageError("--refit applies to cross-validation (--config.data.cv_folds >= 2)")
    from ecgjax.runtime import configure_jax
    from ecgjax.training.crossval import train_cv
    from ecgjax.training.experiment import train_run

    configure_jax()
    name, resume, overwrite = _NAME.value, _RESUME.value, _OVERWRITE.value
    if int(config.data.cv_folds) >= 2:
        train_cv(
            config,
            run_name=name,
            resume=resume,
            overwrite=overwrite,
            refit=_REFIT.value,
            refit_test=not _NO_TEST.value,
            command=sys.argv,
        )
    else:
        train_run(
            config,
            run_name=name,
            resume=resume,
            overwrite=overwrite,
            evaluate_test=not _NO_TEST.value,
            command=sys.argv,
        )


if __name__ == "__main__":
    cli.run(main)
