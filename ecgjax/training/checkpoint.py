"""Orbax checkpoints of a whole seed ensemble, with the run's config and metadata beside them.

Layout of one run (or one tuning trial) folder::

    <run_dir>/config.json    the exact config (reload with ecgjax.config.from_json)
    <run_dir>/meta.json      class names, seeds, model, data manifest, strategy
    <run_dir>/latest/<epoch>/  the newest state (parameters, optimizer, step, keys) + progress
    <run_dir>/best/<epoch>/    the state with the best validation metric so far

Saves are asynchronous; :meth:`RunCheckpointer.wait` (called before anything reads them,
and on close) blocks until they are on disk. Orbax finalises a step by renaming its temp
folder, so a crash mid-save never leaves a half-written step that restore would pick up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orbax.checkpoint as ocp

from ecgjax.errors import UserError
from ecgjax.training.step import TrainState


def _on_disk(state: Any) -> Any:
    """The tree Orbax writes for a state: its fields as a dict, the weight average
    (``optim.weight_ema``) only where there is one, so states without it keep the layout that
    checkpoints written before the option have, and both restore."""
    if not isinstance(state, TrainState):
        return state
    tree = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    if tree["average"] is None:
        del tree["average"]
    return tree


def _from_disk(tree: Any, like: Any) -> Any:
    return TrainState(**tree) if isinstance(like, TrainState) else tree


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, damaged or does not match the config it is restored with."""


def write_atomic(path: Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Write ``path`` through ``write(file)`` into a temp file and rename, so readers never see
    half a file and a stopped writer leaves the old one (or none) behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file and rename, so readers never see half a file."""
    write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=str))


def _manager(directory: Path, *, async_save: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True, enable_async_checkpointing=async_save
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "progress"))


class RunCheckpointer:
    """Keeps the latest and the best ensemble state of one run."""

    def __init__(self, run_dir: Path, *, async_save: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.latest = _manager(self.run_dir / "latest", async_save=async_save)
        self.best = _manager(self.run_dir / "best", async_save=async_save)

    def save(
        self, epoch: int, state: TrainState, progress: dict[str, Any], *, is_best: bool
    ) -> None:
        """Save ``state`` as the latest (and as the best when ``is_best``) for ``epoch``."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_on_disk(state)), progress=ocp.args.JsonSave(progress)
        )
        self.latest.save(epoch, args=args, force=True)
        if is_best:
            self.best.save(epoch, args=args, force=True)

    def latest_epoch(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, abstract_state: Any) -> tuple[TrainState, dict[str, Any]]:
        """The newest saved state and its progress record (for resuming)."""
        self.wait()
        return _restore(self.latest, self.run_dir / "latest", abstract_state)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()


def _restore(
    manager: ocp.CheckpointManager, where: Path, abstract_state: Any, step: int | None = None
) -> tuple[TrainState, dict[str, Any]]:
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"{where}: no finished checkpoint step found")
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_on_disk(abstract_state)),
                progress=ocp.args.JsonRestore(),
            ),
        )
    except Exception as err:  # Orbax raises many types; the user needs the folder and a hint.
        raise CheckpointError(
            f"{where}/{step}: cannot restore the ensemble state ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). The checkpoint is damaged or was "
            "written for another model, width, depth, number of seeds or optimizer than the "
            "config beside it describes."
        ) from err
    return _from_disk(restored["state"], abstract_state), dict(restored["progress"] or {})


def restore_dir(directory: Path, abstract_state: Any) -> tuple[TrainState, dict[str, Any]]:
    """Restore the newest step under a ``latest/`` or ``best/`` folder (read-only)."""
    directory = Path(directory).resolve()  # Orbax rejects relative paths
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found")
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    with ocp.CheckpointManager(directory, options=options, item_names=("state", "progress")) as mgr:
        return _restore(mgr, directory, abstract_state)


def save_dir(directory: Path, state: TrainState, progress: dict[str, Any]) -> None:
    """Synchronously save one state into ``directory/<step>`` (used for Ray Tune checkpoints)."""
    step = int(progress.get("epoch", 0))
    with _manager(Path(directory), async_save=False) as mgr:
        mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_on_disk(state)),
                progress=ocp.args.JsonSave(progress),
            ),
            force=True,
        )


def write_run_files(run_dir: Path, config_json: str, meta: dict[str, Any]) -> None:
    """Save the config and metadata beside the checkpoints (atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", json.loads(config_json))
    write_json_atomic(run_dir / "meta.json", meta)


def read_run_files(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """Return ``(config_json, meta)`` of a run folder, with clear errors when absent or broken."""
    run_dir = Path(run_dir)
    out = []
    for name in ("config.json", "meta.json"):
        path = run_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; is {run_dir} an ecgjax run or trial folder?")
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable JSON ({err})") from err
    return json.dumps(out[0]), out[1]


def find_run_dir(path: Path) -> tuple[Path, str]:
    """Resolve a user-given folder to ``(run_dir, which)`` with ``which`` in {best, latest}.

    Accepts a run folder, its ``best``/``latest`` sub-folder, or a sweep's ``best`` folder
    (which is itself a run folder).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if path.name in ("best", "latest") and (path.parent / "config.json").is_file():
        return path.parent, path.name
    if (path / "config.json").is_file():
        which = "best" if (path / "best").is_dir() else "latest"
        return path, which
    raise CheckpointError(
        f"{path}: not an ecgjax checkpoint folder (expected config.json with best/ or latest/ beside it)"
    )
