"""OpenAI-shaped answers from `Completion`s: whole bodies and server-sent events, for completions and chat.

What they report is what happened: `usage.prompt_tokens` counts every token the
model saw before generating (the soft prompt's virtual tokens, the template and
the input; `usage.virtual_tokens` says how many were virtual),
`completion_tokens` every token it generated, and `finish_reason` why each
choice ended ("stop": EOS or a stop string; "length": max_tokens or the
context). Log-probs are the model's own (before temperature or top-k/top-p),
with the k most likely tokens at each position; an echoed prompt's first token
has none (nothing the client sees predicts it).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..engine import TokenLogprob
from ..infer import InputError
from . import schemas
from .checks import input_errors
from .dispatch import answer, open_stream
from .operations import Completion
from .state import ServeState

log = logging.getLogger("softprompt.serve")


class Reply:
    """One request's answer: ids, choices, usage; `CompletionReply` and `ChatReply` say how a choice looks."""

    kind = ""  # the body's `object`
    id_prefix = ""

    def __init__(
        self,
        model: str,
        tokenizer,
        *,
        n: int,
        max_tokens: int,
        include_usage: bool = False,
        count_tokens: Callable[[str], int | None] = lambda text: None,
    ):
        self.model, self.tokenizer, self.n, self.max_tokens = model, tokenizer, n, max_tokens
        self.include_usage, self.count_tokens = include_usage, count_tokens
        self.id, self.created = f"{self.id_prefix}-{uuid.uuid4().hex}", int(time.time())
        self._pieces: dict[int, str] = {}

    # -- what each kind of reply fills in ---------------------------------------------------

    def choice(self, index: int, done: Completion) -> dict:
        raise NotImplementedError

    def chunk_choice(self, index: int, news: Completion, first: bool) -> dict | None:
        """The streamed choice for one step's `news` (None: nothing to send)."""
        raise NotImplementedError

    def last_chunk_choice(self, index: int, finish: str) -> dict:
        raise NotImplementedError

    # -- whole bodies -----------------------------------------------------------------------

    def body(self, results: Sequence[Completion]) -> dict:
        return {
            "id": self.id,
            "object": self.kind,
            "created": self.created,
            "model": self.model,
            "choices": [self.choice(i, done) for i, done in enumerate(results)],
            "usage": self.usage(results).model_dump(),
        }

    def usage(self, results: Sequence[Completion]) -> schemas.Usage:
        prompts = results[:: self.n]  # the n choices of a prompt saw the same tokens: counted once
        virtual = sum(done.virtual_tokens for done in prompts)
        seen = virtual + sum(len(done.input_ids or ()) for done in prompts)
        made = sum(len(done.tokens) or (self.count_tokens(done.text) or 0) for done in results)
        return schemas.Usage(
            prompt_tokens=seen, completion_tokens=made, total_tokens=seen + made, virtual_tokens=virtual
        )

    def finish(self, done: Completion) -> str:
        if done.finish:
            return done.finish
        count = len(done.tokens) or self.count_tokens(done.text)  # without the engine: by counting
        return "length" if count is not None and count >= self.max_tokens else "stop"

    # -- server-sent events -----------------------------------------------------------------

    async def events(self, first: list | None, rest: AsyncIterator[list], rows: int) -> AsyncIterator[str]:
        """The whole stream: a chunk per choice with news at each step, its finish, usage if asked, [DONE]."""
        done = [Completion() for _ in range(rows)]
        try:
            step = first
            while step is not None:
                for i, news in enumerate(step):
                    if news is None or isinstance(news, InputError):
                        continue
                    fresh = Completion()
                    fresh.add(news)
                    choice = self.chunk_choice(i, fresh, first=news.input_ids is not None)
                    done[i].add(news)
                    if choice is not None:
                        yield self._event(choices=[choice])
                step = await anext(rest, None)
            for i, finished in enumerate(done):
                yield self._event(choices=[self.last_chunk_choice(i, self.finish(finished))])
            if self.include_usage:
                yield self._event(choices=[], usage=self.usage(done).model_dump())
        except Exception as e:  # the status line is gone: report in-band, as OpenAI does
            log.exception("stream failed")
            message = e.message if isinstance(e, InputError) else f"generation failed: {e}"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'code': 500}})}\n\n"
        yield "data: [DONE]\n\n"

    def _event(self, **fields) -> str:
        body = {"id": self.id, "object": f"{self.kind}.chunk" if self.kind == "chat.completion" else self.kind}
        body.update(created=self.created, model=self.model, **fields)
        return f"data: {json.dumps(body)}\n\n"

    # -- tokens as text -----------------------------------------------------------------------

    def piece(self, token: int) -> str:
        """A token's own text; a token that is part of a character only is "bytes:\\xe2\\x80", as OpenAI shows it."""
        if token not in self._pieces:
            text = self.tokenizer.decode([token])
            if "\ufffd" in text:
                raw = token_bytes(self.tokenizer, token)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
            self._pieces[token] = text
        return self._pieces[token]


class CompletionReply(Reply):
    kind, id_prefix = "text_completion", "cmpl"

    def __init__(self, *args, echo: bool = False, logprobs: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.echo, self.logprobs = echo, logprobs

    def choice(self, index: int, done: Completion) -> dict:
        return {
            "text": self._echoed(done) + done.text,
            "index": index,
            "logprobs": self._logprobs(done) if self.logprobs else None,
            "finish_reason": self.finish(done),
        }

    def chunk_choice(self, index: int, news: Completion, first: bool) -> dict | None:
        text = (self._echoed(news) if first else "") + news.text
        entries = self._entries(news, with_prompt=first)
        if not text and not (self.logprobs and entries):
            return None
        logprobs = self._logprobs(news, with_prompt=first) if self.logprobs else None
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": None}

    def last_chunk_choice(self, index: int, finish: str) -> dict:
        return {"text": "", "index": index, "logprobs": None, "finish_reason": finish}

    def _echoed(self, done: Completion) -> str:
        """The prompt as the model saw it (template included), when echo is asked."""
        if not self.echo or done.input_ids is None:
            return ""
        return self.tokenizer.decode(done.input_ids, skip_special_tokens=False)

    def _entries(self, done: Completion, *, with_prompt: bool = True) -> list[TokenLogprob]:
        prompt = (done.prompt or []) if self.echo and with_prompt else []
        return [*prompt, *done.tokens]

    def _logprobs(self, done: Completion, *, with_prompt: bool = True) -> dict:
        entries = self._entries(done, with_prompt=with_prompt)
        tokens = [self.piece(entry.token) for entry in entries]
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        return {
            "tokens": tokens,
            "token_logprobs": [entry.logprob for entry in entries],
            "top_logprobs": [
                None if entry.logprob is None else {self.piece(t): lp for t, lp in entry.top} for entry in entries
            ],
            "text_offset": offsets,
        }


class ChatReply(Reply):
    kind, id_prefix = "chat.completion", "chatcmpl"

    def __init__(self, *args, logprobs: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.logprobs = logprobs

    def choice(self, index: int, done: Completion) -> dict:
        return {
            "index": index,
            "message": {"role": "assistant", "content": done.text},
            "logprobs": self._logprobs(done.tokens) if self.logprobs else None,
            "finish_reason": self.finish(done),
        }

    def chunk_choice(self, index: int, news: Completion, first: bool) -> dict | None:
        if not news.text and not first and not (self.logprobs and news.tokens):
            return None
        delta = {"role": "assistant", "content": news.text} if first else {"content": news.text}
        logprobs = self._logprobs(news.tokens) if self.logprobs else None
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}

    def last_chunk_choice(self, index: int, finish: str) -> dict:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}

    def _logprobs(self, tokens: list[TokenLogprob]) -> dict:
        def entry(token: int, logprob: float) -> dict:
            return {"token": self.piece(token), "logprob": logprob, "bytes": list(token_bytes(self.tokenizer, token))}

        return {
            "content": [
                {**entry(t.token, t.logprob), "top_logprobs": [entry(i, lp) for i, lp in t.top]} for t in tokens
            ]
        }


def token_bytes(tokenizer, token: int) -> bytes:
    """A token's raw bytes: byte-fallback tokens (<0xE2>), byte-level BPE tokens (GPT-2's alphabet), else its text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    name = tokenizer.convert_ids_to_tokens(token)
    if isinstance(name, str) and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", name):
        return bytes([int(name[3:5], 16)])
    decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    if isinstance(name, str) and name and all(char in decoder for char in name):
        return bytes(decoder[char] for char in name)
    return tokenizer.decode([token]).encode("utf-8")


async def respond(
    state: ServeState, request: Request, operation, items: list, reply: Reply, *, stream: bool, param: str
):
    """Run a Generate `operation` for `items` and answer with `reply`: a JSON body, or a stream of events.

    An item the model cannot take (too long for the context or the key/value cache) fails the whole
    request (413/422, naming the prompt's index), streamed or not: the stream's status line waits for
    its first chunk, where such errors come.
    """
    if not stream:
        results = await answer(state, request, operation, items)
        input_errors(results[:: reply.n], param)
        return reply.body(results)
    first, chunks = await open_stream(state, request, operation, items)
    if first is not None and any(isinstance(news, InputError) for news in first):
        await chunks.aclose()  # stops the work for this request
        input_errors(first[:: reply.n], param)
    return EventStream(reply.events(first, chunks, len(items)), on_close=chunks.aclose)


class EventStream(StreamingResponse):
    """A StreamingResponse that calls `on_close` when it ends, however it ends (done, error, client gone):
    the generator behind it may be left suspended, and its clean-up would wait for the garbage collector."""

    def __init__(self, content, *, on_close: Callable[[], object]):
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()
