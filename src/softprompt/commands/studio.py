"""`softprompt studio --model M --data-dir DIR`: the web studio (train, try, inspect, download) on loopback.

Example (then open the address it prints):

    softprompt studio --data-dir studio-data"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from ..errors import SoftPromptError, worded
from .options import add_listen_arguments, add_model_options, is_loopback, listen_hosts, load_model
from .train import flag

NAME = "studio"
HELP = "open the web studio: upload data, train prompts in the background, try, compare, inspect and download them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..model_names import DEFAULT_MODEL
    from ..studio.settings import MIB, StudioSettings

    d = StudioSettings()
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="the studio's folder: prompts/ (served), uploads/, jobs/ (kept across restarts); created if missing",
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / MIB,
        help="largest data file accepted (MiB; default: %(default)g)",
    )
    parser.add_argument(
        "--uploads-quota-mb",
        type=float,
        default=d.max_uploads_bytes / MIB,
        help="all uploads together (MiB; default: %(default)g)",
    )
    parser.add_argument(
        "--max-queued-jobs",
        type=int,
        default=d.max_queued_jobs,
        help="jobs queued or running at once (default: %(default)s)",
    )
    parser.add_argument(
        "--max-jobs",
        type=int,
        default=d.max_jobs,
        help="job folders kept; delete finished ones to make room (default: %(default)s)",
    )
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="steps of one job (default: %(default)s)")
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="default: %(default)s")
    parser.add_argument(
        "--max-num-virtual-tokens",
        type=int,
        default=d.max_num_virtual_tokens,
        help="prompt length cap (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-quota-mb",
        type=float,
        default=d.max_cache_bytes / MIB,
        help="cached inspect plots; the oldest go first (MiB; default: %(default)g)",
    )
    add_model_options(parser)
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def studio_settings(args: argparse.Namespace):
    from ..studio.settings import MIB, StudioSettings

    def mib(flag: str, value: float) -> int:
        if not value > 0:
            raise SoftPromptError(f"{flag} must be positive, got {value}")
        return max(1, int(value * MIB))

    with worded(flag):
        return StudioSettings(
            max_upload_bytes=mib("--max-upload-mb", args.max_upload_mb),
            max_uploads_bytes=mib("--uploads-quota-mb", args.uploads_quota_mb),
            max_queued_jobs=args.max_queued_jobs,
            max_jobs=args.max_jobs,
            max_steps=args.max_steps,
            max_batch_size=args.max_batch_size,
            max_num_virtual_tokens=args.max_num_virtual_tokens,
            max_cache_bytes=mib("--cache-quota-mb", args.cache_quota_mb),
        )


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
