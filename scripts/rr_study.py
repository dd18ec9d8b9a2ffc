"""Beat only vs beat + RR context, on the beat-level and the inter-patient split (issue 7).

    uv run scripts/rr_study.py                                   # train all arms, then analyse
    uv run scripts/rr_study.py --stage analyse --out report/rr_study   # re-analyse saved predictions
    uv run scripts/rr_study.py --set train.epochs=1 --set train.steps_per_epoch=20   # quick look

Trains 3 protocols x 2 arms x --seeds seeds (~16 minutes on a 2-core CPU),
saves the test predictions, and compares the arms with a paired bootstrap.
"""

import argparse
import ast
import sys
from pathlib import Path

from ecgjax import paths
from ecgjax.errors import UserError, one_line
from ecgjax.runtime import configure_jax
from ecgjax.studies.rr_study import PROTOCOLS


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=("train", "analyse", "all"), default="all")
    parser.add_argument("--out", type=Path, default=paths.report_dir() / "rr_study")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--protocol",
        action="append",
        choices=sorted(PROTOCOLS),
        help="train only this protocol (repeatable); others' saved results are kept",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="config override for every arm",
    )
    parser.add_argument("--debug", action="store_true", help="full traceback of errors")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--journal", action="store_true", help="append hypothesis and result to report/journal.md"
    )
    parser.add_argument(
        "--hypothesis",
        default="RR-interval context raises S recall on new patients (DS2) by >= 0.2 "
        "without costing more than 0.05 of V recall",
    )
    args = parser.parse_args()
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    configure_jax()
    if args.stage in ("train", "all"):
        from ecgjax.studies.rr_study import train_arms

        protocols = {p: PROTOCOLS[p] for p in (args.protocol or PROTOCOLS)}
        if args.journal:
            from ecgjax.tuning import journal

            journal.add_hypothesis(
                "rr_study",
                args.hypothesis,
                ", ".join(f"{p}: {f}" for p, f in protocols.items()),
                {"seeds": str(args.seeds), "overrides": str(overrides)},
            )

        train_arms(args.out, seeds=args.seeds, overrides=overrides, protocols=protocols)
    if args.stage in ("analyse", "all"):
        from ecgjax.studies.rr_analysis import analyse

        analyse(args.out, n_boot=args.bootstrap, journal_entry=args.journal, tracking=True)


if __name__ == "__main__":
    try:
        main()
    except (
        UserError,
        KeyError,
    ) as err:  # KeyError: --set of an unknown config path  # a bad --set value, missing data, ...: one line, exit status 2
        if "--debug" in sys.argv:
            raise
        sys.exit(print(f"error: {one_line(err)}", file=sys.stderr) or 2)
