"""Conversations: rows of OpenAI `messages`, rendered with the base model's own chat template.

Two kinds share one rendering (`render_chat`), used alike by training, `eval`,
`predict`, `generate` and the server, so what a prompt sees at serving time is
token for token what it saw in training:

- `chat`: the assistant turns are learned (every one of a multi-turn row, but
  those with `weight: 0`), each with its end-of-turn token; answers are
  generated and scored on the final assistant turn (exact match, token F1).
- `chat_classify`: classification whose answer is the assistant's reply (the
  label words, with no leading space, start the assistant turn); it learns the
  reply as the chat kind does (the label words and the end-of-turn token, over
  the whole vocabulary), so a chat completion answers with the label and stops,
  and it predicts by ranking the labels like `classify`, so `/v1/classify`
  serves it too.

Where the soft prompt sits (`placement`, recorded in the prompt's metadata;
measured in docs/chat.md): when every training row starts with the same system
message, after that system turn ("after_system"): the prompt's prefix is the
system turn's tokens (hard, frozen) then the prompt's vectors, one cached prefix
per prompt as before, and the rows hold the rest of the rendering. A request
with another system message is refused (the prompt was trained after the
recorded one). Otherwise, and for files without the field, in front of
everything ("first").

An input is the canonical JSON of a conversation (`data.messages`), or a plain
text, which becomes one user turn. When a request has no system turn, the
system message every training row shared (if they did) is put first, as in
training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from ..errors import DataError, SoftPromptError
from .base import Encoded, Task
from .classify import ClassifyTask
from .registry import register_task

if TYPE_CHECKING:
    import torch

    from ..data import Example
    from ..forward import PromptState, TokenBatch
    from ..models import BaseModel
    from ..prompts.meta import PromptMeta

CHAT_FORMAT = "chat"
CHAT_TEMPLATE = "{text}"  # a plain text given to a chat prompt is the user's turn as is
FIRST, AFTER_SYSTEM = "first", "after_system"  # where the soft prompt sits (placement)
PLACEMENTS = (FIRST, AFTER_SYSTEM)


@dataclass(frozen=True)
class ChatRow(Encoded):
    """A training conversation: `ids` end where the final answer starts, `target` the rest of the rendering
    through its end-of-turn token; `trained` the positions (in ids + target) whose token is learned."""

    trained: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rendered:
    ids: list[int]
    trained: list[int]  # positions of assistant tokens to learn
    start: int  # where the final assistant turn starts (len(ids) without an answer)
    head: int = 0  # leading ids that are the system turn tokenized apart (`split_system`)


# -- rendering ----------------------------------------------------------------------------


def parse_conversation(text: str, where: str = "") -> list[dict[str, object]]:
    """The turns a chat input stands for: canonical JSON turns, or one user turn holding a plain text."""
    from ..data.messages import check_messages

    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            value = None
        if isinstance(value, list):
            return check_messages(value, where or "the conversation")
    if not text.strip():
        raise SoftPromptError("empty text")
    return [{"role": "user", "content": text}]


def require_chat_template(base: BaseModel) -> None:
    tokenizer = base.tokenizer
    if base.is_seq2seq or not getattr(tokenizer, "chat_template", None):
        raise SoftPromptError(
            f"model '{base.name}' has no chat template, so it cannot be trained or served on conversations; "
            "use a chat/instruct model, or train the text-to-text task (--task generate) on input/target columns"
        )


def render_chat(
    base: BaseModel,
    turns: Sequence[dict[str, object]],
    *,
    answer: bool,
    system: str | None = None,
    split_system: bool = False,
) -> Rendered:
    """Token ids of a conversation by the model's chat template, and which of them are assistant tokens to learn.

    `answer`: the conversation ends with the assistant turn to learn (training); otherwise a final
    assistant turn is dropped and the rendering ends where the assistant's reply starts.

    The text is cut at each assistant turn's start and end, found by rendering the conversation up to
    that turn (with the generation prompt) and through it: a template renders a conversation's start
    the same whatever follows, which is checked. The pieces are tokenized apart, so the tokens before an
    answer are the same whether the answer follows (training) or is to be generated (serving).
    `split_system`: a leading system turn is a piece of its own too (`head` says how many ids it gave).
    """
    require_chat_template(base)
    turns = [dict(t) for t in turns]
    if system is not None and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system})
    if answer and turns[-1]["role"] != "assistant":
        raise SoftPromptError("the conversation must end with an assistant turn (the answer to learn)")
    if not answer and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
        if not turns:
            raise SoftPromptError("the conversation holds only an assistant turn: nothing to answer")
    plain = [{"role": t["role"], "content": t["content"]} for t in turns]
    full = _apply(base, plain, prompt=not answer)
    ids: list[int] = []
    trained: list[int] = []
    at = final = 0
    if split_system and plain[0]["role"] == "system":
        first = _apply(base, plain[:1], prompt=False)
        if full.startswith(first):
            ids, at = base.encode(first), len(first)
    head = len(ids)
    for i, turn in enumerate(plain):
        if turn["role"] != "assistant":
            continue
        before, through = _apply(base, plain[:i], prompt=True), _apply(base, plain[: i + 1], prompt=False)
        if not (through.startswith(before) and full.startswith(through) and len(before) >= at):
            raise SoftPromptError(
                f"model '{base.name}': its chat template renders a conversation's earlier turns differently "
                "once later turns follow, so the assistant turns cannot be told apart for training"
            )
        ids += base.encode(full[at : len(before)])
        reply = base.encode(full[len(before) : len(through)])
        final = len(ids)
        if turns[i].get("weight", 1):
            trained += range(len(ids), len(ids) + len(_through_stop(base, reply)))
        ids += reply
        at = len(through)
    ids += base.encode(full[at:])
    if not answer:
        return Rendered(ids, trained, len(ids), head)
    end = final + len(_through_stop(base, ids[final:]))  # the final answer ends with its end-of-turn token
    return Rendered(ids[:end], [p for p in trained if p < end], final, head)


def system_turn_ids(base: BaseModel, system: str) -> tuple[int, ...]:
    """The tokens of the system turn holding `system`, tokenized apart, as a conversation starting with it
    starts; () if the template renders no system turn of its own (Gemma's folds it into the first user turn)."""
    require_chat_template(base)
    turn = [{"role": "system", "content": system}]
    text = _apply(base, turn, prompt=False)
    probe = _apply(base, [*turn, {"role": "user", "content": "?"}], prompt=True)
    if not text or not probe.startswith(text) or len(probe) == len(text):
        return ()
    return tuple(base.encode(text))


def placement_head(base: BaseModel, meta: PromptMeta | _ChatInput) -> tuple[int, ...]:
    """The hard tokens a prompt's vectors sit after in its prefix: its system turn if placed after it, else ()
    (`meta`: a prompt's metadata, or a chat task: both hold `placement` and `system`)."""
    system = getattr(meta, "system", None)
    if getattr(meta, "placement", None) != AFTER_SYSTEM or system is None:
        return ()
    return system_turn_ids(base, system)


def _apply(base: BaseModel, turns: list[dict[str, object]], *, prompt: bool) -> str:
    if not turns:
        return ""
    try:
        return base.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt)
    except Exception as e:  # noqa: BLE001 -- a template may refuse a conversation (roles out of order, ...)
        raise SoftPromptError(f"the chat template of model '{base.name}' refused the conversation: {e}"[:500]) from None


def _through_stop(base: BaseModel, ids: list[int]) -> list[int]:
    """`ids` up to and including the first end-of-turn token (all of them if none)."""
    from ..decode import eos_token_ids

    stops = eos_token_ids(base)
    for i, token in enumerate(ids):
        if token in stops:
            return ids[: i + 1]
    return ids


def shared_system(examples: Sequence[Example]) -> str | None:
    """The system message every conversation starts with, if they all start with the same one."""
    found = None
    for example in examples:
        first = parse_conversation(example.input, example.where)[0]
        if first["role"] != "system" or (found is not None and first["content"] != found):
            return None
        found = first["content"]
    return found


def _cut_left(ids: list[int], max_tokens: int | None) -> tuple[list[int], int]:
    """The last `max_tokens` ids (a conversation's end holds the question), and how many were cut."""
    cut = max(0, len(ids) - max_tokens) if max_tokens is not None else 0
    return ids[cut:], cut


def _budget(base: BaseModel, max_tokens: int | None) -> int | None:
    from ..families import UNBOUNDED

    if max_tokens is None and base.family.context_length < UNBOUNDED:
        return base.family.context_length
    return max_tokens


def placement_note(task: object) -> str:
    """One line on where a chat prompt being trained sits (docs/chat.md, "Where the soft prompt sits")."""
    if getattr(task, "placement", None) == AFTER_SYSTEM:
        return "the prompt sits after the system message every training row shares (placement after_system)"
    return "the training rows do not all share one system message: the prompt sits first (placement first)"


def check_placement(task: object, meta: PromptMeta | None) -> None:
    """Refuse rows encoded for one placement scored with a prompt of the other: the system turn would be
    missing, or twice (a task from data and a prompt from a file; `Task.for_prompt` makes them agree)."""
    rows_after = getattr(task, "placement", None) == AFTER_SYSTEM
    prompt_after = getattr(meta, "placement", None) == AFTER_SYSTEM
    if rows_after != prompt_after:
        raise SoftPromptError(
            f"the rows were encoded for a prompt placed {'after the system turn' if rows_after else 'first'}, "
            f"but the prompt is placed {'after it' if prompt_after else 'first'}: encode them with the task "
            "as the prompt was trained (task.for_prompt(prompt.meta))"
        )


class _ChatInput:
    """What both chat kinds share: how a conversation becomes the input ids; the system message they keep."""

    format: ClassVar[str] = CHAT_FORMAT
    default_template: ClassVar[str] = CHAT_TEMPLATE
    system: str | None
    placement: str

    def _check_template(self, template: str) -> None:
        if template != CHAT_TEMPLATE:
            raise SoftPromptError(
                f"a {self.kind} task takes no --template (got {template!r}): the model's chat template renders "
                "each conversation"
            )
        if self.placement not in PLACEMENTS:
            raise SoftPromptError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")

    def with_data(self, examples: Sequence[Example]):
        """Training: the rows' shared system message, if any, and the prompt after it (else first)."""
        if not examples:
            return self
        system = shared_system(examples)
        return replace(self, system=system, placement=FIRST if system is None else AFTER_SYSTEM)

    def for_prompt(self, meta: PromptMeta | None):
        """Scoring: placed as the prompt with `meta` was trained (no prompt, or an older file: first)."""
        if meta is not None and meta.format == CHAT_FORMAT and meta.placement == AFTER_SYSTEM:
            return replace(self, system=meta.system, placement=AFTER_SYSTEM)
        return replace(self, placement=FIRST)

    def _chat_meta(self) -> dict[str, object]:
        return {"format": CHAT_FORMAT, "system": self.system, "placement": self.placement}

    def check_system(self, turns: Sequence[dict[str, object]]) -> None:
        """A prompt placed after its system turn serves that system message or none; refuse another one."""
        first = turns[0] if turns else {}
        if self.placement == AFTER_SYSTEM and first.get("role") == "system" and first["content"] != self.system:
            raise SoftPromptError(
                f"this prompt was trained after the system message {self.system!r} and sits after it: send "
                "that system message, or none (the recorded one is then used)"
            )

    def head_ids(self, base: BaseModel) -> tuple[int, ...]:
        """The system turn's tokens when the prompt sits after it (the rows leave them out), else ()."""
        return placement_head(base, self)

    def _render(self, base: BaseModel, text: str, *, answer: bool, where: str) -> tuple[Rendered, int]:
        """The conversation rendered, and how many of its leading ids are the system turn that the prompt's
        prefix holds (`placement_head`), which the row leaves out."""
        turns = _conversation(text, where)
        self.check_system(turns)
        head = self.head_ids(base)
        rendered = render_chat(base, turns, answer=answer, system=self.system, split_system=bool(head))
        if rendered.head != len(head) or tuple(rendered.ids[: len(head)]) != head:
            raise SoftPromptError(
                f"model '{base.name}': its chat template renders the system turn differently within a "
                "conversation than alone, so the prompt cannot sit after it"
            )
        return rendered, len(head)

    def _input(self, base: BaseModel, text: str, max_tokens: int | None, where: str) -> Encoded:
        rendered, head = self._render(base, text, answer=False, where=where)
        ids, cut = _cut_left(rendered.ids[head:], _budget(base, max_tokens))
        return Encoded(tuple(ids), None, cut > 0, where)


def _conversation(text: str, where: str) -> list[dict[str, object]]:
    try:
        return parse_conversation(text, where)
    except DataError as e:
        raise SoftPromptError(str(e)) from None


@register_task
@dataclass(frozen=True)
class ChatTask(_ChatInput, Task):
    """Learn the assistant turns of conversations; answer by generating the next assistant turn."""

    kind: ClassVar[str] = "chat"
    metric: ClassVar[str] = "token_f1"
    columns: ClassVar[tuple[str, str]] = ("messages", "messages")

    template: str = CHAT_TEMPLATE
    system: str | None = None  # the system message all training rows shared; put first when a request has none
    placement: str = FIRST  # where the soft prompt sits (PLACEMENTS)

    def __post_init__(self):
        self._check_template(self.template)

    @classmethod
    def build(cls, template: str, *, labels: dict[str, str] | None = None, output_column: str | None = None):
        return cls(template)

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> ChatTask:
        if meta.task != cls.kind:
            raise SoftPromptError("the prompt file has no chat task")
        return cls(meta.template or CHAT_TEMPLATE, meta.system, meta.placement or FIRST)

    def meta_fields(self) -> dict[str, object]:
        return {"task": self.kind, "template": self.template, "verbalizer": None, **self._chat_meta()}

    def encode(self, base, text, target=None, *, max_tokens=None, truncate="left", where=""):
        """Without a target: the conversation up to the assistant's reply (`max_tokens` keeps its end).
        With one: a `ChatRow` (the final answer after the input, every learned assistant token marked)."""
        if target is None:
            return self._input(base, text, max_tokens, where)
        rendered, skip = self._render(base, text, answer=True, where=where)
        head, cut = _cut_left(rendered.ids[skip : rendered.start], _budget(base, max_tokens))
        trained = tuple(p - skip - cut for p in rendered.trained if p - skip - cut >= 1)
        if not trained:
            raise SoftPromptError(f"{where or 'example'}: no assistant token left to learn (all cut or weight 0)")
        return ChatRow(tuple(head), tuple(rendered.ids[rendered.start :]), cut > 0, where, trained)

    def encode_target(self, base: BaseModel, target: str, where: str) -> tuple[int, ...]:
        raise SoftPromptError("a chat task encodes whole conversations (encode), not targets alone")

    def collate(self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left"):
        """(the whole conversations, (row, column, token) of every learned token)."""
        import torch

        from ..forward import pad_batch

        seqs = [list(r.ids) + list(r.target or ()) for r in rows]
        batch = pad_batch(seqs, base.pad_token_id, side=side, device=base.device)
        width = batch.input_ids.shape[1]
        picks = [
            (b, (width - len(seq) if side == "left" else 0) + p - 1, seq[p])
            for b, (row, seq) in enumerate(zip(rows, seqs))
            for p in getattr(row, "trained", ())
        ]
        where, column, token = (torch.tensor(part, device=base.device) for part in zip(*picks))
        return batch, (where, column, token)

    def loss_terms(self, row: Encoded) -> int:
        return len(getattr(row, "trained", ()))  # the loss averages over learned tokens

    def loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, target) -> torch.Tensor:
        """Mean cross-entropy over the learned assistant tokens; only their positions reach the LM head."""
        import torch.nn.functional as F

        from ..forward import hidden_states, lm_logits

        where, column, token = target
        logits = lm_logits(base, hidden_states(base, prompt, batch)[where, column])
        return F.cross_entropy(logits.float(), token)

    def predict(self, base, prompt, batch, *, golds=None) -> list[str]:
        from .generate import generate_answers

        return generate_answers(base, prompt, batch, golds)

    def predict_with_loss(self, base, prompt, batch, *, golds):
        """The generated answers, and each row's loss on its gold final turn (its tokens and end of turn)."""
        import torch
        import torch.nn.functional as F

        from ..forward import next_token_logits

        eos = base.tokenizer.eos_token_id
        wanted = [base.encode(g) + ([] if eos is None else [eos]) for g in golds]
        if not all(wanted):
            return self.predict(base, prompt, batch, golds=golds), None
        logits = next_token_logits(base, prompt, batch, [t[:-1] for t in wanted]).float()
        tokens = torch.tensor([tok for t in wanted for tok in t], device=logits.device)
        per_token = F.cross_entropy(logits, tokens, reduction="none").tolist()
        losses, at = [], 0
        for t in wanted:
            losses.append(sum(per_token[at : at + len(t)]) / len(t))
            at += len(t)
        return self.predict(base, prompt, batch, golds=golds), losses

    def report(self, predictions: Sequence[str], golds: Sequence[str]) -> dict:
        from ..metrics import generation_report

        return generation_report(predictions, golds)


@register_task
@dataclass(frozen=True)
class ChatClassifyTask(_ChatInput, ClassifyTask):
    """Classification through chat: the label words are the assistant's answer to the conversation."""

    kind: ClassVar[str] = "chat_classify"
    columns: ClassVar[tuple[str, str]] = ("messages", "messages")

    system: str | None = None
    placement: str = FIRST

    def __post_init__(self):
        self._check_template(self.template)
        super().__post_init__()

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> ChatClassifyTask:
        if meta.task != cls.kind or not meta.verbalizer:
            raise SoftPromptError("the prompt file has no chat classification task (labels)")
        return cls(
            meta.template or CHAT_TEMPLATE, dict(meta.verbalizer), system=meta.system, placement=meta.placement or FIRST
        )

    def meta_fields(self) -> dict[str, object]:
        return {**super().meta_fields(), **self._chat_meta()}

    def answer_words(self, words: str) -> str:
        return words.lstrip()  # the words start the assistant's turn: no space before them

    def encode(self, base, text, target=None, *, max_tokens=None, truncate="left", where=""):
        """The conversation up to the assistant's reply (a final assistant turn is the answer: dropped)."""
        encoded = self._input(base, text, max_tokens, where)
        return encoded if target is None else replace(encoded, target=self.encode_target(base, target, where))

    def answer_tokens(self, base: BaseModel) -> int:
        return max(len(ids) for ids in self.label_token_ids(base))  # the reply is learned through its end of turn

    def loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, target: torch.Tensor) -> torch.Tensor:
        """Mean over rows of the full-vocabulary cross-entropy of each row's reply (its label words, then the
        end-of-turn token), rows weighted by `class_weights`.

        Not the rank loss over the labels alone: that would leave the first token the model generates,
        and whether it stops after the label, untrained, and a chat completion should answer the label.
        """
        import torch
        import torch.nn.functional as F

        from ..forward import next_token_logits

        eos = base.tokenizer.eos_token_id
        replies = [ids + ([] if eos is None else [eos]) for ids in self.label_token_ids(base)]
        labels = target.tolist()
        wanted = [replies[i] for i in labels]
        logits = next_token_logits(base, prompt, batch, [w[:-1] for w in wanted]).float()
        tokens = torch.tensor([tok for w in wanted for tok in w], device=logits.device)
        owner = torch.tensor([r for r, w in enumerate(wanted) for _ in w], device=logits.device)
        per_token = F.cross_entropy(logits, tokens, reduction="none")
        sizes = torch.tensor([len(w) for w in wanted], device=logits.device, dtype=per_token.dtype)
        per_row = torch.zeros(len(wanted), device=logits.device, dtype=per_token.dtype).index_add(0, owner, per_token)
        per_row = per_row / sizes
        if self.class_weights is None:
            return per_row.mean()
        weights = torch.tensor([self.class_weights[i] for i in labels], device=logits.device, dtype=per_row.dtype)
        return (per_row * weights).sum() / weights.sum()
