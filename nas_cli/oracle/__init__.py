"""Benchmark oracles (tabular look-ups of discrete architectures), by ``oracle.name``."""

from nas_cli.oracle import nb201  # noqa: F401  (registers "nb201")
from nas_cli.oracle.base import ORACLES, Oracle

__all__ = ["ORACLES", "Oracle"]
