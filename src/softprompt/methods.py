"""The prompt methods, by name: the one place a new method is registered.

A method is a `prompt.BasePrompt` subclass: what its rows are (`weights`), how
they reach the forward (`state_of`: a prompt state, see forward.py), how it
starts (`initialize`) and its PEFT folder type. Every front end goes through
here: `train --method`, the studio's form and `compare` pick a class by name,
and `predict`, `generate`, `serve`, `eval`, `inspect` and `info` load any
prompt folder with `load_prompt`, which reads the folder's PEFT type.

- `prompt` (`SoftPrompt`, PROMPT_TUNING): T input vectors [T, d] (Lester et al. 2021).
- `prefix` (`PrefixPrompt`, PREFIX_TUNING): T keys and values in every layer
  (prefix tuning, Li & Liang 2021; P-tuning v2, Liu et al. 2022).

How either trains (plain, or through an MLP folded away on save) is `reparam.py`.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SoftPromptError
from .method_registry import METHOD_NAMES
from .models import BaseModel
from .prefix import PrefixPrompt
from .prompt import BasePrompt, SoftPrompt, prompt_folder, read_peft_config

Prompt = SoftPrompt | PrefixPrompt
# The class of each method in the registry (a torch-free module, for --help and the studio), in its order.
_CLASSES = {cls.METHOD: cls for cls in (SoftPrompt, PrefixPrompt)}
PROMPT_CLASSES: dict[str, type[BasePrompt]] = {name: _CLASSES[name] for name in METHOD_NAMES}
BY_PEFT_TYPE = {cls.PEFT_TYPE: cls for cls in PROMPT_CLASSES.values()}


def prompt_class(method: str) -> type[BasePrompt]:
    try:
        return PROMPT_CLASSES[method]
    except KeyError:
        raise SoftPromptError(f"--method must be one of {', '.join(PROMPT_CLASSES)}, got {method!r}") from None


def load_prompt(folder: str | Path, base: BaseModel | None = None, *, allow_mismatch: bool = False) -> BasePrompt:
    """Any prompt folder (ours or PEFT's, plain or deep), or a Hub repository holding one (`user/name`);
    with `base`, refuse one made for another model."""
    folder = prompt_folder(folder)
    config = read_peft_config(folder, accept=tuple(BY_PEFT_TYPE))
    return BY_PEFT_TYPE[config["peft_type"]].load(folder, base, allow_mismatch=allow_mismatch)
