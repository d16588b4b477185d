"""Child-process entry of ``nas-bench``: ``python -m nas_cli.bench.worker SPEC.json OUT.json``.

Measures one workload variant (nas_cli.bench.runner.RunSpec) and writes its row atomically;
user errors end with one line on stderr, which the parent shows in the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nas_cli.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from nas_cli.bench.runner import RunSpec, run_in_process
    from nas_cli.runtime.console import error_line
    from nas_cli.runtime.io import atomic_write_json

    spec_path, out_path = (sys.argv[1:] if argv is None else argv)[:2]
    spec = RunSpec.from_json(json.loads(Path(spec_path).read_text()))
    try:
        row = run_in_process(spec)
    except UserError as exc:
        error_line(str(exc))
        return exc.exit_code
    atomic_write_json(out_path, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
