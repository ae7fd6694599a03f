"""Run set-up: from what a user asks for (a `RunSpec`) to a trained prompt, the same for every front end.

The `train` command, the studio, quickstart and compare each describe a run as a RunSpec (the
data, the task's shape, the training settings that differ from `TrainConfig`'s defaults) and call
`run_training`. So a prompt trained from the studio and one trained with the same settings on the
command line are the same prompt, and every front end shows the same defaults (`defaults()`).

    spec -> prepare (task + splits; reads the files, no model) -> build_config -> run_training
         (encode, train(), write the prompt folder)

Errors about a setting are `FieldError`s naming the setting by its field name; each front end
words it its own way (`errors.worded`): the CLI as a flag, the studio as its form label.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FieldError, SoftPromptError
from .prompts.registry import METHODS, default_method
from .tasks import DEFAULT_KIND, task_class, task_kinds
from .train_config import FROM_RECIPE, TrainConfig, config_class, setting_names, settings
from .typecheck import check_field_types

if TYPE_CHECKING:
    from .distributed import Dist
    from .models import BaseModel
    from .tasks import Task
    from .train import TrainResult

DEFAULT_DEV_EXAMPLES = 300  # dev examples scored at each evaluation


@dataclass
class RunSpec:
    """One training run as a user describes it; unset (None) parts come from the data or the defaults."""

    data: str  # a built-in dataset name or a data file
    task: str | None = None  # a task kind (tasks.task_kinds()); None: the built-in dataset's, else classify
    template: str | None = None  # with {text}; None: the dataset's, else the task kind's default_template
    labels: str | dict[str, str] | None = None  # "a=x,b=y" | JSON | {label: answer words}; None: found in the data
    text_column: str | None = None  # None: the task kind's default input column
    label_column: str | None = None  # classify's output column; None: "label"
    target_column: str | None = None  # generate's output column; None: "target"
    skip_invalid: bool = False  # skip and count malformed rows instead of stopping at the first
    dev_data: str | None = None  # None: the built-in dev split, or a fixed 10% of the data file
    max_dev_examples: int = DEFAULT_DEV_EXAMPLES  # 0 = no dev evaluation
    settings: dict[str, object] = field(default_factory=dict)  # TrainConfig fields chosen; others: its defaults
    data_name: str | None = None  # how messages name the data file (the studio: the name it was uploaded as)

    def __post_init__(self) -> None:
        check_field_types(self)
        if not self.data.strip():
            raise FieldError("data", "is empty: give a built-in dataset name or a data file")
        if self.task is not None and self.task not in task_kinds():
            raise FieldError("task", f"must be one of {', '.join(task_kinds())}, got {self.task!r}")
        if self.template is not None and self.template.count("{text}") != 1:
            raise FieldError("template", f"must contain {{text}} exactly once, got {self.template!r}")
        if isinstance(self.labels, str):
            parse_labels(self.labels, self.template or "")  # refuse a malformed list now, before any file is read
        if self.max_dev_examples < 0:
            raise FieldError("max_dev_examples", f"must be >= 0, got {self.max_dev_examples}")
        unknown = sorted(set(self.settings) - set(setting_names()))
        if unknown:
            raise FieldError(unknown[0], "is not a training setting")
        config_class()(**self.settings)  # each chosen setting is checked now, with the same rules as in training


@dataclass(frozen=True)
class RunData:
    """A task and its data, resolved from a spec (or given by the caller, as compare does)."""

    task: Task
    train: tuple
    dev: tuple
    test: tuple
    name: str  # the dataset's name or the data file's stem: names the default output folder
    max_input_tokens: int | None  # the built-in dataset's truncation hint
    skipped: int = 0  # malformed rows skipped (skip_invalid)


@dataclass(frozen=True)
class RunStart:
    """What a run is about to do, for the front end to show (the CLI's one line, the studio's progress)."""

    config: TrainConfig
    train_examples: int
    truncated: int
    dev_examples: int
    total_steps: int
    metric: str | None  # the dev metric that picks the best prompt; None without dev data
    balance_note: str = ""  # what class balancing does in this run ("" when nothing)


def defaults(task: str = DEFAULT_KIND, method: str | None = None) -> dict[str, object]:
    """The settings a run gets when the user chooses nothing (or only `method`): what every front end shows.

    Every TrainConfig setting with the value a run would use (`lr`: the learning rate, `steps`: the
    step count without --epochs), the task kind's template and init, and under "by_method" each
    method's recipe (the fields a recipe fills, and its LR), for a form that switches method.
    """
    config = config_class()() if method is None else config_class()(method=method)
    return {
        "task": task,
        "template": task_class(task).default_template,
        **{s.name: getattr(config, s.name) for s in settings()},
        "init": default_init(task),
        "lr": config.learning_rate,
        "steps": config.total_steps(0),
        "max_dev_examples": DEFAULT_DEV_EXAMPLES,
        "by_method": {m: method_defaults(m) for m in METHODS} if method is None else None,
    }


def method_defaults(method: str, reparam: str = "none") -> dict[str, object]:
    """What `method`'s recipe sets when the user leaves it to the recipe (compare and `info` show it)."""
    config = TrainConfig(method=method, reparam=reparam)
    return {
        **{name: getattr(config, name) for name in FROM_RECIPE},
        "lr": config.learning_rate,
        "lr_by_reparam": dict(METHODS[method].recipe.lr),
    }


def default_init(task: str) -> str:
    """The task kind's own (class-label init needs labels; text-to-text starts from sampled vocabulary)."""
    return task_class(task).default_init


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
        except (json.JSONDecodeError, RecursionError) as e:
            raise FieldError("labels", f"is not valid JSON ({e})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise FieldError("labels", 'JSON must map each label to its answer words, e.g. {"pos": " positive"}')
        return {str(k): v for k, v in raw.items()}
    space = "" if template[-1:].isspace() else " "
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        label, _, words = part.partition("=")
        label, words = label.strip(), (words or label).strip()
        if not label or not words:
            raise FieldError("labels", f": cannot read {part!r}; write label=answer words, e.g. fresh=positive")
        if label in out:
            raise FieldError("labels", f": label {label!r} is given twice")
        out[label] = space + words
    return out


def prepare(spec: RunSpec, *, need_train: bool = True, meta=None, name: Callable[[str], str] = str) -> RunData:
    """The task and splits `spec` stands for (reads the data; no model).

    `meta` (a prompt's) supplies the task when the spec does not (eval); without `need_train` a data file
    is all test data. `name` words settings in data messages ("choose another with --text-column").
    """
    from .data import BuiltinDataset, SplitDataset, load_examples, resolve_data, split_examples

    source = resolve_data(spec.data)
    builtin = source if isinstance(source, BuiltinDataset) else None
    kind = (
        spec.task
        or (meta.task if meta is not None and meta.task else None)
        or (builtin.task if builtin else DEFAULT_KIND)
    )
    kind_class = task_class(kind)
    template = spec.template or (meta.template if meta is not None and meta.task == kind else None)
    template = template or (builtin.template if builtin else kind_class.default_template)
    verbalizer = None
    if kind_class.has_labels:
        if isinstance(spec.labels, Mapping):
            verbalizer = dict(spec.labels)
        elif spec.labels:
            verbalizer = parse_labels(spec.labels, template)
        elif meta is not None and meta.verbalizer:
            verbalizer = dict(meta.verbalizer)
        elif builtin is not None and builtin.verbalizer:
            verbalizer = dict(builtin.verbalizer)
    output_field = kind_class.output_field
    text_col = spec.text_column or kind_class.columns[0]
    out_col = getattr(spec, output_field) or kind_class.columns[1]
    skipped = 0

    def read(path, shown: str | None) -> tuple:
        nonlocal skipped
        loaded = load_examples(
            path,
            input_column=text_col,
            output_column=out_col,
            label_set=None if verbalizer is None else set(verbalizer),
            skip_invalid=spec.skip_invalid,
            column_flags={"input": name("text_column"), "output": name(output_field)},
            name=shown,
            messages=kind_class.format == "chat",
        )
        skipped += len(loaded.skipped)
        return loaded.examples

    if builtin is not None:
        splits = builtin.load()
        train, dev, test = splits.train, splits.dev, splits.test
        if verbalizer is None and kind_class.has_labels:  # a chat dataset read as classification: its replies
            verbalizer = _found_labels(train, template)
    elif isinstance(source, SplitDataset):  # a saved DatasetDict or hf:NAME: its own train/validation/test
        # Train first: without --labels its labels are the task's, and the other splits are checked against them.
        train = _read_split(source, "train", read, required=need_train)
        if verbalizer is None and kind_class.has_labels and train:
            verbalizer = _found_labels(train, template)
        test = _read_split(source, "test", read)
        if verbalizer is None and kind_class.has_labels:
            verbalizer = _found_labels(test, template)
        dev = read(spec.dev_data, None) if spec.dev_data else _read_split(source, "dev", read)
    else:
        examples = read(source, spec.data_name)
        if verbalizer is None and kind_class.has_labels:
            verbalizer = _found_labels(examples, template)
        if spec.dev_data or not need_train:
            train, dev, test = (examples if need_train else ()), (), examples
            if spec.dev_data:
                dev = read(spec.dev_data, None)
        else:
            splits = split_examples(examples, dev_fraction=0.1, test_fraction=0.0, seed=0)
            train, dev, test = splits.train, splits.dev, ()
    if need_train and not train:
        raise SoftPromptError(f"{spec.data_name or spec.data}: no training examples left after the dev split; add rows")
    task = kind_class.build(template, labels=verbalizer, output_column=out_col).with_data(train)
    if not need_train:  # scoring a prompt (or the bare model): the task as that prompt was trained
        task = task.for_prompt(meta)
    if builtin is not None:
        data_name = builtin.name
    else:
        data_name = source.slug if isinstance(source, SplitDataset) else Path(spec.data_name or spec.data).stem
    hint = builtin.max_input_tokens if builtin else None
    return RunData(task, tuple(train), tuple(dev), tuple(test), data_name, hint, skipped)


def _found_labels(examples, template: str) -> dict[str, str]:
    """Without --labels: every label in the data, answered by itself (after a space unless the template ends in one)."""
    space = "" if template[-1:].isspace() else " "
    return {label: space + label for label in sorted({ex.output for ex in examples})}


def _read_split(source, role: str, read: Callable, *, required: bool = False) -> tuple:
    """The examples of the split of a SplitDataset playing `role` (train | dev | test); () if it has none."""
    part = source.part(role)
    if part is None:
        if required:
            raise SoftPromptError(f"{source.name}: no {role} split (it has: {', '.join(source.folders)})")
        return ()
    split, folder = part
    return read(folder, source.shown(split))


def build_config(spec: RunSpec, data: RunData, saved: Mapping | None = None, *, seq2seq: bool = False) -> TrainConfig:
    """The TrainConfig of a run: the spec's settings, then (resuming) the checkpoint's, then the defaults
    (on an encoder-decoder model, `seq2seq`, the default method is one that runs there)."""
    chosen = dict(saved or {})
    chosen = {k: v for k, v in chosen.items() if k in setting_names()}
    chosen.update(spec.settings)
    if saved is None:
        chosen.setdefault("max_input_tokens", data.max_input_tokens)
        chosen.setdefault("init", default_init(data.task.kind))
        chosen.setdefault("method", default_method(seq2seq=seq2seq))
    if chosen.get("max_grad_norm") == 0:
        chosen["max_grad_norm"] = None
    return config_class()(**chosen)


def set_threads(threads: int | None) -> None:
    """Use `threads` torch threads (None = torch's default: one per core).

    An explicit choice rather than a guess from the load average: the thread
    count changes the order of float reductions, and a resumed run must see the
    same arithmetic as the run it continues. On a machine whose cores are busy
    with other work, one thread avoids OpenMP threads waiting on each other.
    """
    if threads is None:
        return
    if threads < 1:
        raise FieldError("threads", f"must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def run_training(
    spec: RunSpec,
    out: str | Path,
    base: BaseModel,
    *,
    data: RunData | None = None,
    resume: bool = False,
    show_progress: bool = True,
    base_model_name: str | None = None,
    allow_model_mismatch: bool = False,
    dist: Dist | None = None,
    on_start: Callable[[RunStart], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train the prompt `spec` describes on `base` into `out` (prompt files, metrics.jsonl, checkpoint/).

    `data` skips resolving the spec's data (compare shares one split between methods). Resuming,
    settings the spec leaves unset take the checkpoint's values. `base_model_name` is recorded in the
    prompt's metadata (default: the model's own name).
    """
    from .balance import balance_note, balanced_task, dev_metric
    from .distributed import Dist
    from .evaluate import encode_eval_set
    from .prompts.meta import PromptMeta
    from .train import CHECKPOINT_DIR, encode_examples, train

    out = Path(out)
    dist = dist or Dist()
    data = data or prepare(spec)
    saved = dist.load_checkpoint(out / CHECKPOINT_DIR).values.get("config") if resume else None
    config = build_config(spec, data, saved, seq2seq=base.family.seq2seq)
    task = data.task
    rows, cut = encode_examples(base, task, data.train, max_tokens=config.max_input_tokens, truncate=config.truncate)
    dev = encode_eval_set(
        base, task, data.dev[: spec.max_dev_examples], max_tokens=config.max_input_tokens, truncate=config.truncate
    )
    dev = dev if len(dev) else None
    metric = dev_metric(balanced_task(task, rows, config.balance)) if dev is not None else None
    if on_start is not None:
        on_start(
            RunStart(
                config,
                len(rows),
                cut,
                0 if dev is None else len(dev),
                config.total_steps(len(rows)),
                metric,
                balance_note(task, rows, config.balance),
            )
        )
    return train(
        base,
        task,
        rows,
        dev,
        config,
        out,
        resume=resume,
        show_progress=show_progress,
        meta=PromptMeta(base_model=base_model_name or base.name),
        on_step=on_step,
        dist=dist,
        should_stop=should_stop,
        allow_model_mismatch=allow_model_mismatch,
    )
