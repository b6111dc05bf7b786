"""Check a preference file without training: `python -m trl_ext.data check PATH [--format hh]`.

Prints rows read, rows usable, and counts by problem with the first problems located; exits 1 if any row is bad.
"""

from __future__ import annotations

import argparse
import sys

from trl_ext.data.formats import FORMATS
from trl_ext.data.loading import DataError, convert_preferences, iter_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trl_ext.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a preference file or hub dataset and count problems")
    check.add_argument("path", help="a .jsonl/.json/.parquet/.csv file (optionally .gz) or a hub dataset id")
    check.add_argument("--format", default="auto", choices=FORMATS)
    check.add_argument("--split", default="train", help="hub split (hub datasets only)")
    check.add_argument("--data-dir", default=None, help="hub data_dir, e.g. harmless-base")
    args = parser.parse_args(argv)
    try:
        records = iter_records(args.path, split=args.split, data_dir=args.data_dir)
        _, report = convert_preferences(records, source=args.path, fmt=args.format, on_invalid="skip")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
