"""The Ray runtime of a sweep: join or start Ray, and where its experiment folders live.

The sweep driver (:mod:`ecgjax.tuning.sweep`) sets Ray's environment defaults before Ray is
imported; this module only starts or joins the runtime those defaults configure.

A local Ray listens on loopback only. ``ray.init(_node_ip_address="127.0.0.1")`` alone does
not do that: Ray turns a loopback address into the machine's external one unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's own single-machine mode, the default on
macOS and Windows), and its gRPC servers then listen on every interface. With both, the GCS,
raylet, driver, workers, autoscaler monitor and runtime-env agent all bind to 127.0.0.1.

On a cluster the experiment folders (``ECGJAX_RAY_RESULTS``) must be storage every node
reaches: a shared mount, or a URI of any pyarrow filesystem (``s3://``, ``gs://``,
``file://``). Ray uploads each trial's Tune checkpoints there; a trial on another node than
the driver also uploads its run folder (``checkpoints/<sweep>/<trial>``, which it writes on
its own disk) to ``<sweep>/<trial>/run`` (:func:`upload_run_dir`), and the driver fetches
the best trial's from there (:func:`fetch_run_dir`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.fs as pafs
import ray
from ray.tune import Callback

from ecgjax import paths
from ecgjax.training.checkpoint import write_json_atomic

# Set to 0 before Ray is first imported (Ray reads it into a constant at import time), by the
# package's RAY_DEFAULTS (ecgjax/tuning/__init__.py).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

LOOPBACK = "127.0.0.1"
MARK_ENV = "ECGJAX_SWEEP_DRIVER"  # "<sweep id>@<driver pid>", inherited by the local Ray


class SweepRunning(RuntimeError):
    """Another live driver runs this sweep."""


def _mark(sweep_id: str) -> None:
    """Tag this driver's environment, which the local Ray it starts (GCS, raylet, agents,
    workers) inherits, so a later ``--resume`` can find what a killed driver left behind."""
    os.environ[MARK_ENV] = f"{sweep_id}@{os.getpid()}"


def _started_here() -> bool:
    return os.environ.get(MARK_ENV, "").endswith(f"@{os.getpid()}")


def record_processes(path: Path) -> None:
    """Write this driver's process tree (pids with start times) to ``path``: Ray's agents
    rewrite their environment with their process title, so only this record finds them.
    Only a driver that started its own local Ray records (a joined cluster is not its own)."""
    if not _started_here():
        return
    me = psutil.Process()
    procs = []
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            procs.append({"pid": proc.pid, "created": proc.create_time(), "name": proc.name()})
    write_json_atomic(path, {"driver": me.pid, "processes": procs})


class RecordProcesses(Callback):
    """Refreshes :func:`record_processes` when a trial starts (new worker processes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record_processes(Path(self.path))


def reap(sweep_id: str, record: Path) -> list[str]:
    """End the processes an earlier, killed driver of ``sweep_id`` left running: those in
    its ``record`` and those carrying its mark (started after the record was written).

    After a SIGKILL of the driver, Ray's dashboard and runtime-env agents outlive it for
    good and a worker can go on training for a while, writing into the trial's folder while
    the resumed trial does. Returns what was ended ("name(pid)").

    Raises:
        SweepRunning: the driver that started them is still alive.
    """
    me, found = os.getpid(), {}
    saved = json.loads(record.read_text()) if record.is_file() else {"processes": []}
    for entry in saved["processes"]:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(entry["pid"])
            if proc.pid != me and abs(proc.create_time() - entry["created"]) < 0.01:
                if proc.pid == saved.get("driver"):
                    raise SweepRunning(f"sweep {sweep_id!r} is running in process {proc.pid}")
                found[proc.pid] = proc
    for proc in psutil.process_iter():
        try:
            sweep, _, pid = proc.environ().get(MARK_ENV, "").rpartition("@")
        except psutil.Error:
            continue
        if sweep == sweep_id and proc.pid != me and pid.isdigit() and int(pid) != me:
            found[proc.pid] = proc
    names = []
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            names.append(f"{proc.name()}({proc.pid})")
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(list(found.values()), timeout=10)
    return names


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
    """Replace the folder at ``location`` with the local ``run_dir`` (Orbax temp folders left out).

    Orbax removes a superseded step folder (``best/1`` once ``best/2`` is saved) in the
    background, possibly while this copies it. A file that vanishes mid-copy is skipped, and
    whatever part of its folder had been copied is removed from ``location`` again, so the
    copy never holds half a step (a restore would read it as damaged).
    """
    fs, path = storage(location)
    fs.create_dir(path, recursive=True)
    fs.delete_dir_contents(path, missing_dir_ok=True)
    vanished: set[Path] = set()
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        if not f.is_file() or any("orbax-checkpoint-tmp" in part for part in rel.parts):
            continue
        try:
            fs.create_dir(f"{path}/{rel.parent.as_posix()}", recursive=True)
            pafs.copy_files(
                str(f),
                f"{path}/{rel.as_posix()}",
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )
        except FileNotFoundError:
            if f.exists():
                raise
            # The shallowest folder of the file that is gone: the removed step.
            vanished.add(next(p for p in reversed(rel.parents) if not (run_dir / p).exists()))
    for gone in sorted(vanished):
        if not (run_dir / gone).exists():
            fs.delete_dir(f"{path}/{gone.as_posix()}")


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP, possibly IPv4-mapped IPv6) is a loopback address."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def start_ray(
    address: str | None, num_cpus: int | None, bind: str | None = None, sweep_id: str = ""
) -> bool:
    """Join ``address``/``RAY_ADDRESS``, else start a local Ray on ``bind`` (default loopback;
    dashboard off). Returns whether this call started Ray; a Ray already running in this
    process (a notebook, the tests) is used as it is.

    A local Ray's processes carry ``sweep_id`` in their environment (see :func:`reap`).
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
    _mark(sweep_id)
    ray.init(
        address="local",  # a new Ray; None would join any Ray found running on this machine
        num_cpus=num_cpus,
        include_dashboard=False,
        dashboard_host=LOOPBACK,
        _node_ip_address=node_ip,
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
