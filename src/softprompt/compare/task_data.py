"""The task all methods share: template, verbalizer, train split and the fixed test subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import BuiltinDataset, Example, builtin_dataset, load_examples, resolve_data, split_examples
from ..errors import SoftPromptError
from ..tasks import ClassifyTask
from .config import CompareConfig


@dataclass(frozen=True)
class TaskData:
    name: str
    task: ClassifyTask
    train: tuple[Example, ...]
    test: tuple[Example, ...]  # the subset every method is scored on
    test_split_size: int  # size of the whole test split the subset is cut from
    max_input_tokens: int | None
    description: str


def load_task_data(config: CompareConfig) -> TaskData:
    """A built-in dataset by name, or a data file with `config.template` and `config.labels`."""
    source = resolve_data(config.data)
    if isinstance(source, BuiltinDataset):
        if source.task != ClassifyTask.kind:
            raise SoftPromptError(f"compare scores classification; '{source.name}' is a {source.task} task")
        splits = source.load()
        task = ClassifyTask(config.template or source.template, dict(config.labels or source.verbalizer))
        train, test, hint, about = splits.train, splits.test, source.max_input_tokens, source.description
    else:
        task, train, test = _from_file(source, config)
        hint, about = None, f"{source}: {len(train) + len(test)} labelled examples, split 90/10 with seed {config.seed}"
    return TaskData(
        name=config.data,
        task=task,
        train=tuple(train),
        test=tuple(test[: config.test_size]),
        test_split_size=len(test),
        max_input_tokens=config.max_input_tokens or hint,
        description=about,
    )


def second_task_data(name: str, size: int) -> TaskData:
    """A built-in dataset used only to measure forgetting: its first `size` test examples."""
    ds = builtin_dataset(name)
    splits = ds.load()
    return TaskData(
        name=name,
        task=ClassifyTask(ds.template, dict(ds.verbalizer)),
        train=(),
        test=tuple(splits.test[:size]),
        test_split_size=len(splits.test),
        max_input_tokens=ds.max_input_tokens,
        description=ds.description,
    )


def _from_file(path: Path, config: CompareConfig):
    if not config.template or not config.labels:
        raise SoftPromptError(
            f"{path}: a data file needs --template (with {{text}}) and --labels (e.g. 'pos=positive,neg=negative')"
        )
    task = ClassifyTask(config.template, dict(config.labels))
    loaded = load_examples(path, label_set=task.labels)
    splits = split_examples(loaded.examples, dev_fraction=0.0, test_fraction=0.1, seed=config.seed)
    return task, splits.train, splits.test
