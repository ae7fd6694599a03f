"""Hard prompts: an instruction (zero-shot) or an instruction and k solved examples (few-shot).

Nothing is trained. The hard prompt is text in front of the task's template, so
it is shared by every test row: its keys/values are computed once and reused
(the same shared-prefix path soft prompts use), which makes few-shot cheap.
Scoring is the same rank classification as every other method: the label whose
answer words the model finds most likely at the answer position.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..data import Example
from ..evaluate import EvalRow, encode_eval_set, evaluate, prompt_room
from ..models import BaseModel
from ..tasks import ClassifyTask
from .config import TITLES, CompareConfig
from .measure import PeakMemory, Stopwatch, parameter_counts
from .result import MethodResult
from .task_data import TaskData

SEPARATOR = "\n\n"


def instruction_for(task: ClassifyTask, instruction: str | None = None) -> str:
    """The zero-shot instruction: the user's, or one naming the answer words."""
    if instruction:
        return instruction
    words = [w.strip() for w in task.verbalizer.values()]
    return f"Classify the text. Answer with one of: {', '.join(words)}."


def pick_demonstrations(task: ClassifyTask, train: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k training examples, as balanced over labels as k allows, in a seeded random order."""
    rng = random.Random(seed)
    by_label = {label: [ex for ex in train if ex.output == label] for label in task.labels}
    pools = {label: rng.sample(rows, len(rows)) for label, rows in by_label.items() if rows}
    picked: list[Example] = []
    while len(picked) < k and any(pools.values()):
        for label in list(pools):
            if pools[label] and len(picked) < k:
                picked.append(pools[label].pop())
    rng.shuffle(picked)
    return picked


def hard_prompt_ids(
    base: BaseModel,
    task: ClassifyTask,
    instruction: str,
    demos: Sequence[Example],
    max_tokens: int | None,
) -> list[int]:
    """Token ids of: instruction, blank line, then each demo as template + answer + blank line."""
    sep = base.encode(SEPARATOR)
    ids = base.encode(instruction) + sep
    for ex in demos:
        demo = task.encode(base, ex.input, max_tokens=max_tokens).ids
        ids += list(demo) + base.encode(task.verbalizer[ex.output]) + sep
    return ids


def fit_hard_prompt(
    base: BaseModel,
    task: ClassifyTask,
    instruction: str,
    demos: Sequence[Example],
    rows: Sequence[EvalRow],
    max_tokens: int | None,
) -> tuple[list[int], list[Example]]:
    """The hard prompt's ids with as many of `demos` as leave the context room for the longest row and its answer.

    A small model's context (a test model's 256 tokens) may not hold k demonstrations
    and an input; dropping demonstrations keeps few-shot a valid baseline there.
    """
    room = prompt_room(base, task, rows)
    kept = list(demos)
    ids = hard_prompt_ids(base, task, instruction, kept, max_tokens)
    while kept and len(ids) > room:
        kept.pop()
        ids = hard_prompt_ids(base, task, instruction, kept, max_tokens)
    return ids, kept


def run_hard_prompt(
    method: str, base: BaseModel, data: TaskData, config: CompareConfig, *, log=print
) -> tuple[MethodResult, str]:
    """Evaluate the zero- or few-shot hard prompt on the test subset; returns the result and the prompt text."""
    k = config.few_shot_k if method == "few-shot" else 0
    demos = pick_demonstrations(data.task, data.train, k, config.seed)
    instruction = instruction_for(data.task, config.instruction)
    with PeakMemory(base.device) as memory, Stopwatch() as clock:
        rows = encode_eval_set(base, data.task, data.test, max_tokens=data.max_input_tokens)
        ids, used = fit_hard_prompt(base, data.task, instruction, demos, rows.rows, data.max_input_tokens)
        if len(used) < len(demos):
            log(
                f"{method}: {len(used)} of {len(demos)} demonstrations fit the model's context of "
                f"{base.family.context_length} tokens beside the longest test input"
            )
        demos = used
        with torch.no_grad():
            prefix = base.embed(torch.tensor(ids, device=base.device))
        log(f"{method}: {len(ids)}-token hard prompt, scoring {len(rows)} test examples")
        report = evaluate(base, data.task, prefix, rows.rows, batch_size=config.eval_batch_size, keep_predictions=True)
    text = base.tokenizer.decode(ids) + data.task.template
    _, total = parameter_counts(base.model)
    result = MethodResult(
        method=method,
        title=TITLES[method],
        trainable_parameters=0,
        total_parameters=total,
        storage_bytes=len(text.encode("utf-8")),
        storage="prompt text, UTF-8",
        train_seconds=0.0,
        steps=0,
        examples_seen=len(demos),
        peak_memory_bytes=memory.peak_increase,
        training_state_bytes=0,
        test=report,
        eval_seconds=clock.seconds,
        interpretability=f"human-readable text ({len(text)} characters)",
        details={"prompt_tokens": len(ids), "prompt_text": text, "demonstrations": [d.where for d in demos]},
        config=config.fingerprint(),
    )
    return result, text
