"""One studio training job = one run of the ordinary trainer, set up exactly as `softprompt train` would.

`JobSpec` is what the page sends (data, task, template, labels, a few
settings with good defaults). It becomes the same argparse namespace the
`train` command builds, so `commands.train.prepare` and `build_config` decide
the task, splits and `TrainConfig`: a studio prompt and a CLI prompt trained
with the same settings are the same prompt. Because the spec fully decides
the config and the data, a stopped or interrupted job resumes from its
checkpoint with `train(..., resume=True)`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import SoftPromptError
from ..models import BaseModel
from ..serve.registry import name_problem
from .uploads import UploadStore

TASKS = ("classify", "generate")
DEFAULT_TEMPLATES = {"classify": "Input: {text}\nLabel:", "generate": "Input: {text}\nOutput:"}
PROMPT_FILES_SKIP = ("checkpoint",)  # trainer output that is not part of the prompt


@dataclass
class JobSpec:
    """A training job as the page describes it; validated on creation."""

    name: str  # the prompt's name in the list (folder name under prompts/)
    data: str  # an upload id, or a built-in dataset name
    task: str = "classify"
    template: str | None = None  # None: the built-in dataset's, else "Input: {text}\nLabel:"
    labels: str | None = None  # "label=answer words,...", None: the labels found in the data
    text_column: str | None = None
    label_column: str | None = None  # the label column (classify) or the target column (generate)
    num_virtual_tokens: int = 20
    steps: int = 100
    batch_size: int = 8
    optimizer: str = "adafactor"
    lr: float | None = None
    eval_every: int = 20
    max_dev_examples: int = 200
    max_input_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem:
            raise SoftPromptError(f"prompt name: {problem}")
        if self.task not in TASKS:
            raise SoftPromptError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.data, str) or not self.data:
            raise SoftPromptError("data: upload a file or choose a built-in dataset")
        if self.template is not None and self.template.count("{text}") != 1:
            raise SoftPromptError(f"template must contain {{text}} exactly once, got {self.template!r}")
        limits = {"num_virtual_tokens": 512, "steps": 100_000, "batch_size": 256, "eval_every": 100_000}
        for key, top in limits.items():
            value = getattr(self, key)
            if not isinstance(value, int) or not 1 <= value <= top:
                raise SoftPromptError(f"{key} must be a whole number from 1 to {top}, got {value!r}")
        if not isinstance(self.max_dev_examples, int) or self.max_dev_examples < 0:
            raise SoftPromptError(f"max_dev_examples must be >= 0, got {self.max_dev_examples!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise SoftPromptError(f"lr must be a positive number, got {self.lr!r}")

    @classmethod
    def from_dict(cls, raw: dict) -> JobSpec:
        if not isinstance(raw, dict):
            raise SoftPromptError("the job must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SoftPromptError(f"unknown job settings: {', '.join(unknown)}")
        blank_is_default = {k: (None if v == "" else v) for k, v in raw.items()}
        try:
            return cls(**blank_is_default)
        except TypeError as e:
            raise SoftPromptError(f"job settings: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prepared:
    """What a spec resolves to, before any model work: the train command's Prepared plus its config."""

    prepared: object  # commands.train.Prepared
    config: object  # train.TrainConfig
    max_dev_examples: int


def _namespace(spec: JobSpec, data: str) -> argparse.Namespace:
    """The `softprompt train` flags this spec stands for."""
    return argparse.Namespace(
        data=data,
        task=spec.task,
        template=spec.template,
        labels=spec.labels,
        text_column=spec.text_column,
        label_column=spec.label_column if spec.task == "classify" else None,
        target_column=spec.label_column if spec.task == "generate" else None,
        skip_invalid=False,  # a bad row is reported (file:line), never silently dropped
        max_input_tokens=spec.max_input_tokens,
        truncate=None,
        dev_data=None,
        num_virtual_tokens=spec.num_virtual_tokens,
        init=None,
        optimizer=spec.optimizer,
        lr=spec.lr,
        weight_decay=None,
        batch_size=spec.batch_size,
        grad_accum=None,
        steps=spec.steps,
        epochs=None,
        warmup_steps=None,
        schedule=None,
        max_grad_norm=None,
        eval_every=spec.eval_every,
        patience=None,
        checkpoint_every=None,
        seed=spec.seed,
    )


def prepare_spec(spec: JobSpec, uploads: UploadStore) -> Prepared:
    """Resolve and validate the spec's data and settings (reads the file; no model needed)."""
    from ..commands.train import build_config, prepare
    from ..data import BUILTIN_DATASETS

    upload_name = None
    if spec.data in BUILTIN_DATASETS:
        data = spec.data
    else:
        path = uploads.path(spec.data)
        data, upload_name = str(path), spec.data[9:]  # the (sanitised) name the user uploaded
    try:
        prepared = prepare(_namespace(spec, data))
    except SoftPromptError as e:
        message = str(e).replace(data, upload_name) if upload_name else str(e)
        raise SoftPromptError(
            message.replace("--text-column", "the text column").replace("--label-column", "the label column")
        ) from None
    if not prepared.train:
        raise SoftPromptError("no training examples left after the dev split; upload more rows")
    config = build_config(_namespace(spec, data), prepared, None)
    return Prepared(prepared, config, spec.max_dev_examples)


def run_training(
    base: BaseModel,
    spec: JobSpec,
    uploads: UploadStore,
    out: Path,
    *,
    resume: bool,
    should_stop: Callable[[], bool],
    on_step: Callable[[int], None],
    on_start: Callable[[int, str | None], None] = lambda total, metric: None,
) -> dict:
    """Train into `out` (metrics.jsonl, checkpoint/, prompt files); return the result's figures."""
    from ..evaluate import encode_eval_set, main_metric
    from ..prompt import PromptMeta
    from ..train import encode_examples, train

    ready = prepare_spec(spec, uploads)
    task, config = ready.prepared.task, ready.config
    rows, _ = encode_examples(
        base, task, ready.prepared.train, max_tokens=config.max_input_tokens, truncate=config.truncate
    )
    dev_examples = ready.prepared.dev[: ready.max_dev_examples]
    dev = encode_eval_set(base, task, dev_examples, max_tokens=config.max_input_tokens, truncate=config.truncate)
    dev = dev if len(dev) else None
    on_start(config.total_steps(len(rows)), main_metric(task) if dev is not None else None)
    result = train(
        base,
        task,
        rows,
        dev,
        config,
        out,
        resume=resume,
        show_progress=False,
        meta=PromptMeta(base_model=base.name),
        on_step=on_step,
        should_stop=should_stop,
    )
    return {
        "status": result.status,
        "steps": result.steps,
        "best_step": result.best_step,
        "best_metric": result.best_metric,
        "metric": result.metric,
        "wall_time_s": round(result.wall_time_s, 2),
        "train_examples": len(rows),
        "dev_examples": 0 if dev is None else len(dev),
    }


def publish(out: Path, prompts_dir: Path, name: str) -> Path:
    """Copy the trained prompt's files (not the checkpoint) into prompts/<name>, atomically."""
    from ..fileio import write_dir_atomic

    if name_problem(name):
        raise SoftPromptError(name_problem(name))
    target = prompts_dir / name

    def fill(tmp: Path) -> None:
        for item in out.iterdir():
            if item.is_file() and item.name not in PROMPT_FILES_SKIP and not item.name.startswith("."):
                shutil.copy2(item, tmp / item.name)

    write_dir_atomic(target, fill)
    return target


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
