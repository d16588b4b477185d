"""Objectives (one module each), looked up by ``objective.name``."""

from nas_cli.objectives import first_order  # noqa: F401  (registers single_level, bilevel)
from nas_cli.objectives import unrolled  # noqa: F401  (registers bilevel_unrolled)
from nas_cli.objectives import f2ba  # noqa: F401  (registers f2ba)
from nas_cli.objectives import moreau  # noqa: F401  (registers moreau)
from nas_cli.objectives.base import OBJECTIVES, Batch, Objective, StepContext, StepOut

__all__ = ["OBJECTIVES", "Batch", "Objective", "StepContext", "StepOut"]
