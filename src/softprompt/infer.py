"""Classification and generation with soft prompts: one base model, many prompts, mixed batches.

`Predictor` holds one frozen base model and any number of named prompts. Each
request is (prompt name or None, text); the prompt's metadata says the task
(template, labels), so callers pass only the text. What makes it fast:

- A prompt's state (`forward.prompt_state`: its keys/values for decoder-only
  models) is computed once per (base model, prompt contents) and kept in a
  bounded LRU (`PromptCache`); every later call and every row with that prompt
  reuses it, so only the input tokens run.
- Rows with different prompts (different lengths, plain or deep, or none)
  share one forward pass: their states are stacked left-padded and masked
  (`stack_states`), so each row sees exactly its own prompt. A deep prompt
  (prefix.py) is its keys/values already; a plain one's are computed once. Rows are sorted by length before
  batching, so little padding is computed.
- Classification with single-token labels (the common case) needs only the
  hidden state at the answer position and K rows of the LM head; rows of
  different tasks still share a forward pass, each reading its own labels.

Everything runs through the one exact forward (forward.py), so a row scores
the same here as in `eval` and training, on every model family. Encoder-decoder
models (T5) are served too: their prompt goes in front of the encoder input;
their generated text is streamed token by token like any other.

A bad request (empty text, too long for the context, unknown prompt, wrong
task) becomes an `InputError` in its slot; the other requests are answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import torch

from .decode import GenerationConfig, stream_generate
from .errors import PromptNotLoaded, SoftPromptError
from .forward import PromptState, next_token_logits, pad_batch, prompt_state, stack_states
from .models import BaseModel
from .prompt_cache import CacheKey, PromptCache, prompt_hash
from .prompts.base import BasePrompt, check_compatible
from .tasks import Task, task_from_meta

__all__ = ["ClassifyResult", "GenerationConfig", "InputError", "Predictor", "combine_votes"]

Request = tuple[str | None, str]  # (prompt name or None = no prompt, text; or token ids to take verbatim)
ENSEMBLE_METHODS = ("vote", "mean")


@dataclass(frozen=True)
class InputError:
    """Why one request could not be answered (the others still are)."""

    message: str
    status: int = 422  # the HTTP status a server answers it with (413: too big for the server's limits)

    @classmethod
    def of(cls, error: SoftPromptError) -> InputError:
        """The error of one request; a prompt removed while the request waited answers 404, as an unknown one."""
        return cls(str(error), status=404 if isinstance(error, PromptNotLoaded) else 422)


@dataclass(frozen=True)
class ClassifyResult:
    label: str
    probs: dict[str, float]  # every label's probability (they sum to 1)


@dataclass(frozen=True)
class _Loaded:
    """A registered prompt, its cache key, and its task (None: a bare prompt, e.g. a PEFT file)."""

    prompt: BasePrompt
    key: CacheKey
    task: Task | None
    label_ids: tuple[tuple[int, ...], ...] = ()  # each label's answer tokens (classification)
    width: int = 0  # the prompt's prefix: its virtual tokens and the hard tokens it sits after (a system turn)

    @property
    def single_token(self) -> bool:
        return all(len(ids) == 1 for ids in self.label_ids)


@dataclass(frozen=True)
class _Row:
    """One valid request, encoded: `index` is its place in the caller's list."""

    index: int
    name: str | None
    ids: list[int]
    room: int  # tokens left in the context after prompt + input


T = TypeVar("T")


class Predictor:
    """Classify and generate with many prompts over one frozen base model."""

    def __init__(self, base: BaseModel, *, cache_bytes: int = 256 * 2**20, max_batch_size: int = 32):
        if max_batch_size < 1:
            raise SoftPromptError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.base = base
        self.max_batch_size = max_batch_size
        self.context = base.family.context_length
        self._cache = PromptCache(cache_bytes)
        self._prompts: dict[str, _Loaded] = {}

    # -- prompts -------------------------------------------------------------------

    def add_prompt(self, name: str, prompt: BasePrompt, *, allow_mismatch: bool = False) -> None:
        """Register `prompt` (of any method) under `name`, replacing any; refuses a prompt made for another model."""
        check_compatible(prompt, self.base, where=f"prompt '{name}'", allow_mismatch=allow_mismatch)
        try:
            task = task_from_meta(prompt.meta)
        except SoftPromptError:
            task = None  # no task stored (e.g. a PEFT file): usable for generation on raw text
        label_ids = ()
        if task is not None and task.labels:
            label_ids = tuple(tuple(ids) for ids in task.label_token_ids(self.base))
        head = prompt.head_ids(self.base)  # what the prompt sits after is part of its prefix, so of its key
        weights = prompt.weights if not head else torch.cat([prompt.weights.flatten(), torch.tensor(head)])
        key = (self.base.fingerprint, f"{prompt.METHOD}:{prompt_hash(weights)}")
        self._prompts[name] = _Loaded(prompt, key, task, label_ids, prompt.num_virtual_tokens + len(head))

    def remove_prompt(self, name: str) -> None:
        loaded = self._prompts.pop(name, None)
        if loaded is None:
            raise PromptNotLoaded(f"no prompt named '{name}'")
        if all(other.key != loaded.key for other in self._prompts.values()):
            self._cache.discard(loaded.key)

    @property
    def prompts(self) -> Mapping[str, BasePrompt]:
        return MappingProxyType({name: loaded.prompt for name, loaded in self._prompts.items()})

    def task(self, name: str | None) -> Task | None:
        """The task stored with prompt `name` (None for no prompt or a prompt without a task)."""
        return None if name is None else self._loaded(name).task

    def classifies(self, name: str | None) -> bool:
        """Whether prompt `name` answers with one of its task's labels (`classify`), rather than free text."""
        return bool(self._loaded(name).label_ids) if name is not None else False

    @property
    def cache_stats(self) -> dict[str, int]:
        return self._cache.stats

    def state(self, name: str) -> PromptState:
        """The prompt's state for the forward (batch size 1), from the cache or computed once."""
        loaded = self._loaded(name)
        return self._cache.get(loaded.key, lambda: _compute_state(self.base, loaded.prompt))

    def _loaded(self, name: str) -> _Loaded:
        try:
            return self._prompts[name]
        except KeyError:
            known = ", ".join(sorted(self._prompts)) or "none"
            raise PromptNotLoaded(f"no prompt named '{name}' (loaded: {known})") from None

    # -- classification --------------------------------------------------------------

    @torch.no_grad()
    def classify(self, requests: Sequence[Request]) -> list[ClassifyResult | InputError]:
        """Label + probabilities for each (prompt name, text); prompts may differ per row.

        The probabilities are those of the prompt's decision rule (its label bias, balance.py), so the
        label is their argmax, as `eval` decides."""
        results: list[ClassifyResult | InputError | None] = [None] * len(requests)
        rows = self._prepare(requests, results, classify=True)
        single = [r for r in rows if self._prompts[r.name].single_token]
        for chunk in self._chunks(single):
            for row, probs in zip(chunk, self._single_token_probs(chunk)):
                results[row.index] = self._result(row.name, probs)
        # Multi-token labels are scored by the task itself, one task per batch.
        multi = [r for r in rows if not self._prompts[r.name].single_token]
        for task_rows in _group_by(multi, lambda r: _task_key(self._classify_task(r.name))).values():
            for chunk in self._chunks(task_rows):
                task, batch = self._classify_task(chunk[0].name), self._batch(chunk)
                scores = task.decision_scores(task.label_scores(self.base, self._stacked_state(chunk), batch))
                for row, probs in zip(chunk, scores.float().softmax(-1)):
                    results[row.index] = self._result(row.name, probs)
        return results  # type: ignore[return-value]

    def _single_token_probs(self, chunk: list[_Row]) -> list[torch.Tensor]:
        """One forward for rows of any single-token tasks: K label logits per row, softmaxed."""
        label_ids = [[ids[0] for ids in self._prompts[r.name].label_ids] for r in chunk]
        union = sorted({i for ids in label_ids for i in ids})
        column = {token: c for c, token in enumerate(union)}
        union_ids = torch.tensor(union, device=self.base.device)
        logits = next_token_logits(self.base, self._stacked_state(chunk), self._batch(chunk), token_ids=union_ids)
        return [
            self._classify_task(row.name).decision_scores(logits[i, [column[t] for t in ids]].float()).softmax(-1)
            for i, (row, ids) in enumerate(zip(chunk, label_ids))
        ]

    def _classify_task(self, name: str | None) -> Task:
        return self._prompts[name].task  # type: ignore[index,return-value]  # checked in _prepare

    def _result(self, name: str | None, probs: torch.Tensor) -> ClassifyResult:
        labels = self._classify_task(name).labels
        values = probs.tolist()
        return ClassifyResult(labels[max(range(len(values)), key=values.__getitem__)], dict(zip(labels, values)))

    # -- ensembles -----------------------------------------------------------------

    def ensemble(
        self, names: Sequence[str], texts: Sequence[str], how: str = "vote"
    ) -> list[ClassifyResult | InputError]:
        """Classify each text with every prompt in `names` (one batch stream) and combine.

        "vote" (Lester et al.'s ensembling): majority label, ties broken by mean
        probability; `probs` are the vote shares. "mean": average the probabilities.
        """
        if how not in ENSEMBLE_METHODS:
            raise SoftPromptError(f"ensemble method must be one of {', '.join(ENSEMBLE_METHODS)}, got {how!r}")
        if not names:
            raise SoftPromptError("an ensemble needs at least one prompt")
        labels = {name: getattr(self.task(name), "labels", None) for name in names}
        for name, found in labels.items():
            if not self.classifies(name):
                raise SoftPromptError(f"prompt '{name}' is not a classification prompt; an ensemble needs only those")
            if found != labels[names[0]]:
                raise SoftPromptError(
                    f"prompts '{names[0]}' and '{name}' have different labels ({list(labels[names[0]])} vs "
                    f"{list(found)}); an ensemble needs prompts for the same task"
                )
        flat = self.classify([(name, text) for text in texts for name in names])
        out: list[ClassifyResult | InputError] = []
        for i in range(len(texts)):
            members = flat[i * len(names) : (i + 1) * len(names)]
            errors = [m for m in members if isinstance(m, InputError)]
            out.append(errors[0] if errors else combine_votes(members, how))  # type: ignore[arg-type]
        return out

    # -- generation -----------------------------------------------------------------

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> list[str | InputError]:
        """The generated text for each (prompt name or None, text); prompts may differ per row."""
        texts: list[str | InputError] = [""] * len(requests)
        for pieces in self.stream(requests, config):
            texts = [
                t if isinstance(t, InputError) else p if isinstance(p, InputError) else t + p
                for t, p in zip(texts, pieces)
            ]
        return texts

    def stream(
        self, requests: Sequence[Request], config: GenerationConfig, *, template: bool = True
    ) -> Iterator[list[str | InputError]]:
        """Per decoding step, the new text piece of every row ("" when it has none or is done).

        A request that cannot be answered gets its InputError in the first list
        yielded (then ""). Rows run in length-sorted batches of max_batch_size;
        rows of later batches yield "" until their batch runs. Texts go into their
        prompt's template (`template=False`: verbatim).
        """
        errors: list[InputError | None] = [None] * len(requests)
        rows = self._prepare(requests, errors, classify=False, template=template)
        pending = [e or "" for e in errors]  # errors go out with the first step
        for chunk in self._chunks(rows):
            limits = [min(config.max_new_tokens, r.room) for r in chunk]
            state, batch = self._stacked_state(chunk), self._batch(chunk)
            for pieces in stream_generate(self.base, state, batch, config, limits=limits):
                step: list[str | InputError] = pending or [""] * len(requests)
                pending = []
                for row, piece in zip(chunk, pieces):
                    step[row.index] = piece
                yield step
        if pending:  # no valid row at all
            yield pending

    # -- shared --------------------------------------------------------------------

    def _prepare(self, requests: Sequence[Request], results: list, *, classify: bool, template: bool = True):
        """Encode every valid request (a list of _Row); put an InputError in `results` for the others."""
        rows = []
        for i, request in enumerate(requests):
            try:
                rows.append(self._encode(i, request, classify=classify, template=template))
            except SoftPromptError as e:
                results[i] = InputError.of(e)
        return rows

    def generation_input(
        self, name: str | None, text: str | Sequence[int], *, template: bool = True
    ) -> tuple[PromptState, list[int], int]:
        """For one generation request: the prompt's state (batch 1; None without a prompt), the input token ids
        and how many tokens the context leaves for generating. `text` goes into the prompt's template
        (`template=False`: verbatim); token ids are always taken verbatim. Raises SoftPromptError."""
        row = self._encode(0, (name, text), classify=False, template=template)
        return (None if name is None else self.state(name)), row.ids, row.room

    def _encode(self, index: int, request: Request, *, classify: bool, template: bool = True) -> _Row:
        name, text = request
        task = None if name is None else self._loaded(name).task
        if isinstance(text, list | tuple):
            ids = self._check_ids(text)
        else:
            if not isinstance(text, str):
                raise SoftPromptError(f"the text must be a string, got {type(text).__name__}")
            if not text.strip():
                raise SoftPromptError("empty text")
            if classify and not self.classifies(name):
                what = "no prompt" if name is None else f"prompt '{name}'"
                raise SoftPromptError(
                    f"{what} has no classification task (template and labels); "
                    f"{'generate with it instead' if name is not None else 'name a classification prompt'}"
                )
            templated = task is not None and (template or classify)
            ids = list(task.encode(self.base, text).ids) if templated else self.base.encode(text)
        t = 0 if name is None else self._prompts[name].width
        room = self.context - t - len(ids)
        # Generation needs room for at least one new token.
        if room < (0 if classify else 1):
            raise SoftPromptError(
                f"the text is too long: {len(ids)} tokens + {t} prompt tokens "
                f"{'exceed' if room < 0 else 'leave no room to generate in'} the model's context of "
                f"{self.context} tokens; shorten it"
            )
        return _Row(index, name, ids, room)

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        vocab = self.base.vocab_size
        if not ids:
            raise SoftPromptError("empty list of token ids")
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < vocab]
        if bad:
            raise SoftPromptError(f"token ids must be whole numbers in 0..{vocab - 1}, got {bad[0]!r}")
        return list(ids)

    def _chunks(self, rows: list[_Row]) -> Iterator[list[_Row]]:
        """Length-sorted batches of at most max_batch_size rows (little padding to compute)."""
        ordered = sorted(rows, key=lambda r: len(r.ids))
        for start in range(0, len(ordered), self.max_batch_size):
            yield ordered[start : start + self.max_batch_size]

    def _batch(self, chunk: list[_Row]):
        return pad_batch([r.ids for r in chunk], self.base.pad_token_id, side="left", device=self.base.device)

    def _stacked_state(self, chunk: list[_Row]) -> PromptState:
        names = {r.name for r in chunk}
        if len(names) == 1:  # one prompt for all rows: a broadcast view, no copies
            (name,) = names
            return None if name is None else self.state(name)
        states = {name: self.state(name) for name in names if name is not None}
        return stack_states([None if r.name is None else states[r.name] for r in chunk])


def combine_votes(members: Sequence[ClassifyResult], how: str) -> ClassifyResult:
    """One result from several prompts' results over the same labels ("vote" or "mean")."""
    labels = list(members[0].probs)
    mean = {label: sum(m.probs[label] for m in members) / len(members) for label in labels}
    if how == "mean":
        return ClassifyResult(max(labels, key=mean.__getitem__), mean)
    votes = {label: sum(m.label == label for m in members) / len(members) for label in labels}
    return ClassifyResult(max(labels, key=lambda label: (votes[label], mean[label])), votes)


def _compute_state(base: BaseModel, prompt: BasePrompt) -> PromptState:
    with torch.no_grad():
        return prompt_state(base, prompt).detach()


def _task_key(task: Task) -> str:
    """Tasks that score alike (same kind, template and labels) share a batch."""
    return json.dumps(task.meta_fields(), sort_keys=True)


def _group_by(items: list[T], key: Callable[[T], object]) -> dict[object, list[T]]:
    groups: dict[object, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
