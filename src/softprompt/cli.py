"""The `softprompt` command: a thin dispatcher over `softprompt.commands.*`.

Each subcommand lives in its own module with `NAME`, `HELP`, `add_arguments(parser)`
and `run(args) -> int`. Building the parser imports no torch, transformers or
optional dependency (heavy imports happen inside `run`), so `softprompt --help`
answers at once and works without them; tests/test_cli.py holds that line.

Failures reach the user as one line naming the file and what to do, with the
exit codes of errors.py: SoftPromptError (a user mistake) and OSError (a file
that cannot be read or written, a full or read-only disk) exit 2; Ctrl-C 130.
Anything else is a bug: its traceback is printed, then an "internal error"
line asking for a report, exit 70.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import NoReturn

from . import __version__
from .errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SoftPromptError,
    describe_os_error,
)

COMMANDS = (
    "quickstart",
    "train",
    "eval",
    "predict",
    "generate",
    "info",
    "inspect",
    "serve",
    "compare",
    "studio",
    "models",
)
EPILOG = """exit codes: 0 all done; 1 some inputs failed (the others were answered); 2 a usage error, or a
bad input file, prompt folder or output path; 70 an internal error (a bug: please report it); 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softprompt",
        description="Prompt tuning for frozen language models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"softprompt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"softprompt.commands.{name}")
        command = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            epilog=EPILOG,
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring (with its example) as written, and every flag's default shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        # Flags that say their default in words already, or have none worth showing, are left alone.
        if "default" in help.lower() or action.default in (None, False, argparse.SUPPRESS, []):
            return help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prefix = f"softprompt {args.command}"
    try:
        code = args.run(args)
        return EXIT_OK if code is None else code
    except SoftPromptError as e:
        return _exit(EXIT_USAGE, f"{prefix}: error: {e}")
    except KeyboardInterrupt:
        return _exit(EXIT_INTERRUPTED, f"{prefix}: interrupted")
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OSError as e:
        return _exit(EXIT_USAGE, f"{prefix}: error: {describe_os_error(e)}")
    except MemoryError:
        return _exit(EXIT_USAGE, f"{prefix}: error: out of memory; use smaller inputs or batches (--batch-size)")
    except Exception as e:
        traceback.print_exc()
        return _exit(
            EXIT_INTERNAL,
            f"{prefix}: internal error: {type(e).__name__}: {e}\n"
            "This is a bug in softprompt: please report it with the command you ran and the traceback above.",
        )


def _exit(code: int, message: str) -> int:
    """Say why on stderr; the exit status to return."""
    print(message, file=sys.stderr)
    return code


def entry() -> NoReturn:
    """The `softprompt` script and `python -m softprompt` (what torchrun starts): main(), then exit with its code."""
    code = main()
    if "torch" in sys.modules and os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        # One rank of a launched run: its process group's threads must not outlive the interpreter.
        from .distributed import exit_process

        exit_process(code)
    sys.exit(code)


def _quiet_broken_pipe() -> int:
    # The reader of stdout went away (`softprompt predict ... | head`): stop quietly, as Unix tools do,
    # and keep Python from complaining again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe


if __name__ == "__main__":
    entry()
