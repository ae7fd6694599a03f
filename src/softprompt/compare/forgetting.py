"""Catastrophic forgetting: does adapting to the task hurt what the model could do before?

Two measures, taken on the base model ("before") and on each adapted model
("after"):
- perplexity on general English (gensim's Lee corpus, `data.general_english_text`):
  the first `perplexity_tokens` tokens, scored in independent windows of
  `perplexity_window` tokens (each window starts with no context);
- zero-shot accuracy and macro-F1 on a second task (bbc-news by default, its
  first `second_task_size` test examples, inputs cut to `second_task_max_tokens`)
  with the same instruction-style hard prompt as the zero-shot baseline.

Methods that leave the weights alone (hard prompts, prompt tuning) are not
re-measured: the weights are hashed before and after and must be bitwise
identical, which makes every "after" figure equal to "before" by construction.
"""

from __future__ import annotations

import hashlib
import math
import time

import torch

from ..data import general_english_text
from ..evaluate import encode_eval_set, evaluate
from ..forward import causal_lm_loss, input_logits, pad_batch
from ..models import BaseModel
from .baselines import hard_prompt_ids, instruction_for
from .config import CompareConfig
from .task_data import second_task_data


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer, to show a model is bitwise unchanged."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def first_tokens(base: BaseModel, text: str, n: int) -> list[int]:
    """The first n tokens of `text`, tokenizing only as much of it as needed (the corpus is ~75k tokens)."""
    chars = 8 * n  # English runs ~4-5 characters per token; take more, and grow if that was not enough
    while True:
        ids = base.encode(text[:chars])
        # The cut may split the last word into other tokens than the whole text gives: keep a margin.
        if len(ids) >= n + 16 or chars >= len(text):
            return ids[:n]
        chars *= 2


@torch.no_grad()
def perplexity(base: BaseModel, text: str, *, tokens: int, window: int) -> dict:
    """exp(mean next-token NLL) over the first `tokens` tokens of `text`, in windows of `window`."""
    if base.is_seq2seq:
        return {"perplexity": None, "tokens": 0, "note": "encoder-decoder model: no left-to-right perplexity"}
    ids = first_tokens(base, text, tokens)
    chunks = [ids[i : i + window] for i in range(0, len(ids), window)]
    chunks = [c for c in chunks if len(c) > 1]
    nll, scored = 0.0, 0
    for chunk in chunks:
        batch = pad_batch([chunk], base.pad_token_id, device=base.device)
        loss = causal_lm_loss(input_logits(base, None, batch), batch.input_ids)
        nll += loss.item() * (len(chunk) - 1)
        scored += len(chunk) - 1
    return {"perplexity": math.exp(nll / scored) if scored else None, "tokens": scored}


@torch.no_grad()
def second_task_scores(base: BaseModel, config: CompareConfig) -> dict:
    data = second_task_data(config.second_task, config.second_task_size)
    ids = hard_prompt_ids(base, data.task, instruction_for(data.task), [], None)
    prefix = base.embed(torch.tensor(ids, device=base.device))
    rows = encode_eval_set(base, data.task, data.test, max_tokens=config.second_task_max_tokens)
    report = evaluate(base, data.task, prefix, rows.rows, batch_size=config.eval_batch_size)
    return {"task": data.name, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n": report["n"]}


def measure(base: BaseModel, config: CompareConfig, *, log=print) -> dict:
    """Perplexity on general English and the second task's scores for `base` as it is now."""
    start = time.perf_counter()
    log(f"forgetting: perplexity on {config.perplexity_tokens} tokens of general English")
    out = perplexity(base, general_english_text(), tokens=config.perplexity_tokens, window=config.perplexity_window)
    if config.second_task:
        log(f"forgetting: zero-shot {config.second_task} on {config.second_task_size} test examples")
        out["second_task"] = second_task_scores(base, config)
    out["seconds"] = time.perf_counter() - start
    return out


def compare_before_after(before: dict, after: dict) -> dict:
    """The figures the report shows: before, after and the change, for perplexity and the second task."""
    out = {"perplexity_before": before.get("perplexity"), "perplexity_after": after.get("perplexity")}
    if out["perplexity_before"] and out["perplexity_after"]:
        out["perplexity_change"] = out["perplexity_after"] / out["perplexity_before"] - 1
    b, a = before.get("second_task"), after.get("second_task")
    if b and a:
        out.update(
            second_task=b["task"],
            second_task_accuracy_before=b["accuracy"],
            second_task_accuracy_after=a["accuracy"],
            second_task_accuracy_change=a["accuracy"] - b["accuracy"],
            second_task_macro_f1_before=b["macro_f1"],
            second_task_macro_f1_after=a["macro_f1"],
        )
    return out
