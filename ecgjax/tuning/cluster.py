"""The Ray runtime of a sweep: join or start Ray, and where its experiment folders live.

The sweep driver (:mod:`ecgjax.tuning.sweep`) sets Ray's environment defaults before Ray is
imported; this module only starts or joins the runtime those defaults configure.

On a cluster the experiment folders (``ECGJAX_RAY_RESULTS``) must be storage every node
reaches: a shared mount, or a URI of any pyarrow filesystem (``s3://``, ``gs://``,
``file://``). Ray uploads each trial's Tune checkpoints there; a trial on another node than
the driver also uploads its run folder (``checkpoints/<sweep>/<trial>``, which it writes on
its own disk) to ``<sweep>/<trial>/run`` (:func:`upload_run_dir`), and the driver fetches
the best trial's from there (:func:`fetch_run_dir`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import pyarrow.fs as pafs
import ray

from ecgjax import paths

RUN = "run"  # a remote trial's run folder, inside its Tune trial folder


def ray_results_root() -> str:
    """Ray experiment folders (``ECGJAX_RAY_RESULTS``: a path or a URI; default ``ray_results/``)."""
    value = os.environ.get("ECGJAX_RAY_RESULTS")
    if not value:
        return str(paths.PROJECT_ROOT / "ray_results")
    if "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


def experiment_path(sweep_id: str) -> str:
    """A sweep's Ray experiment folder (path or URI), what ``Tuner.restore`` reads."""
    return f"{ray_results_root()}/{sweep_id}"


def storage(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or URI."""
    if "://" in location:
        fs, path = pafs.FileSystem.from_uri(location)
        return fs, path
    return pafs.LocalFileSystem(), location


def exists(location: str) -> bool:
    """Whether a file or folder exists at a local path or URI."""
    fs, path = storage(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def run_copy(results_root: str, sweep_id: str, trial_id: str) -> str:
    """Where a trial on another node than the driver's uploads its run folder ('' if unknown)."""
    return f"{results_root}/{sweep_id}/{trial_id}/{RUN}" if results_root else ""


def upload_run_dir(run_dir: Path, location: str) -> None:
    """Replace the folder at ``location`` with the local ``run_dir`` (Orbax temp folders left out)."""
    fs, path = storage(location)
    fs.create_dir(path, recursive=True)
    fs.delete_dir_contents(path, missing_dir_ok=True)
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        if f.is_file() and not any("orbax-checkpoint-tmp" in part for part in rel.parts):
            fs.create_dir(f"{path}/{rel.parent.as_posix()}", recursive=True)
            pafs.copy_files(
                str(f),
                f"{path}/{rel.as_posix()}",
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )


def share_run_dir(run_dir: Path, location: str, driver_node: str, ready: list[Path]) -> None:
    """Upload a trial's run folder to ``location`` when it runs on another node than the driver.

    Orbax saves in the background and renames a step folder into place once it is complete,
    so the upload waits until the ``ready`` step folders of this epoch exist.
    """
    if not driver_node or ray.get_runtime_context().get_node_id() == driver_node:
        return
    deadline = time.monotonic() + 300
    while not all(p.is_dir() for p in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    upload_run_dir(run_dir, location)


def fetch_run_dir(location: str, dest: Path) -> bool:
    """Copy an uploaded run folder to ``dest``; False when there is none."""
    if not location or not exists(location):
        return False
    fs, path = storage(location)
    dest.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    return True


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


def custom_resources(spec: str) -> dict[str, float]:
    """``tune.resources`` ("name:amount,...") as Ray's resource dict.

    Raises:
        ValueError: an entry that is not ``name:amount`` with a positive amount.
    """
    out: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, amount = entry.partition(":")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not name.strip() or value <= 0:
            raise ValueError(f"tune.resources: {entry!r} is not name:amount (amount > 0)")
        out[name.strip()] = value
    return out
