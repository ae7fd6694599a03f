"""The task all methods share: template, verbalizer, train split and the fixed test subset.

Conversations (a built-in chat dataset, or a data file of OpenAI `messages` rows) are
compared as classification through chat (`chat_classify`): the final assistant replies
are the labels, scored at the start of the assistant's turn; every method sees the same
chat-rendered inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import (
    BuiltinDataset,
    Example,
    SplitDataset,
    builtin_dataset,
    load_examples,
    read_rows,
    resolve_data,
    split_examples,
)
from ..errors import SoftPromptError
from ..tasks import ClassifyTask
from ..tasks.chat import ChatClassifyTask
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
        chat = source.task == "chat"
        if source.task != ClassifyTask.kind and not chat:
            raise SoftPromptError(f"compare scores classification; '{source.name}' is a {source.task} task")
        splits = source.load()
        if chat:
            task = _chat_task(config, splits.train)
        else:
            task = ClassifyTask(config.template or source.template, dict(config.labels or source.verbalizer))
        train, test, hint, about = splits.train, splits.test, source.max_input_tokens, source.description
    else:
        task, train, test = _from_file(source, config)
        cut = "its own test split" if isinstance(source, SplitDataset) and source.part("test") else "split 90/10"
        name = source.name if isinstance(source, SplitDataset) else source
        hint, about = None, f"{name}: {len(train) + len(test)} labelled examples, {cut} (seed {split_seed(config)})"
    return TaskData(
        name=config.data,
        task=task,
        train=tuple(train),
        test=tuple(test[: config.test_size]),
        test_split_size=len(test),
        max_input_tokens=config.max_input_tokens or hint,
        description=about,
    )


def split_seed(config: CompareConfig) -> int:
    return config.seed if config.split_seed is None else config.split_seed


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


def _from_file(source: Path | SplitDataset, config: CompareConfig):
    """A data file (or data set folder) split 90/10; a SplitDataset's own train and test splits when it has both."""
    name = source.name if isinstance(source, SplitDataset) else source
    if _holds_conversations(source):
        return _from_chat_rows(source, config)
    if not config.template or not config.labels:
        raise SoftPromptError(
            f"{name}: a data file needs --template (with {{text}}) and --labels (e.g. 'pos=positive,neg=negative')"
        )
    task = ClassifyTask(config.template, dict(config.labels))
    parts = {role: source.part(role) for role in ("train", "test")} if isinstance(source, SplitDataset) else {}
    if isinstance(source, SplitDataset) and parts["train"] is None:
        raise SoftPromptError(f"{source.name}: no train split (it has: {', '.join(source.folders)})")
    load = lambda split, path: load_examples(path, label_set=task.labels, name=split).examples  # noqa: E731
    if parts.get("test"):
        (train_split, train_path), (test_split, test_path) = parts["train"], parts["test"]
        return task, load(source.shown(train_split), train_path), load(source.shown(test_split), test_path)
    examples = load(source.shown(parts["train"][0]), parts["train"][1]) if parts else load(None, source)
    splits = split_examples(examples, dev_fraction=0.0, test_fraction=0.1, seed=split_seed(config))
    return task, splits.train, splits.test


def _chat_task(config: CompareConfig, train) -> ChatClassifyTask:
    """Classification through chat: the labels are the final assistant replies (or --labels).

    Every method sees one rendering, the prompt placed first: the baselines (zero/few-shot, LoRA) have no
    prompt prefix to hold the system turn that a prompt placed after it would take out of the rows."""
    labels = config.labels or {label: label for label in sorted({ex.output for ex in train})}
    return ChatClassifyTask("{text}", dict(labels)).with_data(train).for_prompt(None)


def _holds_conversations(source: Path | SplitDataset) -> bool:
    path = source.part("train")[1] if isinstance(source, SplitDataset) and source.part("train") else source
    if isinstance(path, SplitDataset):
        return False
    first = next(iter(read_rows(path)), None)
    return first is not None and "messages" in first[1]


def _from_chat_rows(source: Path | SplitDataset, config: CompareConfig):
    load = lambda split, path: load_examples(path, name=split, messages=True).examples  # noqa: E731
    if isinstance(source, SplitDataset):
        (train_split, train_path) = source.part("train")
        train = load(source.shown(train_split), train_path)
        test_part = source.part("test")
        test = load(source.shown(test_part[0]), test_part[1]) if test_part else None
    else:
        train, test = load(None, source), None
    if test is None:
        splits = split_examples(train, dev_fraction=0.0, test_fraction=0.1, seed=split_seed(config))
        train, test = splits.train, splits.test
    task = _chat_task(config, train)
    unknown = sorted({ex.output for ex in test} - set(task.labels))
    if unknown:
        raise SoftPromptError(f"the test replies {unknown[:3]} are not among the labels {list(task.labels)}")
    return task, train, test
