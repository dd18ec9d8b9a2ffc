"""A CV folder made from another one's out-of-fold pool (re-scored, or blended with trees).

``scripts/cv_rescore.py`` and ``scripts/tree_study.py`` both write a new pool for the same
training beats, so ``scripts/cv_compare.py`` can pair it with the original beat for beat. They
open the source the same way (a whole CV run, an output that replaces nothing) and write the
result the same way (``fold<i>/config.json``, then ``oof.npz`` and ``cv.json`` atomically, so a
stopped run leaves no half pool behind).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from ecgjax import config as config_lib
from ecgjax.data import DataError
from ecgjax.errors import UserError
from ecgjax.scoring.af_gate import GateSettings
from ecgjax.training.checkpoint import write_atomic, write_json_atomic
from ecgjax.training.crossval import pool_out_of_fold


def open_source(
    cv_dir: Path, out_dir: Path, *, overwrite: bool, error: type[UserError]
) -> tuple[dict[str, Any], ml_collections.ConfigDict]:
    """``cv_dir``'s ``cv.json`` and its first fold's config, once ``out_dir`` is known free.

    Raises:
        error: ``out_dir`` is ``cv_dir`` itself, or exists and ``overwrite`` is off.
        DataError: ``cv_dir`` is not a complete CV run.
    """
    cv_path = cv_dir / "cv.json"
    if not cv_path.is_file():
        raise DataError(
            f"{cv_path}: not a cross-validation run (train with --config.data.cv_folds)"
        )
    if out_dir.resolve() == cv_dir.resolve():
        raise error(f"{out_dir}: the output would replace the run it is made from")
    if out_dir.exists() and not overwrite:
        raise error(f"{out_dir}: exists; choose another --name or pass --overwrite")
    first = cv_dir / "fold0" / "config.json"
    if not first.is_file():
        raise DataError(f"{first}: missing; the CV run is incomplete or damaged")
    return json.loads(cv_path.read_text()), config_lib.from_json(first.read_text())


def write(
    out_dir: Path,
    cv: dict[str, Any],
    fold_configs: Sequence[ml_collections.ConfigDict],
    pool: dict[str, np.ndarray],
    made: dict[str, Any],
) -> dict[str, Any]:
    """Score ``pool`` as the source run scores its own and write the derived CV folder.

    Returns the new ``cv.json``: the source's, plus ``made`` (how this pool was made) and its
    ``out_of_fold`` AAMI report after the run's post-processing. Extras in the fold folders
    (``tree_study``'s ``trees.pkl``) are written before this, so ``cv.json`` comes last.
    """
    data = fold_configs[0].data
    report = pool_out_of_fold(
        pool,
        list(data.class_names),
        float(data.cluster_smoothing),
        int(data.cluster_k),
        GateSettings.from_config(data),
        float(data.get("sv_split", 0.0)),
    )
    summary = cv | made | {"out_of_fold": report}
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, fold_config in enumerate(fold_configs):
        (out_dir / f"fold{i}").mkdir(exist_ok=True)
        (out_dir / f"fold{i}" / "config.json").write_text(config_lib.to_json(fold_config))
    write_atomic(
        out_dir / "oof.npz",
        lambda f: np.savez_compressed(f, **pool),  # type: ignore[arg-type]
        binary=True,
    )
    write_json_atomic(out_dir / "cv.json", summary)
    return summary
