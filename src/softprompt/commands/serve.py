"""`softprompt serve --model M --prompts DIR`: one frozen model, every prompt folder under DIR, over HTTP.

Example (then POST to http://127.0.0.1:8000/v1/classify or /v1/completions):

    softprompt serve --model smollm2-135m --prompts prompts/"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .options import add_hidden_alias, add_listen_arguments, add_model_options, is_loopback, listen_hosts, load_model

NAME = "serve"
HELP = "serve every prompt folder under DIR over HTTP (classify, OpenAI-style completions) with one base model"

API_KEY_ENV = "SOFTPROMPT_API_KEY"
# The request limits: each a ServeSettings field (its type and default) and its flag.
LIMITS = (
    ("--max-queue", "max_queue", "waiting requests before 429"),
    ("--timeout", "timeout_s", "seconds before a request gets 503 (its work stops)"),
    ("--max-inputs", "max_inputs", "texts per request"),
    ("--max-input-chars", "max_input_chars", "characters per text"),
    ("--max-input-tokens", "max_input_tokens", "tokens per text"),
    ("--max-request-tokens", "max_request_tokens", "tokens per request: its texts, plus max_tokens per text of a completion"),
    ("--max-new-tokens", "max_tokens", "largest max_tokens (new tokens) a completion may ask"),
    ("--max-body-bytes", "max_body_bytes", "request body size"),
    ("--header-timeout", "header_timeout_s", "seconds for a request's line and headers to arrive; slower connections get 408 and are closed"),
    ("--body-timeout", "body_timeout_s", "seconds for a request body to arrive (408)"),
    ("--max-connections", "max_connections", "open connections; more get 503 and are closed"),
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..model_names import DEFAULT_MODEL
    from ..serve.config import SCHEDULERS, ServeSettings

    d = ServeSettings()
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--prompts", required=True, metavar="DIR", help="folder of prompt folders; changes are picked up while running"
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on all but /health, /metrics and the docs, checked before the "
        f"body is read (default: ${API_KEY_ENV} if set, else no key)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=d.max_batch_size, help="rows per model call, and rows generating at once"
    )
    add_hidden_alias(parser, "--max-batch-size", "--batch-size", type=int)
    generation = parser.add_argument_group("generation (completions and chat)")
    generation.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=d.scheduler,
        help="continuous: requests join and leave the running batch at every decoding step; static: the old "
        "batch-at-a-time policy (a batch of equal requests runs to its end, streams alone), for comparison",
    )
    generation.add_argument(
        "--kv-cache-mb",
        type=int,
        default=d.kv_cache_bytes >> 20,
        help="key/value cache for generating rows, in MiB; a request that does not fit waits, one that never "
        "could gets 413",
    )
    generation.add_argument(
        "--step-tokens",
        type=int,
        default=d.step_tokens,
        help="tokens one decoding step may run: one per generating row, the rest prefill new inputs in chunks "
        "(smaller: steadier streams; larger: faster first tokens)",
    )
    limits = parser.add_argument_group("limits (a request over one gets 413 unless said otherwise)")
    for name, field, help in LIMITS:
        limits.add_argument(name, type=type(getattr(d, field)), default=getattr(d, field), help=help)
    add_hidden_alias(limits, "--max-tokens", "--max-new-tokens", type=int)
    parser.add_argument(
        "--poll-interval", type=float, default=d.poll_interval_s, help="seconds between scans of the prompts folder"
    )
    parser.add_argument("--cache-mb", type=int, default=256, help="prompt key/value cache size in MiB")
    add_model_options(parser)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("serve", "softprompt serve")
    from ..infer import Predictor
    from ..serve.app import create_app
    from ..serve.config import ServeSettings
    from ..serve.registry import PromptRegistry
    from ..serve.server import uvicorn_server

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    settings = ServeSettings(
        max_batch_size=args.batch_size,
        scheduler=args.scheduler,
        kv_cache_bytes=args.kv_cache_mb << 20,
        step_tokens=args.step_tokens,
        **{field: getattr(args, name.lstrip("-").replace("-", "_")) for name, field, _ in LIMITS},
        poll_interval_s=args.poll_interval,
        api_key=api_key,
        allowed_hosts=listen_hosts(args),
    )
    if not is_loopback(args.host) and api_key is None:
        print(
            f"softprompt serve: warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = load_model(args, "serve")
    predictor = Predictor(base, cache_bytes=args.cache_mb * 2**20, max_batch_size=args.batch_size)
    registry = PromptRegistry(args.prompts, predictor, base)
    changes = registry.refresh()
    print(
        f"softprompt serve: {len(registry.infos)} prompts from {args.prompts}"
        + (f"; {len(changes.failed)} not loaded: {', '.join(changes.failed)}" if changes.failed else ""),
        file=sys.stderr,
    )
    app = create_app(predictor, registry, settings)
    uvicorn_server(app, host=args.host, port=args.port, log_level=args.log_level, settings=settings).run()
    return 0
