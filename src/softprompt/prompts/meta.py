"""PromptMeta: what a prompt is for and where it came from; it travels inside the prompt file.

Imports no torch: the task kinds (tasks/) read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .. import __version__
from ..errors import PromptFileError


@dataclass(frozen=True)
class PromptMeta:
    """What a prompt is for and where it came from; travels inside the prompt file.

    Built once and never changed: a new fact (the training figures, say) makes a
    new PromptMeta with `dataclasses.replace`.
    """

    task: str | None = None  # the task kind (tasks.task_kinds(): "classify", "generate", ...)
    template: str | None = None  # e.g. "Review: {text}\nSentiment:"
    verbalizer: dict[str, str] | None = None  # label -> answer words, e.g. {"fresh": " positive"}
    target_column: str | None = None  # text-to-text prompts: the data's target column
    format: str | None = None  # "chat": trained on conversations (tasks/chat.py); None: on `template`
    system: str | None = None  # chat prompts: the system message all training rows shared
    # chat prompts: "after_system" (the prompt sits after that system turn) or "first"; None (older files): first
    placement: str | None = None
    base_model: str | None = None
    base_fingerprint: str | None = None
    # The base model's quantisation when the prompt was made (`Quantization.to_dict()`); None: not recorded.
    base_quantization: dict | None = None
    init: str | None = None
    training: dict = field(default_factory=dict)  # figures: steps, time, dev metrics, ...
    softprompt_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self))  # no sort_keys: label order is the class order

    @classmethod
    def from_json(cls, text: str, *, where: str) -> PromptMeta:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{where}: the softprompt metadata is not valid JSON ({e})") from e
        if not isinstance(raw, dict):
            raise PromptFileError(f"{where}: the softprompt metadata should be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        # Ignore fields from newer versions rather than refusing the file.
        kept = {k: v for k, v in raw.items() if k in known}
        for name, value in kept.items():
            if not _meta_field_ok(name, value):
                raise PromptFileError(
                    f"{where}: softprompt metadata field '{name}' has the wrong type ({type(value).__name__}: "
                    f"{str(value)[:60]!r}); the file is corrupt or was edited by hand"
                )
        return cls(**kept)


_TEXT_FIELDS = frozenset(
    {"task", "template", "target_column", "format", "system", "placement", "base_model", "base_fingerprint", "init"}
    | {"softprompt_version"}
)


def _meta_field_ok(name: str, value: object) -> bool:
    """Whether a metadata value has its field's type (a wrong one would fail far from the file, or crash)."""
    if name == "training":
        return isinstance(value, dict)
    if name == "base_quantization":
        return value is None or (isinstance(value, dict) and isinstance(value.get("mode"), str))
    if name == "verbalizer":
        return value is None or (
            isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        )
    if name in _TEXT_FIELDS:
        return value is None or isinstance(value, str)
    return True  # a field added later: not refused for want of a rule here


def precision_text(quantization: dict) -> str:
    """A recorded quantisation (`Quantization.to_dict()`) in words: "full-precision", "int8", "int4 (groups of 32)"."""
    mode = quantization["mode"]
    group = quantization.get("group_size")
    if mode == "none":
        return "full-precision"
    return f"{mode} (groups of {group})" if mode == "int4" and group else mode


def trained_precision(meta: PromptMeta) -> str | None:
    """The precision a prompt was made on, in words; None if unknown (a PEFT file).

    softprompt's prompts from before quantisation existed record none and were made on full-precision weights.
    """
    if meta.base_quantization is not None:
        return precision_text(meta.base_quantization)
    return "full-precision" if meta.base_fingerprint else None
