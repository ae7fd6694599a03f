"""The one exception type users see, the exit codes, and what an OSError means to a user.

Anything the user can fix (a bad flag, a malformed row, a prompt for another
model) raises `SoftPromptError` with a message that names the file, line or
field and says what to do. The CLI prints the message without a traceback;
anything else escaping is a bug in softprompt and is reported as one.
Every command exits with one of the codes below (docs/cli.md, "Exit codes").
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_OK = 0  # everything asked for was done
EXIT_SOME_FAILED = 1  # the command ran, but some inputs (rows, prompts named in rows) failed
EXIT_USAGE = 2  # a bad flag, input file, prompt folder, output path or environment: nothing useful was done
EXIT_INTERNAL = 70  # a bug in softprompt (sysexits' EX_SOFTWARE); the traceback is printed
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2, the shell's convention)


class SoftPromptError(Exception):
    """A mistake in the user's input, explained in the message."""


class DataError(SoftPromptError):
    """A problem with a data file: the message names file, line and field."""


class PromptNotLoaded(SoftPromptError):
    """A request names a prompt that is not loaded (never was, or was removed while it waited)."""


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


class MissingExtraError(SoftPromptError):
    """An optional dependency is not installed; the message names the extra that brings it."""


# What to do about the OSErrors a user can cause or fix; anything else gets its own strerror only.
_OS_HINTS = {
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "that file system is read-only: choose a path on another one",
    errno.ENOSPC: "the disk is full: free some space or choose a path on another disk",
    errno.EDQUOT: "your disk quota is used up: free some space or choose a path on another disk",
    errno.ENOENT: "check the path",
    errno.EISDIR: "that is a folder: give the path of a file",
    errno.ENOTDIR: "part of that path is a file, not a folder: check the path",
    errno.EEXIST: "something is already there: remove it or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer inputs at once",
    errno.EIO: "the device reported an I/O error: check the disk",
}


def describe_os_error(e: OSError) -> str:
    """'PATH: Permission denied; check its permissions, ...' (the file first, then what to do)."""
    what = e.strerror or str(e) or type(e).__name__
    where = ", ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    hint = _OS_HINTS.get(e.errno)
    return f"{where + ': ' if where else ''}{what}{'; ' + hint if hint else ''}"
