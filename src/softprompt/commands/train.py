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
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import SoftPromptError

NAME = "train"
HELP = "train a soft prompt on labelled data (the base model stays frozen)"

DEFAULT_TEMPLATES = {"classify": "Input: {text}\nLabel:", "generate": "Input: {text}\nOutput:"}
DEFAULT_COLUMNS = {"classify": ("text", "label"), "generate": ("input", "target")}
DEFAULT_DEV_EXAMPLES = 300


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by train and eval: what the data is and how examples become inputs."""
    parser.add_argument(
        "--model", default=None, help="base model: alias, .gguf file, folder or hub id (default: smollm2-135m)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="data file (.jsonl/.csv/.tsv/.parquet) or built-in dataset name (rotten-tomatoes, bbc-news)",
    )
    parser.add_argument(
        "--task",
        choices=("classify", "generate"),
        default=None,
        help="task kind (default: classify, or the built-in dataset's)",
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
    parser.add_argument(
        "--max-input-tokens",
        type=int,
        default=None,
        help="truncate longer inputs (default: the built-in dataset's hint, else no limit)",
    )
    parser.add_argument("--truncate", choices=("left", "right"), default=None, help="which side of an over-long text to cut (default: left)")  # fmt: skip


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
    parser.add_argument("--num-virtual-tokens", type=int, default=None, help="prompt length T (default: 20)")
    parser.add_argument(
        "--init",
        default=None,
        help='labels | vocab | random | text:"..." | file:PROMPT_DIR (default: labels for classify, vocab for generate)',
    )
    parser.add_argument(
        "--optimizer",
        choices=("adafactor", "adamw"),
        default=None,
        help="default: adamw (LR 0.01); adafactor uses the paper's LR 0.3 unless --lr",
    )
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.01 adamw, 0.3 adafactor)")
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="examples per micro-batch (default: 16)")
    parser.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimiser step (default: 1)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 300 unless --epochs)")
    parser.add_argument(
        "--epochs", type=float, default=None, help="train for this many passes over the data instead of --steps"
    )
    parser.add_argument("--warmup-steps", type=int, default=None, help="linear LR warmup (default: 0)")
    parser.add_argument(
        "--schedule",
        choices=("constant", "linear", "cosine"),
        default=None,
        help="LR after warmup (default: cosine decay)",
    )
    parser.add_argument(
        "--max-grad-norm", type=float, default=None, help="clip the gradient norm (default: 1.0; 0 = off)"
    )
    parser.add_argument("--eval-every", type=int, default=None, help="dev evaluation every N steps (default: 50)")
    parser.add_argument("--patience", type=int, default=None, help="stop after N dev evaluations without improvement")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (default: 50)")
    parser.add_argument("--seed", type=int, default=None, help="seed for init and data order (default: 0)")
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


@dataclass
class Prepared:
    """A task and its data, resolved from flags (shared by train, eval and quickstart)."""

    task: object
    train: tuple
    dev: tuple
    test: tuple
    name: str
    max_input_tokens: int | None
    skipped: int


def parse_labels(spec: str, template: str) -> dict[str, str]:
    """'a=x,b=y' / 'a,b' / a JSON object -> label -> answer words.

    In the comma form answer words get a leading space when the template does not
    end in whitespace ("Sentiment:" + " positive"), which is how the words would
    be written; JSON values are taken literally.
    """
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            raw = json.loads(spec)
        except json.JSONDecodeError as e:
            raise SoftPromptError(f"--labels is not valid JSON ({e})") from e
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise SoftPromptError('--labels JSON must map each label to its answer words, e.g. {"pos": " positive"}')
        return {str(k): v for k, v in raw.items()}
    space = "" if template[-1:].isspace() else " "
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        label, _, words = part.partition("=")
        label, words = label.strip(), (words or label).strip()
        if not label or not words:
            raise SoftPromptError(f"--labels: cannot read {part!r}; write label=answer words, e.g. fresh=positive")
        if label in out:
            raise SoftPromptError(f"--labels: label {label!r} is given twice")
        out[label] = space + words
    return out


def prepare(args: argparse.Namespace, *, need_train: bool = True, meta=None) -> Prepared:
    """Task + splits from --data and the task flags; `meta` (a prompt's) supplies the task when flags don't."""
    from ..data import BuiltinDataset, load_examples, resolve_data, split_examples
    from ..tasks import ClassifyTask, GenerateTask

    source = resolve_data(args.data)
    builtin = source if isinstance(source, BuiltinDataset) else None
    kind = (
        args.task
        or (meta.task if meta is not None and meta.task else None)
        or (builtin.task if builtin else "classify")
    )
    template = args.template or (meta.template if meta is not None and meta.task == kind else None)
    template = template or (builtin.template if builtin else DEFAULT_TEMPLATES[kind])
    skipped = 0
    verbalizer = None
    if kind == "classify":
        if args.labels:
            verbalizer = parse_labels(args.labels, template)
        elif meta is not None and meta.verbalizer:
            verbalizer = dict(meta.verbalizer)
        elif builtin is not None:
            verbalizer = dict(builtin.verbalizer)
    text_col = args.text_column or DEFAULT_COLUMNS[kind][0]
    out_col = (args.label_column if kind == "classify" else args.target_column) or DEFAULT_COLUMNS[kind][1]
    flags = {"input": "--text-column", "output": "--label-column" if kind == "classify" else "--target-column"}

    def read(path) -> tuple:
        nonlocal skipped
        loaded = load_examples(
            path,
            input_column=text_col,
            output_column=out_col,
            label_set=None if verbalizer is None else set(verbalizer),
            skip_invalid=args.skip_invalid,
            column_flags=flags,
        )
        skipped += len(loaded.skipped)
        return loaded.examples

    if builtin is not None:
        splits = builtin.load()
        train, dev, test = splits.train, splits.dev, splits.test
    else:
        examples = read(source)
        if verbalizer is None and kind == "classify":
            labels = sorted({ex.output for ex in examples})
            verbalizer = {label: (" " if not template[-1:].isspace() else "") + label for label in labels}
        dev_file = getattr(args, "dev_data", None)
        if dev_file or not need_train:
            train, dev, test = (examples if need_train else ()), (), examples
            if dev_file:
                dev = read(dev_file)
        else:
            splits = split_examples(examples, dev_fraction=0.1, test_fraction=0.0, seed=0)
            train, dev, test = splits.train, splits.dev, ()
    task = ClassifyTask(template, verbalizer) if kind == "classify" else GenerateTask(template, out_col)
    max_tokens = args.max_input_tokens or (builtin.max_input_tokens if builtin else None)
    return Prepared(task, train, dev, test, builtin.name if builtin else Path(args.data).stem, max_tokens, skipped)


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


def build_config(args: argparse.Namespace, prepared: Prepared, saved: dict | None):
    """TrainConfig from flags; on --resume unset flags take the checkpoint's values."""
    from ..train import TrainConfig

    chosen = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            chosen[f.name] = value
        elif saved is not None and f.name in saved:
            chosen[f.name] = saved[f.name]
    if saved is None:
        chosen.setdefault("max_input_tokens", prepared.max_input_tokens)
        chosen.setdefault("init", "labels" if prepared.task.kind == "classify" else "vocab")
    if chosen.get("max_grad_norm") == 0:
        chosen["max_grad_norm"] = None
    return TrainConfig(**chosen)


def set_threads(threads: int | None) -> None:
    """Use `threads` torch threads (None = torch's default: one per core).

    An explicit choice rather than a guess from the load average: the thread
    count changes the order of float reductions, and a resumed run must see the
    same arithmetic as the run it continues. On a machine whose cores are busy
    with other work, `--threads 1` avoids OpenMP threads waiting on each other.
    """
    if threads is None:
        return
    if threads < 1:
        raise SoftPromptError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..models import DEFAULT_MODEL

    args.model = args.model or DEFAULT_MODEL
    dist = distributed.setup(timeout_s=args.dist_timeout or distributed.DEFAULT_TIMEOUT_S, fsdp=args.fsdp)
    try:
        return _run(args, dist)
    finally:
        distributed.teardown(dist)


def _run(args: argparse.Namespace, dist) -> int:
    from .. import distributed
    from ..evaluate import encode_eval_set
    from ..models import load_base_model
    from ..prompt import PromptMeta
    from ..train import CHECKPOINT_DIR, encode_examples, train

    if dist.enabled and args.device_map:
        raise SoftPromptError("--device-map is for one process; under torchrun use --fsdp to split the model")
    prepared = prepare(args)
    out = Path(args.out or f"prompt-{prepared.name}")
    saved = None
    if args.resume:
        saved = dist.load_checkpoint(out / CHECKPOINT_DIR).values.get("config")
    config = build_config(args, prepared, saved)
    quiet = args.quiet or not dist.is_main
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    set_threads(args.threads)
    base = load_base_model(
        args.model, device=dist.device, device_map=parse_device_map(args.device_map), offload_folder=args.offload_folder
    )
    if dist.fsdp:
        held, whole = distributed.shard_base_model(base, dist)
        say(f"FSDP: each rank holds {held:,} of the {whole:,} transformer-block parameters")
    task = prepared.task
    rows, cut = encode_examples(
        base, task, prepared.train, max_tokens=config.max_input_tokens, truncate=config.truncate
    )
    limit = DEFAULT_DEV_EXAMPLES if args.max_dev_examples is None else args.max_dev_examples
    dev_examples = prepared.dev[:limit]
    dev = encode_eval_set(base, task, dev_examples, max_tokens=config.max_input_tokens, truncate=config.truncate)
    say(
        f"training on {len(rows):,} examples ({cut:,} truncated to {config.max_input_tokens} tokens"
        f"{f', {prepared.skipped:,} invalid rows skipped' if prepared.skipped else ''}), "
        f"dev {len(dev):,}; {task.kind} template {json.dumps(task.template)}; "
        f"T={config.num_virtual_tokens}, init={config.init}, {config.optimizer} lr={config.learning_rate}, "
        f"batch {config.batch_size}x{config.grad_accum}, {config.total_steps(len(rows))} steps -> {out}"
        + (f"; {dist.world_size} processes ({dist.backend}{', FSDP' if dist.fsdp else ''})" if dist.enabled else "")
    )
    meta = PromptMeta(base_model=args.model)
    result = train(
        base,
        task,
        rows,
        dev if len(dev) else None,
        config,
        out,
        resume=args.resume,
        show_progress=not args.quiet,
        meta=meta,
        dist=dist,
        allow_model_mismatch=args.allow_model_mismatch,
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
        f"({result.prompt.num_virtual_tokens}x{result.prompt.dim}, readable by PEFT)"
    )
    return 0
