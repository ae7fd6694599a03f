"""Task kinds: how an example becomes token ids, how the model's output is scored, what is reported.

`base.Task` is the protocol; each built-in kind is one module here (`classify`,
`generate`) registered by `@register_task`. Every module of this package is
imported below, so a new kind is one class in one new file: the CLI's `--task`
choices, prompt files (`task_from_meta`), the studio's form and the server
pick it up from the registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Encoded, Task, encode_template, special_ids, split_template
from .registry import (
    DEFAULT_KIND,
    describe_kinds,
    kind_has_labels,
    register_task,
    task_class,
    task_from_meta,
    task_kinds,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .classify import ClassifyTask  # noqa: E402  (imported above; named here for `from softprompt.tasks import ...`)
from .generate import GenerateTask  # noqa: E402

__all__ = [
    "DEFAULT_KIND",
    "ClassifyTask",
    "Encoded",
    "GenerateTask",
    "Task",
    "describe_kinds",
    "encode_template",
    "kind_has_labels",
    "register_task",
    "special_ids",
    "split_template",
    "task_class",
    "task_from_meta",
    "task_kinds",
]
