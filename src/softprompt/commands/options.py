"""Flags several commands share, so each concept has one name, one default and one help text everywhere."""

from __future__ import annotations

import argparse

DEFAULT_DEVICE = "cpu"
# softprompt.quant.QUANT_MODES, not imported: that imports torch, and `--help` must not (a test checks they agree).
QUANTIZE_MODES = ("none", "int8", "int4")
DEFAULT_QUANTIZE = "none"


def add_device_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """--device for every command that loads a model (default: the CPU, whatever the machine has)."""
    parser.add_argument(
        "--device",
        default=None,
        help=f"torch device for the model: cpu, cuda, cuda:1, mps, or auto (the first GPU if there is one)"
        f"{'; ' + note if note else ''} (default: {DEFAULT_DEVICE})",
    )


def device(args: argparse.Namespace) -> str:
    """The --device asked for, 'auto' resolved (torch is imported only here, when the model is about to load)."""
    chosen = args.device or DEFAULT_DEVICE
    if chosen != "auto":
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def add_quantize_argument(parser: argparse.ArgumentParser) -> None:
    """--quantize for every command that loads a model: the precision the frozen weights are kept in."""
    parser.add_argument(
        "--quantize",
        type=_quantize_mode,
        default=None,
        metavar="{" + ",".join(QUANTIZE_MODES) + "}",
        help="keep the frozen base model's weights quantised in memory and in the model cache: none (full "
        "precision), int8, or int4 (groups of 32 inputs; int4/64, int4/128: coarser) (docs/quantization.md); a "
        f"prompt trained at one precision runs at another, with a one-line notice (default: {DEFAULT_QUANTIZE})",
    )


def _quantize_mode(text: str) -> str:
    # The mode is checked as the flags are parsed (no torch needed); int4's group size when the model loads.
    if text.strip().lower().partition("/")[0] not in QUANTIZE_MODES:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(QUANTIZE_MODES)} (int4/64, int4/128), not {text!r}")
    return text.strip().lower()


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
