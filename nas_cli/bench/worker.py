"""Child-process entry of ``nas-bench``: ``python -m nas_cli.bench.worker SPEC.json OUT.json``.

Measures one workload variant (nas_cli.bench.runner.RunSpec) and writes its row atomically;
user errors and crashes end with one line on stderr, which the parent shows in the table (a crash's
traceback comes before it and is kept in the row's ``error_log``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from nas_cli.errors import UserError


def failure_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line: multi-line errors (Inductor's, torch.library's) end with a
    generic pointer, so their first lines are the informative ones."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
    except Exception as exc:  # a crash: the traceback for the log, then one line for the table
        traceback.print_exc()
        error_line(failure_line(exc))
        return 1
    atomic_write_json(out_path, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
