"""Architecture parameterisations and sampling (the relaxation seam)."""

from nas_cli.arch.parameterizations import PARAMETERIZATIONS, Parameterization
from nas_cli.arch.params import ArchParameters
from nas_cli.arch.sampling import SAMPLINGS, Sampling
from nas_cli.arch.segments import entropy, segment_apply

__all__ = ["PARAMETERIZATIONS", "SAMPLINGS", "ArchParameters", "Parameterization", "Sampling",
           "entropy", "segment_apply"]
