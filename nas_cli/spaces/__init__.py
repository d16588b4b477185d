"""Search spaces.  Importing this package registers every built-in space in ``SPACES``."""

from nas_cli.spaces import darts  # noqa: F401  (registers "darts")
from nas_cli.spaces import nb201  # noqa: F401  (registers "nb201")
from nas_cli.spaces.base import SPACES, ArchTensorSpec, RelaxationSpec, SearchSpace, count_parameters

__all__ = ["SPACES", "ArchTensorSpec", "RelaxationSpec", "SearchSpace", "count_parameters"]
