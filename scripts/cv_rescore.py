"""Re-score a CV run's out-of-fold pool with other prediction-time settings (no retraining).

    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 \
        --config.train.num_seeds=3 --name ip_cv4                           # the recipe's pool
    uv run scripts/cv_rescore.py checkpoints/ip_cv4 --adapt_norm=none      # -> ip_cv4-adapt_normnone
    uv run scripts/cv_rescore.py checkpoints/ip_cv4 --adapt_rounds=2       # -> ip_cv4-adapt_rounds2
    uv run scripts/cv_rescore.py checkpoints/ip_cv4 --af_gate              # -> ip_cv4-af_gateTrue
    uv run scripts/cv_rescore.py checkpoints/ip_cv4 --af_gate --af_gate_pwave=0.5
    uv run scripts/cv_rescore.py checkpoints/ip_cv4 --epoch=last           # -> ip_cv4-last
    uv run scripts/cv_compare.py checkpoints/ip_cv4 checkpoints/ip_cv4-adapt_rounds2

Each fold's checkpoint predicts its own held-out records again with the settings changed and
the pool is written as a CV folder under ``checkpoints/`` (``cv.json``, ``fold<i>/config.json``,
``oof.npz``; no model), which ``cv_compare.py`` pairs with the original beat for beat. Only the
training patients are read: fit for choosing a setting (ecgjax/studies/cv_rescore.py).
``--epoch=last`` scores each fold's last epoch, ``--epoch=best`` the one selected on its own
held-out records (optimistic: it looked at the scored beats); by default the epoch the run
pooled (``data.cv_epoch``; ``best`` for runs before 2026-12-07).
"""

import logging
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging
from rich.console import Console

from ecgjax import cli, paths
from ecgjax.scoring.af_gate import MODES

_ADAPT = flags.DEFINE_enum(
    "adapt_norm", None, ["none", "record", "normal"], "data.adapt_norm for the new pool."
)
_ROUNDS = flags.DEFINE_integer("adapt_rounds", None, "data.adapt_rounds for the new pool.")
_MIN_PROB = flags.DEFINE_float("adapt_min_prob", None, "data.adapt_min_prob for the new pool.")
_AF_GATE = flags.DEFINE_bool(
    "af_gate", None, "data.af_gate for the new pool (S moved to N in AF-like rhythm)."
)
_EPOCH = flags.DEFINE_enum(
    "epoch",
    None,
    ["best", "last"],
    "Each fold's best epoch (selected on its own held-out records) or its last (no selection "
    "on the scored beats). Default: the epoch the run pooled (data.cv_epoch).",
)
_PWAVE = flags.DEFINE_float(
    "af_gate_pwave",
    None,
    "data.af_gate_pwave for the new pool (with --af_gate: gate only where the P waves are "
    "inconsistent, their median correlation below this; 0 = off).",
)
_MODE = flags.DEFINE_enum(
    "af_gate_mode",
    None,
    list(MODES),
    "data.af_gate_mode for the new pool (a gated beat's S onto N, or conditioned away).",
)
_PREMATURITY = flags.DEFINE_float(
    "prematurity_gate",
    None,
    "data.prematurity_gate for the new pool (S conditioned away where the previous RR interval "
    "is more than this times the record's mean; 0 = off).",
)
_SV_SPLIT = flags.DEFINE_float(
    "sv_split",
    None,
    "data.sv_split for the new pool (each beat's split between S and V moved this fraction of "
    "the way to its QRS-shape cluster's; 0 = off).",
)
_TTA = flags.DEFINE_integer(
    "tta_shift",
    None,
    "data.tta_shift for the new pool (k > 0: each beat's probabilities averaged over the beat "
    "rolled by -k, 0 and +k samples; 0 = off).",
)
_NAME = flags.DEFINE_string(
    "name", None, "Folder under checkpoints/ for the new pool (default: <run>-<key><value>...)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing folder of that name.")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("give one cross-validation run folder (checkpoints/<run>)")
    # JAX, Orbax and MLflow load after the flags: --help and usage errors answer at once.
    from ecgjax.scoring.aami_tables import gross_table
    from ecgjax.studies import cv_rescore

    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax logs every restore
    logging.getLogger("absl").setLevel(logging.ERROR)
    cv_dir = Path(argv[1])
    given = {
        "data.adapt_norm": _ADAPT.value,
        "data.adapt_rounds": _ROUNDS.value,
        "data.adapt_min_prob": _MIN_PROB.value,
        "data.af_gate": _AF_GATE.value,
        "data.af_gate_pwave": _PWAVE.value,
        "data.af_gate_mode": _MODE.value,
        "data.prematurity_gate": _PREMATURITY.value,
        "data.sv_split": _SV_SPLIT.value,
        "data.tta_shift": _TTA.value,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    epoch = _EPOCH.value
    if not overrides and epoch is None:
        raise app.UsageError(
            "nothing to change: give --epoch=last, --adapt_norm, --adapt_rounds, "
            "--adapt_min_prob, --af_gate, --af_gate_pwave, --af_gate_mode, --prematurity_gate, "
            "--sv_split or --tta_shift"
        )
    name = _NAME.value or cv_rescore.default_name(cv_dir, overrides, epoch)
    out_dir = paths.checkpoints_dir() / name
    console = Console(width=160)

    def on_fold(i: int, k: int) -> None:
        console.print(f"fold {i + 1}/{k}: predicting its held-out records")

    summary = cv_rescore.rescore(
        cv_dir, overrides, out_dir, overwrite=_OVERWRITE.value, epoch=epoch, on_fold=on_fold
    )
    section = summary["out_of_fold"]
    changes = ", ".join([f"{k}={v}" for k, v in overrides.items()] + [f"epoch={summary['epoch']}"])
    console.print(gross_table(section, f"{cv_dir.name} re-scored with {changes}"))
    console.print(
        f"wrote {out_dir} (oof.npz, cv.json); compare: "
        f"uv run scripts/cv_compare.py {cv_dir} {out_dir}"
    )


if __name__ == "__main__":
    cli.run(main)
