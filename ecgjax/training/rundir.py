"""Run folders that are never shared and never overwritten by accident.

A run owns ``checkpoints/<name>/`` from the moment :func:`claim` creates it with ``os.mkdir``
(exclusive: of two runs started at the same second, one gets the folder, the other an
error or, for default names, another random suffix). Reusing a name needs ``--resume``
(continue that run) or ``--overwrite`` (delete it and start again). ``RESUME.txt`` in the
folder says how to continue the run until it finishes, so a killed run explains itself.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from ecgjax import config as config_lib
from ecgjax.errors import UserError

RESUME_NOTE = "RESUME.txt"
RESUMABLE_DIFFERENCES = ("train.epochs",)  # a resumed run may train longer; nothing else changes


class RunDirError(UserError):
    """A run name is taken, missing for ``--resume``, or not a valid folder name."""


def default_name(stem: str) -> str:
    """``<stem>-<date>-<time>-<4 hex>``: readable, sortable, and unique between simultaneous starts."""
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def claim(
    root: Path, name: str | None, stem: str, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """The folder of run ``name`` under ``root``: created exclusively, or existing for ``resume``.

    Raises:
        RunDirError: ``resume`` without a name or of a run that does not exist; a name that is
            taken without ``resume``/``overwrite``; a name that leaves ``root``.
    """
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite deletes it: give one of them")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if name is None:
        if resume:
            raise RunDirError("--resume needs --name NAME (the run's folder under checkpoints/)")
        for _ in range(100):
            path = root / default_name(stem)
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
        raise RunDirError(f"{root}: could not create a fresh run folder")  # pragma: no cover
    path = root / name
    if not name.strip() or Path(name).is_absolute() or ".." in Path(name).parts:
        raise RunDirError(f"--name {name!r}: use a plain folder name (created under {root})")
    if resume:
        if not path.is_dir():
            raise RunDirError(
                f"{path}: no run named {name!r} to resume; drop --resume to start it, or check "
                f"the name (runs are the folders in {root})"
            )
        return path  # killed before its first checkpoint: it starts again from epoch 1
    if overwrite and path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path)
    except FileExistsError:
        raise RunDirError(
            f"{path}: a run named {name!r} exists; continue it with --resume, or start again "
            "with --overwrite (deletes it) or another --name"
        ) from None
    return path


def _config_file(run_dir: Path) -> Path | None:
    """The run's saved config (a cross-validated run keeps one per fold)."""
    for candidate in (run_dir / "config.json", run_dir / "fold0" / "config.json"):
        if candidate.is_file():
            return candidate
    return None


def check_resume_config(run_dir: Path, config: ml_collections.ConfigDict) -> None:
    """Refuse to resume ``run_dir`` with a config other than the one it was started with.

    Only ``train.epochs`` may change (train a finished run longer). Anything else would
    restore a checkpoint into a different model, or silently change the data or the optimiser.

    Raises:
        RunDirError: the configs differ; names up to three keys with both values.
    """
    saved_file = _config_file(run_dir)
    if saved_file is None:
        return
    try:
        saved = config_lib.flatten(config_lib.from_json(saved_file.read_text()))
    except (OSError, ValueError) as err:
        raise RunDirError(
            f"{saved_file}: unreadable ({err}); cannot check the resumed config"
        ) from None
    now = config_lib.flatten(config_lib.from_json(config_lib.to_json(config)))
    diff = [
        k
        for k in sorted(set(saved) | set(now))
        if k not in RESUMABLE_DIFFERENCES and _norm(saved.get(k)) != _norm(now.get(k))
    ]
    if diff:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise RunDirError(
            f"{run_dir}: --resume with a config that differs from the run's {saved_file.name} in "
            f"{shown}{more}; resume with the run's own config, or start again with --overwrite "
            "or another --name"
        )


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def resume_command(argv: Sequence[str] | None, name: str) -> str:
    """The command that continues run ``name``: the script's own arguments with ``--resume``."""
    if not argv:
        return f"uv run scripts/train.py --config <the run's config> --name {shlex.quote(name)} --resume"
    args: list[str] = []
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--name", "--resume", "--overwrite", "--noresume", "--nooverwrite"):
            skip = arg == "--name"
            continue
        if arg.startswith(("--name=", "--resume=", "--overwrite=")):
            continue
        args.append(arg)
    script = Path(argv[0]).as_posix()
    script = "scripts/" + Path(script).name if "scripts/" in script else script
    return shlex.join(["uv", "run", script, *args, "--name", name, "--resume"])


def write_resume_note(run_dir: Path, command: str) -> None:
    """``RESUME.txt``: how to continue this run; removed when it finishes."""
    (run_dir / RESUME_NOTE).write_text(
        "This run has not finished (it is running, or it was interrupted).\n"
        f"Continue it from its last finished epoch with:\n\n    {command}\n"
    )


def release(run_dir: Path) -> None:
    """Remove a freshly claimed folder that holds nothing but its resume note (a start that
    failed on a user error), so the name is free again."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {RESUME_NOTE}:
        shutil.rmtree(run_dir)


def clear_resume_note(run_dir: Path) -> None:
    (run_dir / RESUME_NOTE).unlink(missing_ok=True)
