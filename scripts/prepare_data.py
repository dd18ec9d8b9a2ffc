"""Prepare the MIT-BIH beat datasets from WFDB records.

    uv run scripts/prepare_data.py --source ../shared/data/mitdb   # local records, ~15 s
    uv run scripts/prepare_data.py --download                      # from PhysioNet (online)

Writes data/heart_big_{train,test}.parq, data/mitbih_ds{1,2}.parq, a summary and a manifest.
A second run with the same inputs does nothing; --force rebuilds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecgjax import paths
from ecgjax.prepare import PrepareError, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Prepare the MIT-BIH beat datasets from WFDB records."
    )
    parser.add_argument("--source", type=Path, help="folder with the WFDB records (mitdb)")
    parser.add_argument("--download", action="store_true", help="download mitdb from PhysioNet")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data/)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--strict", action="store_true", help="fail on any damaged record")
    args = parser.parse_args(argv)
    if (args.source is None) == (not args.download):
        parser.error("give exactly one of --source DIR or --download")
    try:
        prepare(
            args.source,
            args.out or paths.data_dir(),
            download=args.download,
            force=args.force,
            strict=args.strict,
        )
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
