"""`softprompt compare`: softprompt's prompt methods against hard prompts, LoRA and full fine-tuning on one task.

Several `--model` values run the comparison once per model and chart each method against model size.
Several `--seed` values run it once per seed and report each method's mean and spread over the seeds.

Example:

    softprompt compare --data rotten-tomatoes --methods zero-shot,prompt-tuning,lora --steps 50
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import FieldError, worded
from .options import add_hidden_alias, add_model_options, device, quantize
from .train import flag as train_flag

# CompareConfig fields whose flag is train's name for the same setting (the old names stay as hidden aliases).
_FLAGS = {"prompt_optimizer": "--optimizer", "prompt_lr": "--lr"}


def flag(field: str) -> str:
    """A CompareConfig field's name on the command line."""
    return _FLAGS.get(field, train_flag(field))


NAME = "compare"
HELP = (
    "measure prompt tuning, prefix tuning and P-tuning against zero/few-shot hard prompts, LoRA and full "
    "fine-tuning; write a report (several --model: also the power-of-scale chart; several --seed: mean and spread)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..compare.config import METHODS, CompareConfig

    d = CompareConfig()
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"base model (default: {d.model}); give several (--model A --model B ...) to also chart each method's "
        "accuracy and macro-F1 against model size (the power of scale): OUT/scale.md and scale.png",
    )
    parser.add_argument("--data", default=d.data, help="built-in dataset or data file (default: %(default)s)")
    parser.add_argument("--template", help="for data files: template with {text}")
    parser.add_argument("--labels", help="for data files: label=answer words, comma-separated, or a JSON object")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset (default: all: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=d.steps, help="optimiser steps per trained method (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    parser.add_argument(
        "--seed",
        type=int,
        action="append",
        default=None,
        help=f"default: {d.seed}; give several (--seed 0 --seed 1 --seed 2) to run the comparison once per seed on "
        "the same test examples: OUT/seeds.md, each method's mean ± sd and its gap to the best with the seeds "
        "folded into the interval",
    )
    parser.add_argument("--out", default="compare-report", help="output folder (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="skip methods already measured in --out")
    parser.add_argument(
        "--test-size", type=int, default=d.test_size, help="test examples scored (default: %(default)s)"
    )
    parser.add_argument(
        "--few-shot-k", type=int, default=d.few_shot_k, help="in-context examples (default: %(default)s)"
    )
    parser.add_argument("--instruction", help="the hard prompts' instruction (default: names the answer words)")
    _add_prompt_overrides(parser)
    parser.add_argument("--lora-r", type=int, default=d.lora_r, help="default: %(default)s")
    parser.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="default: %(default)s")
    parser.add_argument("--lora-lr", type=float, default=d.lora_lr, help="AdamW LR (default: %(default)s)")
    parser.add_argument("--full-lr", type=float, default=d.full_lr, help="AdamW LR (default: %(default)s)")
    parser.add_argument(
        "--perplexity-tokens",
        type=int,
        default=d.perplexity_tokens,
        help="general-English tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--second-task", default=d.second_task, help="built-in dataset for forgetting, or 'none' (default: %(default)s)"
    )
    parser.add_argument("--second-task-size", type=int, default=d.second_task_size, help="default: %(default)s")
    add_model_options(parser)
    parser.add_argument("--keep-weights", action="store_true", help="keep the fully fine-tuned weights in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (stage messages still go to stderr)")


def _add_prompt_overrides(parser: argparse.ArgumentParser) -> None:
    """--num-virtual-tokens, --optimizer, --lr: train's flags (help and choices from TrainConfig's declarations);
    given, the value is used by every prompt method, else each method trains at its own recipe."""
    from ..compare.config import PROMPT_OVERRIDES
    from ..train_config import settings

    declared = {s.name: s for s in settings()}
    for name, key in PROMPT_OVERRIDES.items():
        s = declared[key]
        kwargs = {"choices": s.choices} if s.choices else {"type": s.type}
        parser.add_argument(
            flag(name), default=None, help=f"{s.help}, for every prompt method (default: {s.default_text})", **kwargs
        )
        if name in _FLAGS:  # the old spelling (--prompt-lr) still works
            add_hidden_alias(parser, "--" + name.replace("_", "-"), flag(name), **kwargs)


def config_from_args(args: argparse.Namespace):
    from ..compare.config import CompareConfig
    from ..data import BUILTIN_DATASETS
    from ..recipe import parse_labels

    labels = parse_labels(args.labels, args.template or "") if args.labels else None
    second = None if str(args.second_task).lower() in ("none", "") else args.second_task
    if second is not None and second not in BUILTIN_DATASETS:
        raise FieldError("second_task", f"must be a built-in dataset ({', '.join(BUILTIN_DATASETS)}) or 'none'")
    return CompareConfig(
        model=models(args)[0],
        data=args.data,
        template=args.template,
        labels=labels,
        methods=args.methods,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=seeds(args)[0],
        test_size=args.test_size,
        few_shot_k=args.few_shot_k,
        instruction=args.instruction,
        num_virtual_tokens=args.num_virtual_tokens,
        prompt_optimizer=args.optimizer,
        prompt_lr=args.lr,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_lr=args.lora_lr,
        full_lr=args.full_lr,
        perplexity_tokens=args.perplexity_tokens,
        second_task=second,
        second_task_size=args.second_task_size,
        device=device(args),
        quantize=quantize(args),
        keep_weights=args.keep_weights,
    )


def models(args: argparse.Namespace) -> list[str]:
    from ..compare.config import CompareConfig

    return args.model or [CompareConfig().model]


def seeds(args: argparse.Namespace) -> list[int]:
    from ..compare.config import CompareConfig

    return args.seed or [CompareConfig().seed]


def run(args: argparse.Namespace) -> int:
    from ..compare import seeds as several_seeds
    from ..compare.report import REPORT_MD, comparison_table, gaps_section
    from ..compare.run import run_compare, stderr_logger
    from ..compare.scale import SCALE_MD, markdown, run_scale
    from ..extras import require
    from ..fileio import check_output_path

    with worded(flag):
        config = config_from_args(args)
    require("compare", "softprompt compare", modules=("matplotlib", *(("peft",) if "lora" in config.methods else ())))
    check_output_path(args.out, flag="--out", folder=True)
    log = stderr_logger(time.perf_counter())
    if len(models(args)) > 1:
        scale = run_scale(
            config, models(args), args.out, seeds=seeds(args), resume=args.resume, show_progress=not args.quiet, log=log
        )
        print(markdown(scale))
        print(f"\nscale report: {args.out}/{SCALE_MD}; each model's report in its folder", file=sys.stderr)
        return 0
    if len(seeds(args)) > 1:
        summary = several_seeds.run_seeds(
            config, seeds(args), args.out, resume=args.resume, show_progress=not args.quiet, log=log
        )
        print(several_seeds.markdown(summary).rstrip())
        print(f"\nseeds report: {args.out}/{several_seeds.SEEDS_MD}; each seed's report in its folder", file=sys.stderr)
        return 0
    report = run_compare(config, args.out, resume=args.resume, show_progress=not args.quiet, log=log)
    print(comparison_table(report))
    gaps = gaps_section(report)
    if gaps:
        print("\n" + "\n".join(gaps).rstrip())
    print(f"\nfull report: {args.out}/{REPORT_MD}", file=sys.stderr)
    return 0
