"""Run (or resume) a Ray Tune sweep of a config file's search space.

    uv run scripts/tune.py --config configs/asha_cnn.py:smoke --hypothesis "wider nets help S"
    uv run scripts/tune.py --config configs/asha_cnn.py --config.tune.num_samples=12 --hypothesis "..."
    uv run scripts/tune.py --resume asha_cnn-20261128-143200     # after Ctrl-C or a killed driver

Every sweep states a hypothesis (asked for on a terminal); it goes to report/journal.md and
onto the MLflow parent run (smoke sweeps: report/journal-smoke.md, untracked). ``--ray_address``
(or RAY_ADDRESS) joins an existing Ray cluster; otherwise a local Ray starts without its
dashboard, listening on 127.0.0.1 only (``--bind`` for a head other machines join). A live
status line shows the sweep's progress; ``--verbose`` shows Ray Tune's tables instead. Browse the sweep (a parent run with one child
per trial) with ``uv run mlflow ui --backend-store-uri sqlite:///mlflow.db`` (binds 127.0.0.1).
"""

import sys
from typing import Any

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from ecgjax import cli
from ecgjax.tuning import journal  # light; importing ecgjax.tuning sets Ray's defaults

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Sweep config file (path[:arg]).", lock_config=True
)
_HYPOTHESIS = flags.DEFINE_string(
    "hypothesis", None, "What you expect this sweep to show, and why."
)
_NAME = flags.DEFINE_string("name", None, "Sweep id (folder under checkpoints/ and ray_results/).")
_RESUME = flags.DEFINE_string("resume", None, "Sweep id of an interrupted sweep to continue.")
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", None, "Ray cluster to join (default: RAY_ADDRESS or local)."
)
_NUM_CPUS = flags.DEFINE_integer("num_cpus", None, "CPUs for a local Ray (default: all).")
_BIND = flags.DEFINE_string(
    "bind",
    None,
    "Address a local Ray advertises (default 127.0.0.1: every socket on loopback). Any other "
    "address lets machines join this Ray, which then listens on all interfaces.",
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Ray Tune's status tables and checkpoint lines instead of the live view."
)


def main(argv: list[str]) -> None:
    del argv
    # Heavy imports wait for the flags: JAX for the config check, then Ray and MLflow only for
    # a sweep that runs, so --help, a bad flag or config and a missing hypothesis answer at once.
    from ecgjax.training.validate import validate

    config: ml_collections.ConfigDict | None = None
    hypothesis: str | None = None
    if not _RESUME.value:
        if _CONFIG.value is None:
            raise app.UsageError("--config is required (or --resume <sweep_id>)")
        config = validate(_CONFIG.value)
        try:
            hypothesis = journal.require_hypothesis(_HYPOTHESIS.value)
        except journal.HypothesisRequired as err:
            sys.exit(f"error: {err}")
    from ecgjax.tuning import cluster, sweep

    ray_options: dict[str, Any] = dict(
        ray_address=_RAY_ADDRESS.value,
        num_cpus=_NUM_CPUS.value,
        bind=_BIND.value,
        verbose=bool(_VERBOSE.value),
    )
    try:
        if _RESUME.value:
            sweep.resume_sweep(_RESUME.value, **ray_options)
        else:
            config_file = config_flags.get_config_filename(flags.FLAGS["config"])
            sweep.run_sweep(config, config_file, hypothesis, name=_NAME.value, **ray_options)
    except (FileExistsError, FileNotFoundError, cluster.SweepRunning) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    cli.run(main)  # user errors (a bad config value, ...): one line, exit status 2
