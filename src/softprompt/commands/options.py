"""Flags several commands share, so each concept has one name, one default and one help text everywhere."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models import BaseModel

DEFAULT_DEVICE = "cpu"
# softprompt.quant.QUANT_MODES, not imported: that imports torch, and `--help` must not (a test checks they agree).
QUANTIZE_MODES = ("none", "int8", "int4")
DEFAULT_QUANTIZE = "none"


def add_model_options(parser: argparse.ArgumentParser, device_note: str = "") -> None:
    """--device and --quantize, for every command that loads a model: where the frozen model runs (default: the
    CPU, whatever the machine has) and the precision its weights are kept in."""
    parser.add_argument(
        "--device",
        default=None,
        help=f"torch device for the model: cpu, cuda, cuda:1, mps, or auto (the first GPU if there is one)"
        f"{'; ' + device_note if device_note else ''} (default: {DEFAULT_DEVICE})",
    )
    parser.add_argument(
        "--quantize",
        type=_quantize_mode,
        default=None,
        metavar="{" + ",".join(QUANTIZE_MODES) + "}",
        help="keep the frozen base model's weights quantised in memory and in the model cache: none (full "
        "precision), int8, or int4 (groups of 32 inputs; int4/64, int4/128: coarser) (docs/quantization.md); a "
        f"prompt trained at one precision runs at another, with a one-line notice (default: {DEFAULT_QUANTIZE})",
    )


def device(args: argparse.Namespace) -> str:
    """The --device asked for, 'auto' resolved (torch is imported only here, when the model is about to load)."""
    chosen = args.device or DEFAULT_DEVICE
    if chosen != "auto":
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def _quantize_mode(text: str) -> str:
    # The mode is checked as the flags are parsed (no torch needed); int4's group size when the model loads.
    if text.strip().lower().partition("/")[0] not in QUANTIZE_MODES:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(QUANTIZE_MODES)} (int4/64, int4/128), not {text!r}")
    return text.strip().lower()


def load_model(args: argparse.Namespace, command: str) -> BaseModel:
    """--model on --device at --quantize, saying so on stderr first (a large model takes a while)."""
    from ..models import load_base_model

    print(f"softprompt {command}: loading {args.model} ...", file=sys.stderr)
    return load_base_model(args.model, device=device(args), quantize=quantize(args))


def quantize(args: argparse.Namespace) -> str:
    """The --quantize asked for, checked and written as `Quantization` writes it ("int8", "int4/64")."""
    if args.quantize is None:
        return DEFAULT_QUANTIZE
    from ..errors import FieldError
    from ..quant import Quantization

    try:
        return str(Quantization.parse(args.quantize))
    except FieldError as e:
        raise e.worded(lambda _: "--quantize") from None


def add_hidden_alias(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str, **kwargs) -> None:
    """Accept `old` (a flag's former spelling) for `new`, without showing it in --help."""
    parser.add_argument(
        old, dest=new.lstrip("-").replace("-", "_"), default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
    )


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """--host, --port and --allowed-hosts, for the commands that serve HTTP (`serve`, and `studio` built on it)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port)")
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        metavar="H1,H2",
        help="Host header values answered, comma-separated (port ignored; '*' = any); others get 421, "
        "against DNS rebinding (default: 127.0.0.1,localhost,::1 when --host is loopback, else '*')",
    )


def listen_hosts(args: argparse.Namespace) -> tuple[str, ...]:
    """--port checked, and the Host header values to answer (--allowed-hosts, else by --host)."""
    from ..errors import SoftPromptError

    if not 0 <= args.port <= 65535:
        raise SoftPromptError(f"--port must be 0..65535, got {args.port}")
    return allowed_hosts(args.allowed_hosts, args.host)


def allowed_hosts(flag: str | None, bind: str) -> tuple[str, ...]:
    """--allowed-hosts as a tuple; by default the loopback names when bound to loopback, else any host."""
    from ..serve.hosts import ANY_HOST, LOOPBACK_HOSTS

    if flag is None:
        return LOOPBACK_HOSTS if is_loopback(bind) else (ANY_HOST,)
    return tuple(host.strip() for host in flag.split(","))


def is_loopback(host: str) -> bool:
    """Whether --host only listens on this machine (then no API key is needed, and the studio opens as it is)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
