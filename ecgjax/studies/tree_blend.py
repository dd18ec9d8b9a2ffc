"""Judge the tree model on the training patients: fit it on a CV run's folds and blend.

For each fold of a CV run the trees (:mod:`ecgjax.training.trees`) are fitted on the fold's
training records and predict its held-out records, so every training beat gets a tree
probability from a model that never saw its patient, exactly as the CNN's out-of-fold pool
was made. The blend with the CNN pool is written as a CV folder (``cv.json``,
``fold<i>/config.json``, ``fold<i>/trees.pkl``, ``oof.npz``) that ``scripts/cv_compare.py``
pairs with the original beat for beat. No test file is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax import config as config_lib
from ecgjax.data import folds
from ecgjax.errors import UserError
from ecgjax.studies import derived
from ecgjax.studies.cluster_study import load_oof
from ecgjax.training import trees


class TreeBlendError(UserError):
    """The CV folder cannot be blended (output taken, or the pool no longer matches)."""


def default_name(cv_dir: Path, weight: float) -> str:
    """``<run>-trees<weight>``, e.g. ``ip_cv4-trees0.5``."""
    return f"{cv_dir.name}-trees{weight:g}"


def blend_pool(
    cv_dir: Path,
    weight: float,
    out_dir: Path,
    *,
    params: trees.TreeParams | None = None,
    overwrite: bool = False,
    on_fold: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fit trees per fold, blend them into ``cv_dir``'s pool with ``weight``, write ``out_dir``.

    Returns the new ``cv.json`` content (``out_of_fold``: the pooled AAMI report after the
    run's cluster smoothing; ``tree_blend``: the weight and the tree settings).

    Raises:
        TreeBlendError: ``out_dir`` taken (without ``overwrite``) or the same as ``cv_dir``, a
            weight outside [0, 1], or a fold whose held-out beats no longer match the pool.
        DataError: ``cv_dir`` is not a complete CV run.
    """
    if not 0.0 <= weight <= 1.0:
        raise TreeBlendError(f"--weight must be in [0, 1], got {weight}")
    cv, config = derived.open_source(cv_dir, out_dir, overwrite=overwrite, error=TreeBlendError)
    oof = load_oof(cv_dir)
    cv_data = folds.load_cv(config)
    params = params or trees.TreeParams()
    tree_probs, models, start = [], [], 0
    for i, fold in enumerate(cv["folds"]):
        if on_fold is not None:
            on_fold(i, len(cv["folds"]))
        splits = cv_data.splits(i, config)
        val = splits.val
        record = np.asarray(val.record).astype(str)
        stop = start + len(val)
        same = (
            sorted(set(record.tolist())) == sorted(fold["val_records"])
            and stop <= len(oof["y"])
            and np.array_equal(oof["y"][start:stop], val.y)
            and np.array_equal(oof["record"][start:stop].astype(str), record)
        )
        if not same:
            raise TreeBlendError(
                f"{cv_dir / f'fold{i}'}: the training file deals other held-out beats to this "
                f"fold than {cv_dir / 'oof.npz'} holds (data changed?)"
            )
        model = trees.fit(splits.train, params)
        tree_probs.append(model.predict(val))
        models.append(model)
        start = stop
    if start != len(oof["y"]):
        raise TreeBlendError(f"{cv_dir / 'oof.npz'}: holds {len(oof['y'])} beats, folds {start}")
    pool = dict(oof)
    pool["probs"] = trees.blend(oof["probs"], np.concatenate(tree_probs), weight)
    fold_configs = [
        config_lib.from_json((cv_dir / f"fold{i}" / "config.json").read_text())
        for i in range(len(models))
    ]
    for i, model in enumerate(models):  # before cv.json, which marks the folder complete
        trees.save(model, out_dir / f"fold{i}")
    made = {
        "blended_from": str(cv_dir),
        "tree_blend": {"weight": weight, "params": asdict(params)},
    }
    return derived.write(out_dir, cv, fold_configs, pool, made)
