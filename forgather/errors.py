"""Errors a user can cause; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in input, config or invocation that the user can fix; message says where and how."""

    exit_code = 2


class ConfigError(UserError):
    """A project, template or resolved-config problem (names file:line and the fix)."""


class ModelError(UserError):
    """An invalid model specification or an unsupported checkpoint format."""


class DataError(UserError):
    """Missing, empty or malformed training data, or a stale cache."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or fails verification."""
