"""`softprompt studio --model M --data-dir DIR`: the web studio (train, try, inspect, download) on loopback.

Example (then open the address it prints):

    softprompt studio --data-dir studio-data"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from dataclasses import fields

from ..errors import SoftPromptError, worded
from .options import add_listen_arguments, add_model_options, is_loopback, listen_hosts, load_model
from .train import flag

NAME = "studio"
HELP = "open the web studio: upload data, train prompts in the background, try, compare, inspect and download them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..model_names import DEFAULT_MODEL
    from ..studio.settings import MIB, StudioSettings

    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="the studio's folder: prompts/ (served), uploads/, jobs/ (kept across restarts); created if missing",
    )
    add_listen_arguments(parser)
    for f in fields(StudioSettings):  # each cap is a flag, declared on the field
        in_mib = f.name.endswith("_bytes")
        parser.add_argument(
            f.metadata["flag"],
            type=float if in_mib else int,
            default=f.default / MIB if in_mib else f.default,
            help=f"{f.metadata['help']} ({'MiB; default: %(default)g' if in_mib else 'default: %(default)s'})",
        )
    add_model_options(parser)
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def studio_settings(args: argparse.Namespace):
    """StudioSettings from its flags (a byte cap's flag in MiB, positive)."""
    from ..studio.settings import MIB, StudioSettings

    def value(name: str, field: str) -> int:
        given = getattr(args, name.lstrip("-").replace("-", "_"))
        if not field.endswith("_bytes"):
            return given
        if not given > 0:
            raise SoftPromptError(f"{name} must be positive, got {given}")
        return max(1, int(given * MIB))

    with worded(flag):
        return StudioSettings(**{f.name: value(f.metadata["flag"], f.name) for f in fields(StudioSettings)})


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("studio", "softprompt studio")
    from ..fileio import check_output_path
    from ..infer import Predictor
    from ..serve.config import ServeSettings
    from ..serve.registry import PromptRegistry
    from ..serve.server import uvicorn_server
    from ..studio.app import create_studio_app
    from ..studio.storage import DataFolder

    limits = studio_settings(args)
    settings = ServeSettings(allowed_hosts=listen_hosts(args))
    if not is_loopback(args.host):
        print(
            f"softprompt studio: warning: listening on {args.host}: anyone who can reach it can upload data "
            "and start training; the studio has no login",
            file=sys.stderr,
        )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_output_path(args.data_dir, flag="--data-dir", folder=True)
    folders = DataFolder(args.data_dir)
    base = load_model(args, "studio")
    predictor = Predictor(base)
    registry = PromptRegistry(folders.prompts, predictor, base)
    app = create_studio_app(predictor, registry, base, folders.root, settings, studio=limits)
    # Bind first so the printed address is the real one, also with --port 0.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise SoftPromptError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); try another --port") from None
    sock.listen(128)  # before the address is printed: a browser opened at once queues instead of being refused
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(
        f"softprompt studio: open http://{shown}:{port}/studio/  (data in {folders.root}; Ctrl-C to stop)", flush=True
    )
    uvicorn_server(app, host=args.host, port=port, log_level=args.log_level).run(sockets=[sock])
    return 0
