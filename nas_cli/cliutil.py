"""The shared shell of the argparse commands (``nas-report``, ``nas-arch``, ``nas-compare-objectives``).

Each command is ``main(argv) -> exit code`` (callable from tests) plus a console-script
entry that exits with it.  What they share -- parse, run, and turn a
:class:`~nas_cli.errors.UserError` into one red line on stderr and its exit code instead
of a traceback -- lives here once, so every command fails the same way.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from nas_cli.errors import UserError

Body = Callable[[argparse.Namespace], Optional[int]]


def run_command(parser: argparse.ArgumentParser, body: Body, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run ``body(args)``; returns the exit code.

    ``body`` returns None (success) or an exit code; a UserError it raises becomes a
    one-line error message and the error's exit code.  argparse's own usage errors keep
    argparse's behaviour (message + exit 2).
    """
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        rc = body(args)
    except UserError as exc:
        from nas_cli.runtime.console import error_line

        error_line(str(exc))
        return exc.exit_code
    return 0 if rc is None else int(rc)


def exit_with(main: Callable[[], int]) -> None:
    """Console-script entry: run ``main()`` and exit with its code."""
    sys.exit(main())
