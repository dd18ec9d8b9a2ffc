"""The Ray runtime of a sweep: join or start Ray, and where its experiment folders live.

The sweep driver (:mod:`ecgjax.tuning.sweep`) sets Ray's environment defaults before Ray is
imported; this module only starts or joins the runtime those defaults configure.

A local Ray listens on loopback only. ``ray.init(_node_ip_address="127.0.0.1")`` alone does
not do that: Ray turns a loopback address into the machine's external one unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's own single-machine mode, the default on
macOS and Windows), and its gRPC servers then listen on every interface. With both, the GCS,
raylet, driver, workers, autoscaler monitor and runtime-env agent all bind to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path

# Must be set before Ray is first imported (Ray reads it into a constant at import time).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
os.environ.setdefault(LOOPBACK_ENV, "0")

import ray  # noqa: E402

from ecgjax import paths  # noqa: E402

LOOPBACK = "127.0.0.1"


def ray_results_dir() -> Path:
    """Ray experiment folders (``ECGJAX_RAY_RESULTS``, default ``ray_results/``)."""
    value = os.environ.get("ECGJAX_RAY_RESULTS")
    return Path(value).expanduser().resolve() if value else paths.PROJECT_ROOT / "ray_results"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP, possibly IPv4-mapped IPv6) is a loopback address."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def start_ray(address: str | None, num_cpus: int | None, bind: str | None = None) -> bool:
    """Join ``address``/``RAY_ADDRESS``, else start a local Ray on ``bind`` (default loopback;
    dashboard off). Returns whether this call started Ray; a Ray already running in this
    process (a notebook, the tests) is used as it is.

    ``bind`` other than loopback is for a head other machines join: Ray then advertises that
    address and its servers listen on every interface (Ray binds loopback or all, nothing
    in between).

    The driver itself is pinned to JAX's CPU backend (a config flag, not an environment
    variable, so trial processes still see the GPU), leaving the accelerator to the trials.

    Raises:
        RuntimeError: loopback was asked for but Ray was imported before this module set
            ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray would listen on every interface).
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
    node_ip = bind or LOOPBACK
    from ray._private import ray_constants

    if is_loopback(node_ip) and ray_constants.ENABLE_RAY_CLUSTER:
        raise RuntimeError(
            f"Ray was imported before ecgjax.tuning.cluster set {LOOPBACK_ENV}=0, so a local "
            f"Ray would listen on every interface; set {LOOPBACK_ENV}=0 in the environment "
            "or pass --bind with the address to advertise"
        )
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        dashboard_host=LOOPBACK,
        _node_ip_address=node_ip,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    return True
