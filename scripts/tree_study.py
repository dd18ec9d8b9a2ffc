"""Fit the tree model on a CV run's folds and blend it into the out-of-fold pool.

    uv run scripts/train.py --config configs/interpatient.py --config.data.cv_folds=4 --name ip_cv4
    uv run scripts/tree_study.py checkpoints/ip_cv4 --weight=0.5      # -> checkpoints/ip_cv4-trees0.5
    uv run scripts/cv_compare.py checkpoints/ip_cv4 checkpoints/ip_cv4-trees0.5

Each fold's trees (ecgjax/training/trees.py: gradient-boosted trees on patient-normalised RR and
QRS features) learn from the fold's training records and predict its held-out records; the
blend ``(1 - w) * CNN + w * trees`` is written as a CV folder that ``cv_compare.py`` pairs with
the original beat for beat (``--weight=1``: the trees alone). Only the training patients are
read: fit for choosing (ecgjax/studies/tree_blend.py).
"""

from pathlib import Path

from absl import app, flags
from rich.console import Console

from ecgjax import cli, paths

_WEIGHT = flags.DEFINE_float("weight", 0.5, "Tree weight in the blend (1: the trees alone).")
_NAME = flags.DEFINE_string(
    "name", None, "Folder under checkpoints/ for the new pool (default: <run>-trees<weight>)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing folder of that name.")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("give one cross-validation run folder (checkpoints/<run>)")
    # scikit-learn, JAX and the data load after the flags: --help and usage errors answer at once.
    from ecgjax.scoring.aami_tables import gross_table
    from ecgjax.studies import tree_blend

    cv_dir = Path(argv[1])
    name = _NAME.value or tree_blend.default_name(cv_dir, _WEIGHT.value)
    out_dir = paths.checkpoints_dir() / name
    console = Console(width=160)

    def on_fold(i: int, k: int) -> None:
        console.print(f"fold {i + 1}/{k}: fitting trees on its training records")

    summary = tree_blend.blend_pool(
        cv_dir, _WEIGHT.value, out_dir, overwrite=_OVERWRITE.value, on_fold=on_fold
    )
    section = summary["out_of_fold"]
    console.print(gross_table(section, f"{cv_dir.name} blended with trees (w={_WEIGHT.value:g})"))
    console.print(
        f"wrote {out_dir} (oof.npz, cv.json, fold<i>/trees.pkl); compare: "
        f"uv run scripts/cv_compare.py {cv_dir} {out_dir}"
    )


if __name__ == "__main__":
    cli.run(main)
