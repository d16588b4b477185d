"""``python -m nas_cli.oracle export BENCHMARK.pth table.csv``: write the compact NB201 table."""

from __future__ import annotations

import argparse
import sys

from nas_cli.errors import UserError
from nas_cli.oracle.nb201 import export_table, load_nb201_oracle
from nas_cli.runtime.console import console, error_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nas_cli.oracle", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="benchmark file (or table) -> compact .csv/.json table")
    ex.add_argument("source")
    ex.add_argument("dest")
    args = p.parse_args(argv)
    try:
        oracle = load_nb201_oracle(args.source)
        export_table(oracle.table, args.dest)
    except UserError as e:
        error_line(str(e))
        return e.exit_code
    console.print(f"wrote {len(oracle.table):,} architectures ({', '.join(oracle.datasets)}) to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
