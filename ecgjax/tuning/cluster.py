"""The Ray runtime of a sweep: join or start Ray, and where its experiment folders live.

The sweep driver (:mod:`ecgjax.tuning.sweep`) sets Ray's environment defaults before Ray is
imported; this module only starts or joins the runtime those defaults configure.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import ray

from ecgjax import paths


def ray_results_dir() -> Path:
    """Ray experiment folders (``ECGJAX_RAY_RESULTS``, default ``ray_results/``)."""
    value = os.environ.get("ECGJAX_RAY_RESULTS")
    return Path(value).expanduser().resolve() if value else paths.PROJECT_ROOT / "ray_results"


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address``/``RAY_ADDRESS``, else start a local Ray (dashboard off; were it
    turned on, it would bind to 127.0.0.1). Returns whether this call started Ray; a Ray
    already running in this process (a notebook, the tests) is used as it is.

    The driver itself is pinned to JAX's CPU backend (a config flag, not an environment
    variable, so trial processes still see the GPU), leaving the accelerator to the trials.
    """
    import jax

    with contextlib.suppress(RuntimeError):  # backends already started here (e.g. in tests)
        jax.config.update("jax_platforms", "cpu")
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return True
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    return True
