"""The task kinds by name: what `--task`, prompt files, the studio and the server choose from.

`@register_task` on a `Task` subclass adds its kind. The package imports every
module under `softprompt/tasks/` at start, so a built-in kind is one file; a
kind defined elsewhere (a plugin, a test) registers when its module is imported.
This mapping is the only module-level state of the package: it is filled at
import and only read afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SoftPromptError

if TYPE_CHECKING:
    from ..prompts.meta import PromptMeta
    from .base import Task

DEFAULT_KIND = "classify"  # what a run is when neither the user nor the data says
_KINDS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls.kind` a task kind (a later class of the same qualified name replaces it)."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind.isidentifier():
        raise TypeError(f"{cls.__name__}.kind must be a short identifier, got {kind!r}")
    known = _KINDS.get(kind)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise TypeError(f"task kind {kind!r} is taken by {known.__module__}.{known.__qualname__}")
    _KINDS[kind] = cls
    return cls


def task_kinds() -> tuple[str, ...]:
    """Every registered kind, the default first."""
    return tuple(sorted(_KINDS, key=lambda k: (k != DEFAULT_KIND, k)))


def task_class(kind: str) -> type[Task]:
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise SoftPromptError(f"unknown task {kind!r}; choose one of: {', '.join(task_kinds())}") from None


def kind_has_labels(kind: str | None) -> bool:
    """Whether prompts of `kind` answer with one of a closed set of labels (unknown kinds: no)."""
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    return bool(cls is not None and cls.has_labels)


def describe_kinds() -> list[dict]:
    """Each kind's defaults, for front ends that build their forms from them (the studio)."""
    return [
        {
            "kind": kind,
            "default_template": cls.default_template,
            "columns": list(cls.columns),
            "has_labels": cls.has_labels,
            "default_init": cls.default_init,
            "metric": cls.metric,
            "format": cls.format,
        }
        for kind, cls in ((k, _KINDS[k]) for k in task_kinds())
    ]


def task_from_meta(meta: PromptMeta) -> Task:
    """The task a prompt was trained for, from its metadata."""
    if meta.task not in _KINDS:
        raise SoftPromptError(
            f"the prompt file does not say what task it was trained for (task={meta.task!r}); "
            f"give --template and --labels (classification) or --task ({', '.join(task_kinds())})"
        )
    from ..balance import task_with_decision  # balance builds on tasks: imported when used

    return task_with_decision(_KINDS[meta.task].from_meta(meta), meta)
