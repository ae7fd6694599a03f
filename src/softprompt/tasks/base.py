"""The task protocol, and the pieces every task kind shares (templates, encoded examples, label scoring).

A task kind says how an example becomes token ids (`encode`, `collate`), how
the model's output is scored (`loss`, `predict`), what is reported (`report`,
`metric`), and what front ends need before any model is loaded (the class
attributes: default template and data columns, whether it has a closed label
set, the default prompt initialisation). Everything model-specific goes through
the one prompted forward (forward.py), so a task never branches on the model
family or on how the prompt is laid out.

Task modules import torch inside their methods: the CLI's `--help` and the
studio list the kinds and their defaults without loading torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import SoftPromptError

if TYPE_CHECKING:
    import torch

    from ..forward import PromptState, TokenBatch
    from ..models import BaseModel
    from ..prompts.meta import PromptMeta

TEXT_SLOT = "{text}"
TRUNCATE_SIDES = ("left", "right")


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: `ids` the input; `target` what the task learns (None when encoded without one)."""

    ids: tuple[int, ...]
    target: int | tuple[int, ...] | None = None  # a label's index, or target token ids
    truncated: bool = False
    where: str = ""

    def __len__(self) -> int:
        extra = len(self.target) if isinstance(self.target, tuple) else 0
        return len(self.ids) + extra


class Task(ABC):
    """A task kind. Subclass it in one module under `softprompt/tasks/` and decorate with `@register_task`.

    Instances are frozen dataclasses holding what a prompt file stores about its
    task (template, labels, ...); `template` contains "{text}" once.
    """

    kind: ClassVar[str]  # the registry key, stored in prompt files ("classify")
    metric: ClassVar[str]  # the report entry that picks the best prompt (higher is better)
    default_template: ClassVar[str]
    columns: ClassVar[tuple[str, str]]  # default (input, output) data columns
    output_field: ClassVar[str] = "target_column"  # the run setting naming the output column
    has_labels: ClassVar[bool] = False  # a closed label set: read from --labels or the data; served by /v1/classify
    default_init: ClassVar[str] = "vocab"  # the prompt initialisation when the user chooses none
    # "template": a text goes into `template`; "chat": rows are conversations (OpenAI `messages`) rendered
    # by the model's chat template (tasks/chat.py). Prompt files record it; the server serves by it.
    format: ClassVar[str] = "template"
    template: str

    # -- building -------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def build(cls, template: str, *, labels: dict[str, str] | None = None, output_column: str | None = None) -> Task:
        """The task a run asks for: its template, its labels (kinds with labels) and its output column."""

    @classmethod
    @abstractmethod
    def from_meta(cls, meta: PromptMeta) -> Task:
        """The task stored in a prompt's metadata."""

    @abstractmethod
    def meta_fields(self) -> dict[str, object]:
        """The `PromptMeta` fields that store this task (`task` = kind, template, ...)."""

    def with_data(self, examples: Sequence) -> Task:
        """The task as its training examples complete it (a chat task keeps their shared system message)."""
        return self

    def head_ids(self, base: BaseModel) -> tuple[int, ...]:
        """Hard tokens the prompt's prefix holds before its vectors, left out of the rows (a chat prompt's
        system turn, when placed after it); () for most tasks."""
        return ()

    def for_prompt(self, meta: PromptMeta | None) -> Task:
        """The task as the prompt with `meta` (None: the bare model) is scored with (a chat task takes where
        the prompt sits from it)."""
        return self

    # -- data -----------------------------------------------------------------------

    def encode(
        self,
        base: BaseModel,
        text: str,
        target: str | None = None,
        *,
        max_tokens: int | None = None,
        truncate: str = "left",
        where: str = "",
    ) -> Encoded:
        """One example: the templated text (only the text is cut to fit `max_tokens`), and its target if given.

        Without `max_tokens` the input is cut to the model's context: a row longer than that cannot run,
        and cutting before tokenizing keeps a huge text (a 15 MB line) from taking gigabytes on the way.
        """
        from ..families import UNBOUNDED

        if max_tokens is None and base.family.context_length < UNBOUNDED:
            max_tokens = base.family.context_length
        encoded = None if target is None else self.encode_target(base, target, where)
        ids, cut = encode_template(base, self.template, text, max_tokens=max_tokens, truncate=truncate)
        return Encoded(tuple(ids), encoded, cut, where)

    @abstractmethod
    def encode_target(self, base: BaseModel, target: str, where: str) -> int | tuple[int, ...]:
        """What the model learns for one example's gold answer (a label's index, target token ids, ...)."""

    @abstractmethod
    def collate(self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left") -> tuple[TokenBatch, object]:
        """(inputs, targets) of a micro-batch of encoded examples with targets, as `loss` takes them."""

    def loss_terms(self, row: Encoded) -> int:
        """How many terms `row` adds to the loss's mean (rows split across processes are weighted by it)."""
        return 1

    def init_words(self) -> list[str] | None:
        """Words whose embeddings a `labels` initialisation starts from (None: the kind has none)."""
        return None

    def answer_tokens(self, base: BaseModel) -> int:
        """Positions scoring takes after an input beyond the encoded row (a multi-token label's later tokens).

        Generation needs none here: the decoding loop stops where the context ends.
        """
        return 0

    # -- the model ------------------------------------------------------------------

    @abstractmethod
    def loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, target) -> torch.Tensor:
        """The mean training loss of a collated batch (differentiable in the prompt)."""

    @abstractmethod
    def predict(
        self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, golds: Sequence[str] | None = None
    ) -> list[str]:
        """One answer per row of a left-padded batch; `golds`, when known, may size a generation budget."""

    def predict_with_loss(
        self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, golds: Sequence[str]
    ) -> tuple[list[str], list[float] | None]:
        """`predict`, plus each row's unweighted loss on its gold answer where the same forward gives it.

        None: the kind would need another forward (generation decodes; its loss is teacher-forced).
        Dev evaluation breaks a tie of its metric with this loss (`evaluate.better_on_dev`).
        """
        return self.predict(base, prompt, batch, golds=golds), None

    @abstractmethod
    def report(self, predictions: Sequence[str], golds: Sequence[str]) -> dict:
        """Metrics of predictions against gold answers (with `n` and `metric`)."""

    # -- a closed label set (kinds with has_labels) -----------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        return ()

    def label_token_ids(self, base: BaseModel) -> list[list[int]]:
        """Each label's answer tokens (kinds with labels)."""
        raise SoftPromptError(f"a {self.kind} task has no labels")

    def decision_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The [B, K] label scores the answer is decided on (a kind with a decision rule adds it)."""
        return scores

    def label_scores(
        self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, normalized: bool = False
    ) -> torch.Tensor:
        """[B, K] label scores: the summed log-probs of each label's answer tokens after the input.

        Single-token labels (and not `normalized`): the K restricted-head logits,
        equal to the log-probs up to a per-row constant, so their argmax, their
        softmax over the labels and a cross-entropy over them are exact: the
        full-vocabulary logsumexp cancels. Multi-token labels need every
        position's full normalisation: one row per (example, label), fed the
        label's tokens but the last, the full vocabulary only where it is scored.
        """
        import torch

        from ..forward import TokenBatch, next_token_logits

        label_ids = self.label_token_ids(base)
        if all(len(t) == 1 for t in label_ids):
            first = torch.tensor([t[0] for t in label_ids], device=base.device)
            if normalized:
                return next_token_logits(base, prompt, batch).float().log_softmax(-1)[:, first]
            return next_token_logits(base, prompt, batch, token_ids=first).float()
        k, b = len(label_ids), batch.input_ids.shape[0]
        repeated = TokenBatch(batch.input_ids.repeat_interleave(k, 0), batch.attention_mask.repeat_interleave(k, 0))
        fed = [toks[:-1] for _ in range(b) for toks in label_ids]
        logp = next_token_logits(base, None if prompt is None else prompt.repeat_rows(k), repeated, fed)
        targets = torch.tensor([tok for _ in range(b) for toks in label_ids for tok in toks], device=base.device)
        owner = torch.tensor([r for r in range(b * k) for _ in label_ids[r % k]], device=base.device)
        picked = logp.float().log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)
        return torch.zeros(b * k, device=base.device, dtype=picked.dtype).index_add(0, owner, picked).view(b, k)


# -- templates ---------------------------------------------------------------------------


def split_template(template: str) -> tuple[str, str]:
    """The template's text before and after its "{text}" slot; refuses a template without exactly one."""
    if not isinstance(template, str) or template.count(TEXT_SLOT) != 1:
        raise SoftPromptError(
            f"the template must contain {TEXT_SLOT} exactly once, got {template!r} "
            f"(e.g. --template 'Review: {TEXT_SLOT}\\nSentiment:')"
        )
    before, after = template.split(TEXT_SLOT)
    return before, after


def special_ids(base: BaseModel) -> tuple[list[int], list[int]]:
    """Tokens the tokenizer adds around a text by default (e.g. Llama-3's BOS, T5's EOS)."""
    plain = base.encode("a")
    full = base.tokenizer("a")["input_ids"]
    start = _find(full, plain)
    if start < 0:
        return [], []
    return list(full[:start]), list(full[start + len(plain) :])


def _find(seq: Sequence[int], sub: Sequence[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if list(seq[i : i + len(sub)]) == list(sub):
            return i
    return -1


def encode_template(
    base: BaseModel, template: str, text: str, *, max_tokens: int | None = None, truncate: str = "left"
) -> tuple[list[int], bool]:
    """Token ids of `template` with `text` in its slot; cut only the text to fit `max_tokens`.

    The template's pieces and the text are tokenized separately so the text's
    tokens are known and can be truncated without touching the template. A
    space that ends the first piece ("Review: ") moves to the text, so the text's
    first word gets its usual leading-space token.
    """
    if truncate not in TRUNCATE_SIDES:
        raise SoftPromptError(f"--truncate must be 'left' or 'right', got {truncate!r}")
    before, after = split_template(template)
    if before.endswith(" "):
        before, text = before[:-1], " " + text.lstrip(" ")
    lead, trail = special_ids(base)
    if not base.is_seq2seq:
        trail = []  # a decoder-only input ends at the answer position
    head = lead + (base.encode(before) if before else [])
    tail = (base.encode(after) if after else []) + trail
    room = None if max_tokens is None else max_tokens - len(head) - len(tail)
    if room is not None and room < 1:
        raise SoftPromptError(
            f"--max-input-tokens {max_tokens} leaves no room for the text: the template alone "
            f"takes {len(head) + len(tail)} tokens"
        )
    body = _encode_within(base, text, room, truncate)
    truncated = False
    if room is not None and len(body) > room:
        body = body[-room:] if truncate == "left" else body[:room]
        truncated = True
    return head + body + tail, truncated


# A text far longer than its token budget is cut in characters before the tokenizer sees it (a 20 MB input
# with --max-input-tokens 64 took 3.3 GB when tokenized whole). The cut keeps the side truncation keeps and
# stands only if it still gives more than room + _CUT_MARGIN tokens: the cut disturbs only the tokens at the
# end that truncation throws away, so the kept tokens are the whole text's. Otherwise the cut doubles.
_CHARS_PER_TOKEN = 8
_CUT_MARGIN = 16


def _encode_within(base: BaseModel, text: str, room: int | None, truncate: str) -> list[int]:
    """base.encode(text), or a token list whose `room` tokens on the kept side equal those of the whole text."""
    chars = (room + _CUT_MARGIN) * _CHARS_PER_TOKEN if room is not None else len(text)
    while chars < len(text):
        ids = base.encode(text[-chars:] if truncate == "left" else text[:chars])
        if len(ids) > room + _CUT_MARGIN:
            return ids
        chars *= 2
    return base.encode(text)
