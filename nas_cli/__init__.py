"""nas_cli: run, compare and reproduce gradient-based weight-sharing NAS.

A NAS method is a composition of three seams (see docs/architecture.md):
a *relaxation* of the search space (``nas_cli.arch``), an *optimizer* for the
architecture parameters (``nas_cli.optim``) and an *objective* that interleaves
weight and architecture updates (``nas_cli.objectives``).
"""

__version__ = "0.1.0"
