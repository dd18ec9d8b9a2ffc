"""The rhythm-context experiment (issue 7): beat only vs beat + RR, same architecture.

Three protocols, each a config file: the beat-level split (``configs/resnet1d.py``; patients
shared between train and test, optimistic), the inter-patient split
(``configs/interpatient_resnet1d.py``; DS1 -> DS2, new patients) and the same reversed
(``:reverse``; DS2 -> DS1). Each arm trains a seed
ensemble; the test predictions are saved so the comparison (a paired bootstrap on the same
test beats) can be re-run or re-analysed without retraining, also on another machine.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgjax import config as config_lib
from ecgjax import data as data_lib
from ecgjax import paths
from ecgjax.training.checkpoint import write_json_atomic
from ecgjax.training.experiment import train_run
from ecgjax.training.validate import validate

PROTOCOLS = {
    "beat-level": "configs/resnet1d.py",
    "inter-patient": "configs/interpatient_resnet1d.py",
    # The rhythm branch was designed looking at DS2; swapping the roles gives test patients
    # (DS1) that no design decision saw.
    "inter-patient-reverse": "configs/interpatient_resnet1d.py:reverse",
}
ARMS = {"beat": False, "beat+rr": True}
EXPERIMENT = "ecgjax-rr-study"


def arm_config(config_file: str, rr: bool, seeds: int, overrides: dict[str, Any]) -> Any:
    """The protocol's config with only the RR switch (and the shared overrides) changed."""
    path = Path(config_file)
    base = config_lib.load_config_file(path if path.is_absolute() else paths.PROJECT_ROOT / path)
    return config_lib.with_overrides(
        base, {"model.rr_context": rr, "train.num_seeds": seeds, **overrides}
    )


def train_arms(
    out_dir: Path,
    *,
    seeds: int = 3,
    protocols: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    log: Any = print,
    progress: bool = True,
) -> Path:
    """Train every (protocol, arm) ensemble; write ``predictions.npz`` and ``arms.json``.

    Returns the path of ``arms.json``. Checkpoints go to ``out_dir/runs/<protocol>-<arm>``;
    each arm is an MLflow run (experiment ``ecgjax-rr-study``) with its curves and confusion.
    """
    plan = {
        (protocol, arm): validate(arm_config(config_file, rr, seeds, overrides or {}))
        for protocol, config_file in (protocols or PROTOCOLS).items()
        for arm, rr in ARMS.items()
    }  # every arm's config checked before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays, arms = _previous(out_dir)  # re-running one protocol keeps the others' results
    for (protocol, arm), config in plan.items():
        config_file = (protocols or PROTOCOLS)[protocol]
        splits = data_lib.load_splits(config)
        start = time.time()
        result = train_run(
            config,
            run_name=f"{protocol}-{arm}",
            run_dir=out_dir / "runs" / f"{protocol}-{arm}",
            splits=splits,
            experiment=EXPERIMENT,
            progress=progress,
            tags={"ecgjax.protocol": protocol, "ecgjax.arm": arm},
            overwrite=True,  # re-running a protocol replaces its arms (the study's own folders)
        )
        wall = time.time() - start
        assert result.test_probs is not None and result.test_report is not None
        key = f"{protocol}/{arm}"
        arrays[f"{key}/probs"] = result.test_probs.astype(np.float16)
        arrays[f"{protocol}/y"] = splits.test.y
        if splits.test.record is not None:  # per-patient breakdown in the analysis
            arrays[f"{protocol}/record"] = splits.test.record.astype(str)
        arms[key] = {
            "protocol": protocol,
            "arm": arm,
            "config_file": config_file,
            "config": json.loads(config_lib.to_json(config)),
            "seconds": wall,
            "best_epoch": result.best_epoch,
            "best_val": result.best_metric,
            "test_file": Path(splits.test.source).name,
            "class_names": list(config.data.class_names),
            "seed_mean": result.test_report["seed_mean"],
            "seed_std": result.test_report["seed_std"],
            "ensemble": result.test_report["ensemble"],
            "strategy": f"{result.strategy}/{result.dispatch}",
        }
        m = result.test_report["seed_mean"]
        log(f"{key}: {wall:.0f} s; test recall per class {np.round(m['recall'], 3).tolist()}")
    save: Any = np.savez_compressed  # numpy stubs mistype **arrays as allow_pickle
    tmp = out_dir / "predictions.tmp.npz"
    save(tmp, **arrays)
    os.replace(tmp, out_dir / "predictions.npz")
    target = out_dir / "arms.json"
    write_json_atomic(target, arms)
    return target


def _previous(out_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Results of an earlier study in ``out_dir`` (empty when there is none)."""
    arms_file, preds_file = out_dir / "arms.json", out_dir / "predictions.npz"
    if not (arms_file.is_file() and preds_file.is_file()):
        return {}, {}
    with np.load(preds_file) as preds:
        return {k: preds[k] for k in preds.files}, json.loads(arms_file.read_text())
