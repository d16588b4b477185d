"""User-facing error types.

Anything raised as a :class:`UserError` is reported by the CLI as one line on
stderr with a non-zero exit code and no traceback; everything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """An error the user can fix (bad config, missing data, ...)."""

    exit_code = 2


class ConfigError(UserError):
    """Invalid or incompatible configuration values."""


class DataError(UserError):
    """Missing, corrupt or unreadable dataset files."""

    exit_code = 3


class TrainingDiverged(UserError):
    """Loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 4
