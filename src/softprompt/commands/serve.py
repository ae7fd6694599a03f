"""`softprompt serve --model M --prompts DIR`: one frozen model, every prompt folder under DIR, over HTTP."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

NAME = "serve"
HELP = "serve every prompt folder under DIR over HTTP (classify, OpenAI-style completions) with one base model"

API_KEY_ENV = "SOFTPROMPT_API_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..models import DEFAULT_MODEL
    from ..serve.config import ServeSettings

    d = ServeSettings()
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--prompts", required=True, metavar="DIR", help="folder of prompt folders; changes are picked up while running"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${API_KEY_ENV} if set, else no key)",
    )
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="rows per model call")
    parser.add_argument("--max-queue", type=int, default=d.max_queue, help="waiting requests before 429")
    parser.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds before a request gets 503")
    parser.add_argument("--max-inputs", type=int, default=d.max_inputs, help="texts per request before 413")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, help="largest max_tokens a completion may ask")
    parser.add_argument(
        "--poll-interval", type=float, default=d.poll_interval_s, help="seconds between scans of the prompts folder"
    )
    parser.add_argument("--cache-mb", type=int, default=256, help="prompt key/value cache size in MiB")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from ..errors import SoftPromptError
    from ..infer import Predictor
    from ..models import load_base_model
    from ..serve.app import create_app
    from ..serve.config import ServeSettings
    from ..serve.registry import PromptRegistry
    from ..serve.server import uvicorn_server

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    settings = ServeSettings(
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        max_inputs=args.max_inputs,
        max_tokens=args.max_tokens,
        poll_interval_s=args.poll_interval,
        api_key=api_key,
    )
    if not 0 <= args.port <= 65535:
        raise SoftPromptError(f"--port must be 0..65535, got {args.port}")
    if not _is_loopback(args.host) and api_key is None:
        print(
            f"softprompt serve: warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"softprompt serve: loading {args.model} ...", file=sys.stderr)
    base = load_base_model(args.model, device=args.device)
    predictor = Predictor(base, cache_bytes=args.cache_mb * 2**20, max_batch_size=args.max_batch_size)
    registry = PromptRegistry(args.prompts, predictor, base)
    changes = registry.refresh()
    print(
        f"softprompt serve: {len(registry.infos)} prompts from {args.prompts}"
        + (f"; {len(changes.failed)} not loaded: {', '.join(changes.failed)}" if changes.failed else ""),
        file=sys.stderr,
    )
    app = create_app(predictor, registry, settings)
    uvicorn_server(app, host=args.host, port=args.port, log_level=args.log_level).run()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
