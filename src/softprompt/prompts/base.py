"""BasePrompt: what every prompt method's artefact shares: T rows of trained numbers, metadata, the folder.

A method (one module: `plain.SoftPrompt`, `prefix.PrefixPrompt`, or a plugin's) subclasses
`BasePrompt` and says what its rows are (`weights`), how they become what the forward takes
(`state_of`), how a new one starts (`initialize`), which PEFT adapter type its folder is, which
base models it fits (`_misfit`) and what `inspect` shows of it (`inspect`). The files (files.py),
the metadata (meta.py) and the wrong-model guard are the same for all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import PromptFileError, SoftPromptError
from ..forward import PromptState
from ..models import BaseModel
from .files import read_folder, write_folder
from .hub import prompt_folder
from .initialize import Start
from .meta import PromptMeta, precision_text, trained_precision

log = logging.getLogger("softprompt")


class BasePrompt(nn.Module):
    """What every prompt method's artefact shares: T rows of trained numbers, metadata, the folder format."""

    METHOD: ClassVar[str]  # the name on the command line: --method prompt|prefix
    PEFT_TYPE: ClassVar[str]  # adapter_config.json's peft_type

    meta: PromptMeta
    initial: torch.Tensor | None  # the weights before training, kept so inspect can measure drift

    WEIGHTS: ClassVar[str]  # the attribute that holds the weights, e.g. `embeddings`

    def __init__(self, weights: torch.Tensor, meta: PromptMeta | None = None, initial: torch.Tensor | None = None):
        super().__init__()
        # fp32 copies whatever the model's dtype; the initial value is kept (not trained) so inspect can measure drift.
        setattr(self, self.WEIGHTS, nn.Parameter(weights.detach().to(torch.float32).clone()))
        self.meta = meta or PromptMeta()
        self.initial = None if initial is None else initial.detach().to(torch.float32).clone()

    @property
    def weights(self) -> torch.Tensor:
        """The [T, width] tensor that is the whole trained artefact (what the folder stores)."""
        return getattr(self, self.WEIGHTS)

    @property
    def num_virtual_tokens(self) -> int:
        return self.weights.shape[0]

    @property
    def num_parameters(self) -> int:
        return self.weights.numel()

    @property
    def shape_text(self) -> str:
        """The artefact's shape in words, e.g. '20x576'."""
        return "x".join(str(n) for n in self.weights.shape)

    @property
    def token_dim(self) -> int:
        """The size of one vector the prompt is made of (a reparam MLP's default width, as PEFT's)."""
        raise NotImplementedError

    def layout(self) -> dict[str, int]:
        """The method's shape facts by name (`info` shows them)."""
        raise NotImplementedError

    @classmethod
    def initialize(
        cls,
        base: BaseModel,
        num_virtual_tokens: int = 20,
        init: str = "vocab",
        *,
        label_words: list[str] | None = None,
        seed: int = 0,
        meta: PromptMeta | None = None,
        allow_mismatch: bool = False,
    ) -> BasePrompt:
        """A new prompt for `base`; `init` is random, vocab, labels, text:"...", or file:PATH.

        `allow_mismatch`: a file: prompt made for another model of the same shape is taken anyway.
        """
        start = Start(num_virtual_tokens, init, label_words, seed, allow_mismatch)
        return cls.of_weights(base, cls.initial_weights(base, start), new_meta(base, meta, init))

    @classmethod
    def initial_weights(cls, base: BaseModel, start: Start) -> torch.Tensor:
        """The [T, width] weights a new prompt of this method starts from (`initialize` makes the prompt)."""
        raise NotImplementedError

    @classmethod
    def of_weights(cls, base: BaseModel, weights: torch.Tensor, meta: PromptMeta) -> BasePrompt:
        """A new prompt of this method for `base` holding `weights`, which are also its initial value."""
        raise NotImplementedError

    @classmethod
    def state_of(
        cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True, head: Sequence[int] = ()
    ) -> PromptState:
        """What the forward takes for `weights` of this method (differentiable)."""
        raise NotImplementedError

    def state(self, base: BaseModel, *, share_prefix: bool = True) -> PromptState:
        """This prompt as the forward takes it (`forward.prompt_state` accepts the prompt itself too)."""
        return self.placed_state(base, self.weights, share_prefix=share_prefix)

    def placed_state(self, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True) -> PromptState:
        """`state_of(weights)` after the hard tokens this prompt sits after (`head_ids`), if any: training
        (`reparam.TrainablePrompt`) and serving build the prefix here alike. A method whose `state_of` takes
        no `head` still serves every prompt that has none."""
        head = self.head_ids(base)
        if not head:
            return self.state_of(base, weights, share_prefix=share_prefix)
        return self.state_of(base, weights, share_prefix=share_prefix, head=head)

    def head_ids(self, base: BaseModel) -> tuple[int, ...]:
        """The hard tokens the prompt sits after in its prefix (a chat prompt's system turn), else ()."""
        from ..tasks.chat import placement_head

        return placement_head(base, self.meta)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> BasePrompt:
        """The same prompt (method, shape, initial value) holding other weights, e.g. the best ones of a run."""
        raise NotImplementedError

    def peft_config(self, base: BaseModel | None) -> dict:
        """adapter_config.json: the PEFT config that makes `PeftModel.from_pretrained(base, folder)` work."""
        raise NotImplementedError

    @classmethod
    def _from_file(
        cls, config: dict, tensor: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None, where: str
    ) -> BasePrompt:
        raise NotImplementedError

    def _misfit(self, base: BaseModel) -> str | None:
        """Why this prompt cannot run on `base` whatever the user allows (another shape), or None."""
        raise NotImplementedError

    # -- inspection (each method says what can be seen of it) ------------------

    def input_embeddings(self) -> torch.Tensor | None:
        """The prompt's [T, d] vectors in the model's input-embedding space, if it has any.

        Only such vectors have nearest vocabulary tokens, so `inspect --data` scores their projection.
        """
        return None

    def inspect(self, base: BaseModel, *, top_k: int = 5) -> Any:
        """What `inspect` shows of this prompt: an object with `summary`, `to_dict()`, `text()`,
        `nearest_tokens(k)` and `plot(prompt, base, path)` (inspect_plain.Inspection is the worked example)."""
        raise SoftPromptError(f"prompts of method {self.METHOD!r} cannot be inspected")

    # -- files ---------------------------------------------------------------

    def save(self, folder: str | Path, base: BaseModel | None = None) -> Path:
        """Write the prompt folder atomically; `base` fills PEFT's model-shape fields."""
        return write_folder(Path(folder), self.peft_config(base), self.weights, self.meta, self.initial)

    @classmethod
    def load(cls, folder: str | Path, base: BaseModel | None = None, *, allow_mismatch: bool = False) -> BasePrompt:
        """Read a folder of this method (ours or PEFT's); with `base`, refuse a prompt made for another model."""
        folder = Path(folder)
        config, tensor, meta, initial = read_folder(folder, accept=(cls.PEFT_TYPE,))
        prompt = cls._from_file(config, tensor, meta, initial, str(folder))
        if base is not None:
            prompt.check_compatible(base, where=str(folder), allow_mismatch=allow_mismatch)
        return prompt

    def check_compatible(
        self, base: BaseModel, *, where: str, allow_mismatch: bool = False, note_precision: bool = True
    ) -> None:
        """Refuse a prompt trained for another base model: its vectors would mean nothing here.

        The same model at another precision is accepted, with a one-line notice (`note_precision=False`: none,
        for a second check of a prompt whose loading said it already).
        """
        misfit = self._misfit(base)
        if misfit:
            raise PromptFileError(
                f"{where}: {misfit}; it was made for another model ({self.meta.base_model or 'unknown'})"
            )
        want = self.meta.base_fingerprint
        if want and want != base.fingerprint and not allow_mismatch:
            raise PromptFileError(
                f"{where}: the prompt was trained on '{self.meta.base_model}' (embedding fingerprint {want}) "
                f"but '{base.name}' has fingerprint {base.fingerprint}; use the model it was trained on, "
                f"or pass --allow-model-mismatch to use it anyway"
            )
        trained, here = trained_precision(self.meta), precision_text(base.quantization.to_dict())
        if note_precision and trained is not None and trained != here:
            # The fingerprint ignores precision on purpose: the same model at another precision is the same model.
            log.warning(
                "%s: notice: trained on %s weights, running on %s weights (scores may differ slightly)",
                where,
                trained,
                here,
            )

    def save_pretrained(self, save_directory: str | Path, base: BaseModel | None = None) -> Path:
        """`save` under Hugging Face's name: the folder `from_pretrained` and PEFT read."""
        return self.save(save_directory, base)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        base: BaseModel | None = None,
        *,
        allow_mismatch: bool = False,
        revision: str | None = None,
    ) -> BasePrompt:
        """`load` a prompt folder, or a Hugging Face Hub repository holding one (`user/name`, fetched once)."""
        return cls.load(prompt_folder(name_or_path, revision=revision), base, allow_mismatch=allow_mismatch)

    def file_size(self, folder: str | Path) -> int:
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def new_meta(base: BaseModel, meta: PromptMeta | None, init: str) -> PromptMeta:
    """A new prompt's metadata: `meta` with the init and the base model it is made for."""
    meta = meta or PromptMeta()
    return replace(
        meta,
        init=init,
        base_model=meta.base_model or base.name,
        base_fingerprint=base.fingerprint,
        base_quantization=base.quantization.to_dict(),
    )


def check_compatible(prompt: BasePrompt, base: BaseModel, *, where: str, allow_mismatch: bool = False) -> None:
    """Refuse a prompt trained for another base model: its vectors would mean nothing here."""
    prompt.check_compatible(base, where=where, allow_mismatch=allow_mismatch)
