"""The `softprompt` command: a thin dispatcher over `softprompt.commands.*`.

Each subcommand lives in its own module with `NAME`, `HELP`, `add_arguments(parser)`
and `run(args) -> int`; heavy imports (torch, transformers) happen inside `run`
so `softprompt --help` answers at once. User mistakes arrive as SoftPromptError
and are printed as one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import SoftPromptError

COMMANDS = ("quickstart", "train", "eval", "predict", "generate", "info", "inspect", "serve", "compare", "studio")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softprompt", description="Prompt tuning for frozen language models.")
    parser.add_argument("--version", action="version", version=f"softprompt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"softprompt.commands.{name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except SoftPromptError as e:
        print(f"softprompt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"softprompt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
