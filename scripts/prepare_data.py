"""Prepare beat datasets from WFDB records: the MIT-BIH splits, or any other annotated database.

    uv run scripts/prepare_data.py --source DIR                    # MIT-BIH splits, ~15 s
    uv run scripts/prepare_data.py --download                      # from PhysioNet (resumable, verified)
    uv run scripts/prepare_data.py --source DIR --name incart      # data/incart.parq + .json
    uv run scripts/prepare_data.py --source DIR --name svdb --lead ECG1 --annotator atr

Without --name: data/heart_big_{train,test}.parq, data/mitbih_ds{1,2}.parq, a summary and a
manifest. With --name: data/NAME.parq (resampled to 125 Hz, lead by name) and data/NAME.json;
the exit status is 1 when records were skipped (named in the table and on the last line).
A second run with the same inputs does nothing; --force rebuilds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecgjax import paths
from ecgjax.data.prepare import PrepareError, prepare
from ecgjax.data.prepare_db import DatabaseResult, prepare_database
from ecgjax.errors import one_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Prepare beat datasets from WFDB records (MIT-BIH, or any database with --name)."
    )
    parser.add_argument("--source", type=Path, help="folder with the WFDB records")
    parser.add_argument("--download", action="store_true", help="download mitdb from PhysioNet")
    parser.add_argument(
        "--name", help="prepare another database as data/NAME.parq (not the MIT-BIH splits)"
    )
    parser.add_argument(
        "--lead", help="with --name: use this lead (default: MLII, II, ML2, V5, V1, first)"
    )
    parser.add_argument("--annotator", help="with --name: annotation file extension (default: atr)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data/)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--strict", action="store_true", help="write nothing if any record is damaged or skipped"
    )
    parser.add_argument("--debug", action="store_true", help="full traceback of errors")
    args = parser.parse_args(argv)
    if (args.source is None) == (not args.download):
        parser.error("give exactly one of --source DIR or --download")
    if args.name is None and (args.lead is not None or args.annotator is not None):
        parser.error("--lead and --annotator go with --name (MIT-BIH uses MLII and atr)")
    if args.name is not None and args.download:
        parser.error("--name needs --source DIR (--download fetches MIT-BIH only)")
    out = args.out or paths.data_dir()
    try:
        if args.name is None:
            done = prepare(
                args.source, out, download=args.download, force=args.force, strict=args.strict
            )
            skipped = len(done.damaged)
        else:
            skipped = len(_database(args, out).skipped)
    except PrepareError as e:
        if args.debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    if skipped:
        print(f"{skipped} record(s) skipped: exit status 1", file=sys.stderr)
        return 1
    return 0


def _database(args: argparse.Namespace, out: Path) -> DatabaseResult:
    return prepare_database(
        args.source,
        out,
        args.name,
        lead=args.lead,
        annotator=args.annotator or "atr",
        force=args.force,
        strict=args.strict,
    )


if __name__ == "__main__":
    sys.exit(main())
