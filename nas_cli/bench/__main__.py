"""``python -m nas_cli.bench`` is ``nas-bench``."""

from nas_cli.bench.cli import cli

cli()
