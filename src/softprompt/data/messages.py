"""Conversations: rows of OpenAI's fine-tuning format, `{"messages": [{"role": ..., "content": ...}, ...]}`.

A row becomes an `Example` whose `input` is the conversation as canonical JSON
(what the chat task kinds parse) and whose `output` is the final assistant
turn's content (the answer `eval` scores; "" when the conversation ends with a
user turn, as inputs to `predict` do).

What is refused, and why: `tools`, `functions`, `tool_calls` and the `tool` role
(the server refuses tools too, so a prompt trained on them could not be served
as trained); a `weight` other than 0 or 1, or on a non-assistant turn; content
that is not text. `weight: 0` on an assistant turn is honoured: the turn stays
in the conversation but is not learned. `name` is ignored (chat templates do
not render it). A `developer` turn is a `system` turn (OpenAI renamed it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from softprompt.data.example import Example
from softprompt.errors import DataError

MESSAGES_COLUMN = "messages"
ROLES = ("system", "user", "assistant")
_REFUSED_ROW_KEYS = ("tools", "functions", "parallel_tool_calls")
_REFUSED_TURN_KEYS = ("tool_calls", "function_call", "tool_call_id")
_KNOWN_TURN_KEYS = {"role", "content", "weight", "name", *_REFUSED_TURN_KEYS}


def chat_example(row: Mapping[str, object], where: str, *, require_answer: bool = True) -> Example:
    """A conversation row as an Example (input: canonical JSON; output: the final assistant turn, or "")."""
    for key in _REFUSED_ROW_KEYS:
        if row.get(key):
            raise DataError(f"{where}: '{key}' is not supported: prompts are trained on plain conversations")
    if MESSAGES_COLUMN not in row:
        shown = ", ".join(repr(c) for c in list(row)[:12]) or "none"
        raise DataError(
            f"{where}: missing column '{MESSAGES_COLUMN}' (columns here: {shown}); a chat task reads rows of "
            '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}'
        )
    turns = check_messages(row[MESSAGES_COLUMN], where)
    last = turns[-1]
    if require_answer:
        if last["role"] != "assistant":
            raise DataError(f"{where}: the conversation must end with an assistant turn (the answer to learn)")
        if not any(t["role"] == "assistant" and t.get("weight", 1) for t in turns):
            raise DataError(f"{where}: every assistant turn has weight 0: nothing to learn from this row")
    answer = last["content"] if last["role"] == "assistant" else ""
    return Example(input=messages_text(turns), output=answer, where=where)


def check_messages(value: object, where: str) -> list[dict[str, object]]:
    """The turns of a `messages` value, validated: [{"role", "content"[, "weight": 0]}], roles as templates know them."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: 'messages' must be a non-empty list of turns, got {_shown(value)}")
    turns: list[dict[str, object]] = []
    for i, turn in enumerate(value):
        at = f"{where}: messages[{i}]"
        if not isinstance(turn, Mapping):
            raise DataError(f"{at} must be an object with 'role' and 'content', got {_shown(turn)}")
        for key in _REFUSED_TURN_KEYS:
            if turn.get(key):
                raise DataError(f"{at}: '{key}' is not supported: prompts are trained on plain conversations")
        unknown = sorted(set(turn) - _KNOWN_TURN_KEYS)
        if unknown:
            raise DataError(f"{at}: unknown field '{unknown[0]}' (a turn has role, content and, optionally, weight)")
        role = "system" if turn.get("role") == "developer" else turn.get("role")
        if role not in ROLES:
            raise DataError(f"{at}: role {turn.get('role')!r} is not one of {', '.join(ROLES)}")
        content = turn.get("content")
        if not isinstance(content, str):
            raise DataError(f"{at}: 'content' must be text, got {_shown(content)}")
        clean: dict[str, object] = {"role": role, "content": content}
        if "weight" in turn:
            weight = turn["weight"]
            if role != "assistant" or weight not in (0, 1) or isinstance(weight, bool):
                raise DataError(f"{at}: 'weight' must be 0 or 1 and only on assistant turns, got {weight!r}")
            if weight == 0:
                clean["weight"] = 0
        turns.append(clean)
    return turns


def messages_text(turns: list[dict[str, object]]) -> str:
    """The canonical text of validated turns (what `Example.input` holds and the chat kinds parse)."""
    return json.dumps(turns, ensure_ascii=False)


def _shown(value: object) -> str:
    return f"{type(value).__name__} {str(value)[:40]!r}"
