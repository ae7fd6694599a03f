"""Training speed of a method against the reference of a wall-clock budget, measured interleaved.

A wall-clock budget (`time:lora:50`) gives a method the optimiser steps it fits into
the time the reference (lora) needs for 50 steps: 50 x (its examples/s) / (lora's
examples/s). Only that ratio matters, and a sweep runs for hours while other work on
the machine comes and goes, so the two rates are taken together: in each of ROUNDS
rounds both methods train CHUNK_STEPS steps from their start on the same batches (the
round's seed), the one going first alternating, and a rate is a method's examples
over its optimiser-step seconds (dev evaluations not counted) summed over the rounds.
Load that comes and goes then slows both alike. The figures are saved as
OUT/rates/<task>/<method>-vs-<reference>.json and reused by later runs taken with the
same `setting` (rates_setting: model, batch, rounds, chunk, torch threads and how prompt methods
recompute).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from softprompt.evaluate import EvalSet
from softprompt.models import BaseModel

from .methods import PROMPT_RECOMPUTE, Budget, method_by_name, scratch_dir

RATES_DIR = "rates"
ROUNDS = 4
CHUNK_STEPS = 8


def rates_path(out: Path, task: str, method: str, reference: str) -> Path:
    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9.=_-]+", "_", name)

    return out / RATES_DIR / task / f"{safe(method)}-vs-{safe(reference)}.json"


def rates_setting(model: str, batch_size: int) -> dict:
    """What a saved measurement must have been taken with to be reused."""
    return {
        "model": model,
        "batch_size": batch_size,
        "rounds": ROUNDS,
        "chunk_steps": CHUNK_STEPS,
        # Rates taken while prompt methods recomputed activations ("selective", before) undercount their speed.
        "prompt_recompute": PROMPT_RECOMPUTE,
        # The methods need not gain alike from more threads: on bbc-news deep prompts trained 1.085x LoRA's
        # examples/s at one thread and 1.005x at two (both measured interleaved).
        "threads": torch.get_num_threads(),
    }


def load_rates(path: Path, setting: dict) -> dict | None:
    """The saved measurement if it was taken with the same `setting` (rates_setting)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return saved if saved.get("setting") == setting else None


def measure_rates(
    base: BaseModel,
    data,  # sweep.TaskData
    methods: Sequence[str],
    *,
    batch_size: int,
    eval_batch_size: int,
    rounds: int = ROUNDS,
    chunk_steps: int = CHUNK_STEPS,
) -> dict:
    """Examples/s of each of `methods` (method specs) on `data`, interleaved as the module says."""
    seconds = dict.fromkeys(methods, 0.0)
    examples = dict.fromkeys(methods, 0)
    # The methods evaluate on dev at their last step (not timed); a handful of rows keeps that short.
    dev = EvalSet(data.dev.rows[:eval_batch_size], 0)
    load = [os.getloadavg()[0]]
    for round_ in range(rounds):
        shift = round_ % len(methods)
        for spec in [*methods[shift:], *methods[:shift]]:
            plan = Budget(
                steps=chunk_steps,
                batch_size=batch_size,
                eval_every=chunk_steps,
                seed=round_,
                max_input_tokens=data.max_input_tokens,
                eval_batch_size=eval_batch_size,
            )
            with scratch_dir() as work:
                trained = method_by_name(spec).train(base, data.task, data.train_rows, dev, plan, Path(work))
            seconds[spec] += trained.train_seconds
            examples[spec] += trained.examples_seen
        load.append(os.getloadavg()[0])
    return {
        "examples_per_s": {m: examples[m] / seconds[m] for m in methods},
        "seconds": {m: round(seconds[m], 2) for m in methods},
        "examples": examples,
        "load_average": [round(x, 2) for x in load],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
