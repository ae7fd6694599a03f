"""The prompt methods' classes, by name: how a method is chosen, loaded and added.

A method is a `base.BasePrompt` subclass: what its rows are (`weights`), how
they reach the forward (`state_of`: a prompt state, see forward.py), how it
starts (`initialize`), its PEFT folder type and what `inspect` shows of it.
Every front end goes through here: `train --method`, the studio's form and
`compare` pick a class by name, and `predict`, `generate`, `serve`, `eval`,
`inspect` and `info` load any prompt folder with `load_prompt`, which reads the
folder's PEFT type.

- `prompt` (`plain.SoftPrompt`, PROMPT_TUNING): T input vectors [T, d] (Lester et al. 2021).
- `prefix` (`prefix.PrefixPrompt`, PREFIX_TUNING): T keys and values in every layer
  (prefix tuning, Li & Liang 2021; P-tuning v2, Liu et al. 2022).

A new method is one module with its class, decorated with `@register_prompt_method(Method(...))`
(its name, PEFT type, help and recipe: registry.py); tests/prompts/test_toy_method.py adds one.
How any method trains (plain, or through an MLP folded away on save) is reparam.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from ..errors import SoftPromptError
from ..models import BaseModel
from .base import BasePrompt
from .files import read_peft_config
from .hub import prompt_folder
from .plain import SoftPrompt
from .prefix import PrefixPrompt
from .registry import METHODS, Method, method_names, register_method, unregister_method

Prompt = SoftPrompt | PrefixPrompt
P = TypeVar("P", bound=type[BasePrompt])

# The class of each method in the registry (a torch-free module, for --help and the studio), in its order.
_BUILT_IN = {cls.METHOD: cls for cls in (SoftPrompt, PrefixPrompt)}
_CLASSES: dict[str, type[BasePrompt]] = {name: _BUILT_IN[name] for name in method_names()}
PROMPT_CLASSES: Mapping[str, type[BasePrompt]] = MappingProxyType(_CLASSES)  # a live view, as registry.METHODS


def register_prompt_method(entry: Method) -> Callable[[P], P]:
    """Class decorator: make the `BasePrompt` subclass a prompt method described by `entry` (its name, PEFT type,
    help and recipe). Then `--method`, the studio, `TrainConfig`, training, every loader and `serve` take it."""

    def register(cls: P) -> P:
        if (entry.name, entry.peft_type) != (cls.METHOD, cls.PEFT_TYPE):
            raise ValueError(
                f"{cls.__name__} says METHOD={cls.METHOD!r}, PEFT_TYPE={cls.PEFT_TYPE!r}, its entry "
                f"{entry.name!r}, {entry.peft_type!r}"
            )
        register_method(entry)
        _CLASSES[entry.name] = cls
        return cls

    return register


def unregister_prompt_method(name: str) -> None:
    """Remove a method that `register_prompt_method` added."""
    unregister_method(name)
    _CLASSES.pop(name, None)


def prompt_class(method: str) -> type[BasePrompt]:
    try:
        return _CLASSES[method]
    except KeyError:
        raise SoftPromptError(f"--method must be one of {', '.join(_CLASSES)}, got {method!r}") from None


def load_prompt(folder: str | Path, base: BaseModel | None = None, *, allow_mismatch: bool = False) -> BasePrompt:
    """Any prompt folder (ours or PEFT's, of any method), or a Hub repository holding one (`user/name`);
    with `base`, refuse one made for another model."""
    folder = prompt_folder(folder)
    by_type = {METHODS[name].peft_type: cls for name, cls in _CLASSES.items()}
    config = read_peft_config(folder, accept=tuple(by_type))
    return by_type[config["peft_type"]].load(folder, base, allow_mismatch=allow_mismatch)
