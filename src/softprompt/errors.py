"""The one exception type users see.

Anything the user can fix (a bad flag, a malformed row, a prompt for another
model) raises `SoftPromptError` with a message that names the file, line or
field and says what to do. The CLI prints the message without a traceback;
anything else escaping is a bug in softprompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SoftPromptError(Exception):
    """A mistake in the user's input, explained in the message."""


class DataError(SoftPromptError):
    """A problem with a data file: the message names file, line and field."""


class PromptFileError(SoftPromptError):
    """A prompt folder is missing, corrupt, or does not fit the base model."""


class FieldError(SoftPromptError):
    """A setting with a bad value. `field` is the setting's name in the code (e.g. "batch_size").

    Each front end words the setting its own way (the CLI as `--batch-size`, the studio as its form
    label) with `worded`, so one message serves them all. `problem` is the rest of the sentence after
    the setting's name ("must be at least 1", ": cannot read ..."), or a function of the namer when
    the message names more than one setting.
    """

    def __init__(
        self,
        field: str,
        problem: str | Callable[[Callable[[str], str]], str],
        name: Callable[[str], str] = str,
    ):
        self.field, self.problem, self.name = field, problem, name
        text = problem(name) if callable(problem) else name(field) + ("" if problem[:1] in ":;," else " ") + problem
        super().__init__(text)

    def worded(self, name: Callable[[str], str]) -> FieldError:
        """The same error, naming settings with `name` (field name -> the front end's word)."""
        return FieldError(self.field, self.problem, name)


@contextmanager
def worded(name: Callable[[str], str]) -> Iterator[None]:
    """Re-raise a FieldError from the block naming settings with `name`."""
    try:
        yield
    except FieldError as e:
        raise e.worded(name) from None
