"""`softprompt studio --model M --data-dir DIR`: the web studio (train, try, inspect, download) on loopback."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

NAME = "studio"
HELP = "open the web studio: upload data, train prompts in the background, try, compare, inspect and download them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models import DEFAULT_MODEL
    from ..studio.uploads import DEFAULT_MAX_BYTES

    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="the studio's folder: prompts/ (served), uploads/, jobs/ (kept across restarts); created if missing",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20, help="largest data file accepted (MiB)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from ..errors import SoftPromptError
    from ..infer import Predictor
    from ..models import load_base_model
    from ..serve.registry import PromptRegistry
    from ..serve.server import uvicorn_server
    from ..studio.routes import DataFolder, create_studio_app
    from .serve import _is_loopback

    if not 0 <= args.port <= 65535:
        raise SoftPromptError(f"--port must be 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise SoftPromptError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not _is_loopback(args.host):
        print(
            f"softprompt studio: warning: listening on {args.host}: anyone who can reach it can upload data "
            "and start training; the studio has no login",
            file=sys.stderr,
        )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folders = DataFolder(args.data_dir)
    print(f"softprompt studio: loading {args.model} ...", file=sys.stderr)
    base = load_base_model(args.model, device=args.device)
    predictor = Predictor(base)
    registry = PromptRegistry(folders.prompts, predictor, base)
    app = create_studio_app(predictor, registry, base, folders.root, max_upload_bytes=int(args.max_upload_mb * 2**20))
    # Bind first so the printed address is the real one, also with --port 0.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise SoftPromptError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); try another --port") from None
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(
        f"softprompt studio: open http://{shown}:{port}/studio/  (data in {folders.root}; Ctrl-C to stop)", flush=True
    )
    uvicorn_server(app, host=args.host, port=port, log_level=args.log_level).run(sockets=[sock])
    return 0
