"""Errors a user can cause; the CLI prints them as one line and exits non-zero."""

import re

# Values this process read from the environment for a config (`${env:NAME}`), each with that form. A message shows
# the form, never the value: a token or password stays in the environment even when it is the wrong type or path.
_FROM_ENVIRONMENT: dict[str, str] = {}
_SHORTEST_HIDDEN = 4  # shorter values are no secret, and hiding them would garble numbers in every message


def keep_out_of_messages(value: str, form: str) -> None:
    """Register a value read from the environment: UserError messages show `form` in its place."""
    if len(value) >= _SHORTEST_HIDDEN:
        _FROM_ENVIRONMENT[value] = form


def without_environment_values(text: str) -> str:
    """text with each registered environment value replaced by its `${env:NAME}` form."""
    for value in sorted(_FROM_ENVIRONMENT, key=len, reverse=True):
        # A number only where it stands alone (2048 is not hidden inside 20480); any other text wherever it is.
        pattern = rf"(?<![\w.]){re.escape(value)}(?!\w)" if _NUMBER.fullmatch(value) else re.escape(value)
        text = re.sub(pattern, lambda _m, v=value: _FROM_ENVIRONMENT[v], text)
    return text


_NUMBER = re.compile(r"[-+0-9.eE_]+")


class UserError(Exception):
    """A mistake in input, config or invocation that the user can fix; message says where and how."""

    exit_code = 2

    def __str__(self) -> str:
        return without_environment_values(super().__str__())


class ConfigError(UserError):
    """A project, template or resolved-config problem (names file:line and the fix)."""


class ModelError(UserError):
    """An invalid model specification or an unsupported checkpoint format."""


class DataError(UserError):
    """Missing, empty or malformed training data, or a stale cache."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or fails verification."""
