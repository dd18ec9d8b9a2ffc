"""Tuning: search spaces and the Ray Tune trainables, the sweep driver and its summary,
MLflow sweep tracking, and the hypothesis journal.

Ray reads some settings into constants when it is first imported, and only this package
imports Ray, so its defaults are set here, before any of its modules runs (a submodule's own
``os.environ.setdefault`` came too late whenever a sibling had imported Ray first).
"""

import os

RAY_DEFAULTS = {
    # Under `uv run`, Ray would otherwise package the project folder (data included) and build
    # a fresh virtualenv for every worker (141 packages, each sweep); local workers can use this
    # interpreter as it is. Set it to 1 to ship the project to a remote cluster that way.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    # A local Ray on loopback only (see ecgjax.tuning.cluster).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Snapshot the experiment state often (it is small): a killed driver then loses at most a
    # couple of seconds, so finished trials are recorded as finished and never re-run on resume.
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's classic progress table shows the columns we choose (the tuned metric, its worst
    # seed and spread); the newer output dumps every one of ~100 metrics per finished trial.
    "RAY_AIR_NEW_OUTPUT": "0",
}
for _key, _value in RAY_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
