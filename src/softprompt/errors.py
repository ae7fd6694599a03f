"""The one exception type users see.

Anything the user can fix (a bad flag, a malformed row, a prompt for another
model) raises `SoftPromptError` with a message that names the file, line or
field and says what to do. The CLI prints the message without a traceback;
anything else escaping is a bug in softprompt.
"""


class SoftPromptError(Exception):
    """A mistake in the user's input, explained in the message."""


class DataError(SoftPromptError):
    """A problem with a data file: the message names file, line and field."""


class PromptFileError(SoftPromptError):
    """A prompt folder is missing, corrupt, or does not fit the base model."""
