"""One studio training job = one `recipe.run_training`, the same run `softprompt train` makes.

`JobSpec` is what the page sends (data, task, template, labels, and any training
setting by name). The form is drawn from `form_schema()`, generated from
TrainConfig's declarations (labels, types, choices, help, defaults), so a new
setting appears on the page with no edit here; the job becomes a
`recipe.RunSpec`, so a studio prompt and a CLI prompt trained with the same
settings are the same prompt. Because the
spec fully decides the config and the data, a stopped or interrupted job
resumes from its checkpoint.

Errors about a setting name it by the page's form label (`form_label`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import FieldError, SoftPromptError, worded
from ..models import BaseModel
from ..recipe import DEFAULT_DEV_EXAMPLES, RunData, RunSpec, RunStart, prepare, run_training
from ..serve.registry import name_problem
from ..tasks import DEFAULT_KIND, task_class, task_kinds
from ..train_config import TrainConfig, config_class, label_of, setting_names, settings
from ..typecheck import check_field_types
from .uploads import UploadStore

PROMPT_FILES_SKIP = ("checkpoint",)  # trainer output that is not part of the prompt
JOB_MARK = ".studio-job"  # in a published prompt folder: the id of the job that wrote it
# Labels of the form's data and task fields; a training setting's label is declared with it (TrainConfig).
FORM_LABELS = {
    "name": "Prompt name",
    "data": "Data",
    "task": "Task",
    "template": "Template",
    "labels": "Labels",
    "text_column": "Text column",
    "label_column": "Label column",
    "target_column": "Label column",  # the page has one output-column field for both tasks
    "max_dev_examples": "Dev examples",
    "overwrite": "Replace an existing prompt",
}


def form_label(field: str) -> str:
    """A field as the page names it (fields without a form control keep their JSON name)."""
    return FORM_LABELS.get(field) or label_of(field) or field


def form_schema() -> dict:
    """The form's training settings, generated from TrainConfig's declarations: what the page draws and checks.

    Each setting: name, label, type (int | float | str | bool), optional (blank = the default rule), default
    (the declared value), default_text (the default in words), help, choices, basic (first rows; the others
    go under "More settings"). `defaults` holds the values a run gets, and each method's recipe.
    """
    from ..recipe import defaults

    return {
        "settings": [
            {
                "name": s.name,
                "label": s.label,
                "type": s.type.__name__,
                "optional": s.optional,
                "default": s.default,
                "default_text": s.default_text,
                "help": s.help,
                "choices": list(s.choices) if s.choices else None,
                "basic": s.basic,
            }
            for s in settings()
        ],
        "defaults": defaults(),
    }


@dataclass
class JobSpec:
    """A training job as the page describes it; validated (types included) on creation.

    The page sends one flat JSON object: these fields, plus any TrainConfig setting by name (`settings`).
    """

    name: str  # the prompt's name in the list (folder name under prompts/)
    data: str  # an upload id, or a built-in dataset name
    overwrite: bool = False  # replace a prompt of the same name; otherwise the name is refused
    task: str = DEFAULT_KIND  # a task kind (tasks.task_kinds())
    template: str | None = None  # None: the built-in dataset's, else the task kind's default template
    labels: str | None = None  # "label=answer words,...", None: the labels found in the data
    text_column: str | None = None
    label_column: str | None = None  # the output column: labels, or targets (the task kind's output_field)
    max_dev_examples: int = DEFAULT_DEV_EXAMPLES
    settings: dict[str, object] = field(default_factory=dict)  # TrainConfig settings chosen; others: defaults

    def __post_init__(self) -> None:
        with worded(form_label):
            check_field_types(self)
            problem = name_problem(self.name)
            if problem:
                raise FieldError("name", f": {problem}")
            if not self.data:
                raise FieldError("data", ": upload a file or choose a built-in dataset")
            if self.task not in task_kinds():
                raise FieldError("task", f"must be one of {', '.join(task_kinds())}, got {self.task!r}")
            self.run_spec(self.data)  # the same checks as every front end (template, labels, settings)

    @classmethod
    def from_dict(cls, raw: object) -> JobSpec:
        if not isinstance(raw, dict):
            raise SoftPromptError("the job must be a JSON object")
        own = {f.name for f in fields(cls)} - {"settings"}
        chosen = {k: v for k, v in raw.items() if v is not None and v != ""}  # a blank field is its default
        unknown = sorted(set(chosen) - own - set(setting_names()))
        if unknown:
            raise SoftPromptError(f"unknown job settings: {', '.join(unknown)}")
        if "name" not in chosen or "data" not in chosen:
            raise FieldError("name" if "name" not in chosen else "data", "is missing", form_label)
        return cls(
            **{k: v for k, v in chosen.items() if k in own},
            settings={k: v for k, v in chosen.items() if k not in own},
        )

    def to_dict(self) -> dict:
        """The flat JSON object the page sends (`from_dict` reads it back)."""
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "settings"}, **out["settings"]}

    def config(self) -> TrainConfig:
        """The training settings the job asks for (the data's hints aside)."""
        return config_class()(**self.settings)

    def run_spec(self, data: str, data_name: str | None = None) -> RunSpec:
        """The run this job stands for, reading `data` (the upload's stored path, or the dataset's name)."""
        output = {"label_column": None, "target_column": None, task_class(self.task).output_field: self.label_column}
        return RunSpec(
            data=data,
            task=self.task,
            template=self.template,
            labels=self.labels,
            text_column=self.text_column,
            **output,
            skip_invalid=False,  # a bad row is reported (file:line), never silently dropped
            max_dev_examples=self.max_dev_examples,
            settings=dict(self.settings),
            data_name=data_name,
        )


def resolve(spec: JobSpec, uploads: UploadStore) -> tuple[RunSpec, RunData]:
    """The job's run and its data, read and validated (no model needed): data problems show up before queueing."""
    from ..data import BUILTIN_DATASETS

    with worded(form_label):
        if spec.data in BUILTIN_DATASETS:
            run = spec.run_spec(spec.data)
        else:
            run = spec.run_spec(str(uploads.path(spec.data)), uploads.shown_name(spec.data))
        return run, prepare(run, name=form_label)


def train_job(
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
    run, data = resolve(spec, uploads)
    counts: dict[str, int] = {}

    def started(start: RunStart) -> None:
        counts.update(train_examples=start.train_examples, dev_examples=start.dev_examples)
        on_start(start.total_steps, start.metric)

    with worded(form_label):
        result = run_training(
            run,
            out,
            base,
            data=data,
            resume=resume,
            show_progress=False,
            on_start=started,
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
        **counts,
    }


def publish(out: Path, prompts_dir: Path, name: str, job_id: str, *, replace: bool) -> Path:
    """Copy the trained prompt's files (not the checkpoint) into prompts/<name>, atomically.

    An existing prompts/<name> is replaced only with `replace` (the user asked to overwrite) or when
    it is still this job's own earlier result (a stopped job published its best so far; the folder
    holds a `.studio-job` mark with the job's id): a job never silently takes another prompt's place.
    """
    from ..fileio import write_dir_atomic

    if name_problem(name):
        raise SoftPromptError(name_problem(name))
    target = prompts_dir / name
    if target.exists() and not replace and published_by(target) != job_id:
        raise NameTaken(name, out)

    def fill(tmp: Path) -> None:
        for item in out.iterdir():
            if item.is_file() and item.name not in PROMPT_FILES_SKIP and not item.name.startswith("."):
                shutil.copy2(item, tmp / item.name)
        (tmp / JOB_MARK).write_text(job_id, encoding="utf-8")

    write_dir_atomic(target, fill)
    return target


def published_by(folder: Path) -> str | None:
    """The id of the studio job that published `folder`, if one did."""
    try:
        return (folder / JOB_MARK).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


class NameTaken(SoftPromptError):
    """A prompt of this name exists and the user did not ask to replace it."""

    status = 409

    def __init__(self, name: str, kept: Path | None = None):
        where = f"; the trained prompt is kept in the job's folder ({kept.parent.name})" if kept else ""
        super().__init__(
            f"a prompt named '{name}' already exists; choose another name, or tick "
            f"'{form_label('overwrite')}' to replace it{where}"
        )


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, RecursionError):
        return None
