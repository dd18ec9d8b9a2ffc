"""The report's appendix A: the exact config of each top trial, and how to train it again.

Kept apart from the report's body (:mod:`ecgjax.reporting.report`) because it reads the
checkpoints' ``config.json`` rather than the MLflow metrics the body is built from.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ecgjax import config as config_lib
from ecgjax import paths
from ecgjax.reporting.render import Block
from ecgjax.reporting.store import Sweep, file_params

_NOT_TRAINING = ("data.class_names", "tune.", "name")  # do not change what train.py trains


def _shown(path: Path) -> str:
    """A path relative to the project when it lies inside it (reports travel; machines differ)."""
    try:
        return str(path.resolve().relative_to(paths.PROJECT_ROOT))
    except ValueError:
        return str(path)


def config_blocks(sweep: Sweep, top: int) -> list[Block]:
    """The exact config of each top trial: a train.py command and the full config."""
    config_file = sweep.parent.data.tags.get("ecgjax.config_file", "<config file>")
    base = file_params(config_file) or sweep.parent.data.params
    out = [Block("h2", "A. Exact configs of the top architectures")]
    for i, t in enumerate(sweep.ok[:top]):
        path = Path(t.checkpoint or "") / "config.json"
        if t.checkpoint and path.is_file():
            flat = config_lib.flatten(config_lib.from_json(path.read_text()))
            source = f"{_shown(path)} (saved beside the checkpoint)"
        else:
            flat, source = dict(t.params), "MLflow params (checkpoint folder not found)"
        overrides = " ".join(
            shlex.quote(f"--config.{k}={v}")
            for k, v in sorted(t.params.items())
            if k in base and base[k] != v and not k.startswith(_NOT_TRAINING)
        )
        command = f"uv run scripts/train.py --config {config_file} {overrides}".strip()
        out.append(
            Block("p", f"config from {source}; reproduce with", lead=f"A.{i + 1} {t.trial_id}:")
        )
        out.append(Block("mono", command, size=6.5))
        lines = [f"{k} = {v}" for k, v in sorted(flat.items())]
        half = (len(lines) + 1) // 2
        text = "\n".join(
            f"{a:<58}{b}" for a, b in zip(lines[:half], [*lines[half:], ""][:half], strict=True)
        )
        out.append(Block("mono", text, size=6.0))
    return out
