"""Writing prepared data sets: checksums, manifests, and all-or-nothing replacement of outputs.

Both preparations (the MIT-BIH splits in :mod:`ecgjax.data.prepare`, any other WFDB database in
:mod:`ecgjax.data.prepare_db`) write every output to a temp file beside it and rename the temps over
the old files only once all are complete, the manifest last. A crash leaves the earlier outputs
untouched, and a half-renamed set never matches its manifest, so the next run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_checksums(source: Path, files: Sequence[Path]) -> dict[str, str | None]:
    """``{path relative to source: sha256 or None when missing}`` for the manifest."""
    return {
        str(f.relative_to(source)) if f.is_relative_to(source) else str(f): (
            sha256(f) if f.is_file() else None
        )
        for f in files
    }


def versions() -> dict[str, str]:
    """Python and the package versions that shape the outputs."""
    out = {"python": platform.python_version()}
    for pkg in ("ecgjax", "numpy", "scipy", "wfdb", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def read_manifest(
    path: Path, inputs: Mapping[str, Any], params: Mapping[str, Any], outputs: set[str]
) -> dict[str, Any] | None:
    """The manifest at ``path`` if the outputs are up to date, else ``None``.

    Up to date: same inputs and parameters, the same output keys, and every output file (named
    relative to the manifest's folder) present with its recorded checksum.
    """
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    same_params = manifest.get("parameters") == json.loads(json.dumps(params))
    recorded = manifest.get("outputs", {})
    if manifest.get("inputs") != inputs or not same_params or set(recorded) != outputs:
        return None
    for entry in recorded.values():
        f = path.parent / entry["file"]
        if not f.is_file() or sha256(f) != entry["sha256"]:
            return None
    return manifest


_TEMP_TAG = ".tmp"
_TEMP = re.compile(r"\.tmp(\d+)$")


def remove_stale_temps(finals: Sequence[Path]) -> list[Path]:
    """Delete the temp files that a killed run left beside ``finals``.

    Temps are hidden files named after an output and ending in ``.tmp<pid>`` (those of
    :func:`staged`, and the parquet writer's own temp inside them); one is stale when that
    process no longer runs (a live one belongs to a preparation running right now). Returns
    the removed paths.
    """
    removed = []
    folders = {final.parent for final in finals}
    names = [final.name for final in finals]
    for folder in folders:
        for temp in folder.iterdir() if folder.is_dir() else []:
            match = _TEMP.search(temp.name)
            ours = temp.name.startswith(".") and any(n in temp.name for n in names)
            if match and ours and not _alive(int(match.group(1))):
                temp.unlink(missing_ok=True)
                removed.append(temp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staged(finals: Sequence[Path]) -> Iterator[dict[Path, Path]]:
    """Yield ``{final path: temp path}``; when the block succeeds, rename the temps in order.

    Put the manifest last in ``finals``. The temps are removed whatever happens, so a failure in
    the block (or in a rename) leaves no stray files.
    """
    tag = f"{_TEMP_TAG}{os.getpid()}"
    temps = {p: p.with_name(f".{p.name}{tag}") for p in finals}
    try:
        yield temps
        for p in finals:
            os.replace(temps[p], p)
    finally:
        for t in temps.values():
            t.unlink(missing_ok=True)
