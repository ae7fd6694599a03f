"""`softprompt train`: learn a soft prompt for a frozen model from labelled data.

    softprompt train --model smollm2-135m --data rotten-tomatoes

A built-in dataset brings its template, verbalizer, splits and truncation
length, so no other flag is needed. For a data file give the task's shape
(--template, --labels, column names); the dev set is --dev-data or a fixed 10%
split of the file. Ctrl-C saves a checkpoint; rerun the same command with
--resume to continue to the same result an uninterrupted run gives.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..data import BUILTIN_DATASETS
from ..errors import SoftPromptError, worded
from ..recipe import DEFAULT_DEV_EXAMPLES, RunSpec
from ..tasks import DEFAULT_KIND, task_kinds
from ..train_config import setting_names, settings
from .options import add_model_options, device, quantize

NAME = "train"
HELP = "train a soft prompt on labelled data (the base model stays frozen)"


def flag(field: str) -> str:
    """A setting's name on the command line: batch_size -> --batch-size."""
    return "--" + field.replace("_", "-")


def add_setting_arguments(
    parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()
) -> None:
    """One flag per declared TrainConfig setting (`train_config.settings()`), its help and default read from the
    declaration. Flags default to None ("not given"): --resume then takes the checkpoint's value, a new run the
    setting's default (or its method's recipe)."""
    for s in settings():
        if (only is not None and s.name not in only) or s.name in skip:
            continue
        kwargs: dict = {"default": None, "help": s.help_text().replace("%", "%%"), **s.cli}
        if s.choices:
            kwargs["choices"] = s.choices
        if s.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif s.type in (int, float):
            kwargs["type"] = s.type
        parser.add_argument(flag(s.name), **kwargs)


# Settings that are also data flags (eval reads its data the way training did).
DATA_SETTINGS = ("max_input_tokens", "truncate")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by train and eval: what the data is and how examples become inputs."""
    parser.add_argument(
        "--model", default=None, help="base model: alias, .gguf file, folder or hub id (default: smollm2-135m)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help=f"data file (.jsonl/.csv/.tsv/.parquet) or built-in dataset name ({', '.join(BUILTIN_DATASETS)})",
    )
    parser.add_argument(
        "--task",
        choices=task_kinds(),
        default=None,
        help=f"task kind (default: {DEFAULT_KIND}, or the built-in dataset's)",
    )
    parser.add_argument(
        "--template", default=None, help='input template with {text}, e.g. "Review: {text}\\nSentiment:"'
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="label=answer words, comma-separated ('fresh=positive,rotten=negative') or a JSON object; default: the labels found in the data",
    )
    parser.add_argument("--text-column", default=None, help="input column (default: text, or input for generate)")
    parser.add_argument("--label-column", default=None, help="label column for classify (default: label)")
    parser.add_argument("--target-column", default=None, help="target column for generate (default: target)")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip and count malformed rows instead of stopping at the first"
    )
    add_setting_arguments(parser, only=DATA_SETTINGS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument(
        "--dev-data", default=None, help="dev data file (default: the built-in dev split, or 10%% of --data)"
    )
    parser.add_argument(
        "--max-dev-examples",
        type=int,
        default=None,
        help=f"evaluate on the first N dev examples (default: {DEFAULT_DEV_EXAMPLES}; 0 = no dev evaluation)",
    )
    add_setting_arguments(parser, skip=DATA_SETTINGS)
    parser.add_argument("--out", default=None, help="output prompt folder (default: ./prompt-<data>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same flags)")
    parser.add_argument(
        "--allow-model-mismatch", action="store_true", help="allow --init file: with a prompt from another model"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")  # fmt: skip
    add_threads_argument(parser)
    add_scale_arguments(parser)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: one per core; 1 on a busy machine)"
    )


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Large models and many processes (docs/distributed.md); no-ops in a plain single-process run."""
    add_model_options(
        parser,
        device_note="one process; under torchrun each rank takes its own. On a GPU the weights load in bf16, "
        "the prompt and its optimiser state stay fp32",
    )
    parser.add_argument(
        "--device-map",
        default=None,
        help="auto | balanced | sequential | a JSON {module: device}: spread a model too large for one device "
        "over GPUs, CPU (and disk with --offload-folder) with accelerate; one process",
    )
    parser.add_argument("--offload-folder", default=None, help="with --device-map: keep what fits nowhere here")
    parser.add_argument(
        "--fsdp",
        action="store_true",
        help="under torchrun: shard the frozen transformer blocks across ranks (FSDP2) instead of a full copy per rank",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        help="under torchrun: seconds a rank waits for the others before the run stops (default: 600)",
    )


def parse_device_map(spec: str | None) -> str | dict | None:
    """--device-map: an accelerate strategy name, or a JSON object of module name -> device."""
    if spec is None or not spec.strip().startswith("{"):
        return spec
    try:
        mapping = json.loads(spec)
    except json.JSONDecodeError as e:
        raise SoftPromptError(f"--device-map is not valid JSON ({e}); give auto or a {{module: device}} object") from e
    if not isinstance(mapping, dict):
        raise SoftPromptError('--device-map JSON must map module names to devices, e.g. {"": "cuda:0"}')
    return mapping


def spec_from_args(args: argparse.Namespace, *, with_settings: bool = True) -> RunSpec:
    """The RunSpec the data and task flags (and, for train, the training flags) stand for."""
    settings = {}
    if with_settings:
        settings = {k: getattr(args, k) for k in setting_names() if getattr(args, k, None) is not None}
    return RunSpec(
        data=args.data,
        task=args.task,
        template=args.template,
        labels=args.labels,
        text_column=args.text_column,
        label_column=args.label_column,
        target_column=args.target_column,
        skip_invalid=args.skip_invalid,
        dev_data=getattr(args, "dev_data", None),
        max_dev_examples=DEFAULT_DEV_EXAMPLES
        if getattr(args, "max_dev_examples", None) is None
        else args.max_dev_examples,
        settings=settings,
    )


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..models import DEFAULT_MODEL

    args.model = args.model or DEFAULT_MODEL
    with worded(flag):
        dist = distributed.setup(timeout_s=args.dist_timeout or distributed.DEFAULT_TIMEOUT_S, fsdp=args.fsdp)
        try:
            return _run(args, dist)
        finally:
            distributed.teardown(dist)


def _run(args: argparse.Namespace, dist) -> int:
    from .. import distributed
    from ..fileio import check_output_path
    from ..models import load_base_model
    from ..recipe import prepare, run_training, set_threads
    from ..tasks.chat import placement_note
    from ..train import CHECKPOINT_DIR

    if dist.enabled and (args.device_map or args.device):
        raise SoftPromptError(
            "--device and --device-map are for one process; under torchrun each rank takes its own device "
            "(--fsdp splits the model)"
        )
    if dist.fsdp:
        distributed.refuse_quantized_fsdp(quantize(args))  # before the model loads, which takes minutes at 7B
    spec = spec_from_args(args)
    data = prepare(spec, name=flag)  # data problems show up before the model loads
    out = Path(args.out or f"prompt-{data.name}")
    if dist.is_main:  # only rank 0 writes
        check_output_path(out, flag="--out", folder=True)
    say = (lambda *a: None) if args.quiet or not dist.is_main else (lambda *a: print(*a, file=sys.stderr))

    set_threads(args.threads)
    base = load_base_model(
        args.model,
        device=dist.device if dist.enabled else device(args),
        device_map=parse_device_map(args.device_map),
        offload_folder=args.offload_folder,
        quantize=quantize(args),
    )
    if dist.fsdp:
        held, whole = distributed.shard_base_model(base, dist)
        say(f"FSDP: each rank holds {held:,} of the {whole:,} transformer-block parameters")

    def announce(start) -> None:
        config, task = start.config, data.task
        say(
            f"training on {start.train_examples:,} examples ({start.truncated:,} truncated to "
            f"{config.max_input_tokens} tokens{f', {data.skipped:,} invalid rows skipped' if data.skipped else ''}), "
            f"dev {start.dev_examples:,}; {task.kind} template {json.dumps(task.template)}; "
            f"{config.summary()}{start.balance_note}, {start.total_steps} steps -> {out}"
            + (f"; {dist.world_size} processes ({dist.backend}{', FSDP' if dist.fsdp else ''})" if dist.enabled else "")
        )
        if task.format == "chat":
            say(placement_note(task))

    result = run_training(
        spec,
        out,
        base,
        data=data,
        resume=args.resume,
        show_progress=not args.quiet,
        base_model_name=args.model,
        allow_model_mismatch=args.allow_model_mismatch,
        dist=dist,
        on_start=announce,
    )
    if not dist.is_main:
        return 0 if result.status != "interrupted" else 130
    if result.status == "interrupted":
        command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]] if a != "--resume")
        print(
            f"stopped at step {result.steps}; checkpoint saved in {out / CHECKPOINT_DIR}. "
            f"Resume with:\n  {command} --resume",
            file=sys.stderr,
        )
        return 130
    best = f", best dev {result.metric} {result.best_metric:.4f} at step {result.best_step}" if result.metric else ""
    print(
        f"{result.status}: {result.steps} steps in {result.wall_time_s:.0f}s{best}; prompt saved to {out} "
        f"({result.prompt.METHOD} {result.prompt.shape_text}, readable by PEFT as {result.prompt.PEFT_TYPE})"
    )
    return 0
