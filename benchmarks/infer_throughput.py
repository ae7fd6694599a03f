"""Inference throughput: softprompt's Predictor vs PEFT on the same model, prompt and texts, in one run.

For each method (`prompt`: PROMPT_TUNING; `prefix`: a deep prompt, PREFIX_TUNING) the same prompt
file is served by both sides (PEFT loads ours).
Classification (inputs/s): rotten-tomatoes test texts, batch 32, T=20 and T=100.
  softprompt: prompt keys/values cached once (a deep prompt's are its weights), only input tokens run,
  K label rows of the head.
  PEFT: PeftModel forward (prompt: [prompt; input]; prefix: input over its past keys/values), left-padded,
  full logits, label columns at the last position.
Generation (new tokens/s): batch 8, up to 32 new greedy tokens.
  softprompt: our decoding loop on the prompt cache; PEFT: PeftModel.generate.

    .venv/bin/python benchmarks/infer_throughput.py            # ~4-8 minutes on 2 CPU cores
    .venv/bin/python benchmarks/infer_throughput.py --n 320    # more texts, steadier figures
    .venv/bin/python benchmarks/infer_throughput.py --methods prefix --lengths 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from softprompt.data import BUILTIN_DATASETS
from softprompt.decode import generate_rows
from softprompt.forward import pad_batch
from softprompt.infer import GenerationConfig, Predictor
from softprompt.models import load_base_model
from softprompt.prompts.base import BasePrompt
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.methods import PROMPT_CLASSES, prompt_class
from softprompt.tasks import ClassifyTask, GenerateTask


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peft_model_for(base, prompt: BasePrompt, folder: Path):
    from peft import PeftModel

    prompt.save(folder, base)
    return PeftModel.from_pretrained(base.model, folder).eval()


def unwrap(base, peft_model):
    # from_pretrained patches generation on the base model in place (our path never uses it); undo it.
    peft_model.base_model.__dict__.pop("prepare_inputs_for_generation", None)


@torch.no_grad()
def peft_classify(peft_model, base, task: ClassifyTask, texts, batch_size):
    label_ids = torch.tensor([ids[0] for ids in task.label_token_ids(base)])
    labels = []
    for start in range(0, len(texts), batch_size):
        batch = pad_batch([task.encode(base, t).ids for t in texts[start : start + batch_size]], base.pad_token_id)
        logits = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, -1]
        labels += [task.labels[i] for i in logits[:, label_ids].argmax(-1).tolist()]
    return labels


def classification(base, texts, t, batch_size, tmp, method="prompt"):
    dataset = BUILTIN_DATASETS["rotten-tomatoes"]
    meta = PromptMeta(task="classify", template=dataset.template, verbalizer=dict(dataset.verbalizer))
    prompt = prompt_class(method).initialize(base, t, "labels", label_words=list(meta.verbalizer.values()), meta=meta)
    task = ClassifyTask.from_meta(meta)

    predictor = Predictor(base, max_batch_size=batch_size)
    predictor.add_prompt("p", prompt)
    predictor.classify([("p", texts[0])])  # computes and caches the prompt's keys/values once
    peft_model = peft_model_for(base, prompt, tmp / f"cls-{method}{t}")
    # Interleave batch by batch so both sides see the same machine load (shared CPUs are noisy).
    ours, theirs, ours_s, peft_s = [], [], 0.0, 0.0
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            result, seconds = timed(lambda: predictor.classify([("p", x) for x in chunk]))  # noqa: B023
            ours, ours_s = ours + result, ours_s + seconds
            result, seconds = timed(lambda: peft_classify(peft_model, base, task, chunk, batch_size))  # noqa: B023
            theirs, peft_s = theirs + result, peft_s + seconds
    finally:
        unwrap(base, peft_model)
    agree = sum(a.label == b for a, b in zip(ours, theirs)) / len(texts)
    n = len(texts)
    print(
        f"{method:>6} classify T={t:<3d} batch {batch_size}: softprompt {n / ours_s:7.1f} inputs/s | "
        f"PEFT {n / peft_s:7.1f} inputs/s | ratio {peft_s / ours_s:5.2f}x | label agreement {agree:.3f}"
    )
    return peft_s / ours_s


@torch.no_grad()
def generation(base, texts, t, batch_size, new_tokens, tmp, method="prompt"):
    meta = PromptMeta(task="generate", template="Review: {text}\nSummary:")
    prompt = prompt_class(method).initialize(base, t, "vocab", meta=meta)
    task = GenerateTask.from_meta(meta)
    texts = texts[:batch_size]
    predictor = Predictor(base, max_batch_size=batch_size)
    predictor.add_prompt("g", prompt)
    batch = pad_batch([task.encode(base, x).ids for x in texts], base.pad_token_id)
    config = GenerationConfig(max_new_tokens=new_tokens)
    prefix = predictor.state("g")
    rows, ours_s = timed(lambda: generate_rows(base, prefix, batch, config))  # the loop Predictor.generate runs
    ours_tokens = sum(len(r.ids) for r in rows)

    peft_model = peft_model_for(base, prompt, tmp / f"gen-{method}{t}")
    try:
        out, peft_s = timed(
            lambda: peft_model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=base.pad_token_id,
            )
        )
    finally:
        unwrap(base, peft_model)
    new = out[:, batch.input_ids.shape[1] :]  # PEFT returns [input, new tokens], pads after EOS
    eos = base.tokenizer.eos_token_id
    peft_tokens = sum(int(row.tolist().index(eos)) if eos in row.tolist() else len(row) for row in new)
    print(
        f"{method:>6} generate T={t} batch {batch_size}, {new_tokens} new: softprompt {ours_tokens / ours_s:6.1f} tokens/s "
        f"({ours_tokens} tokens) | PEFT {peft_tokens / peft_s:6.1f} tokens/s ({peft_tokens} tokens) | "
        f"ratio {(ours_tokens / ours_s) / (peft_tokens / peft_s):5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=64, help="test texts to classify (default 64; 1000 = all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gen-batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--methods", nargs="+", choices=list(PROMPT_CLASSES), default=list(PROMPT_CLASSES))
    args = parser.parse_args()

    torch.manual_seed(0)
    base = load_base_model(args.model)
    texts = [e.input for e in BUILTIN_DATASETS["rotten-tomatoes"].load().test[: args.n]]
    print(f"model {args.model}, {len(texts)} rotten-tomatoes test texts, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for t in args.lengths:
                classification(base, texts, t, args.batch_size, Path(tmp), method)
            generation(base, texts, 20, args.gen_batch_size, args.new_tokens, Path(tmp), method)


if __name__ == "__main__":
    main()
