"""Training throughput: PEFT vs softprompt's trainer step for each prompt method, same model, data and batches.

    .venv/bin/python benchmarks/train_throughput.py [--model smollm2-135m] [--lengths 20 100]
        [--methods prompt prefix prompt+mlp prefix+mlp]

Methods: `prompt` (PEFT PROMPT_TUNING), `prefix` (PEFT PREFIX_TUNING: keys/values
in every layer), and either `+mlp` (trained through an MLP: PEFT's P_TUNING
encoder, or PREFIX_TUNING with `prefix_projection`; ours: `--reparam mlp`).
PEFT: `get_peft_model(config)`, the plain forward with `labels` masked to the
answer token (its standard API for this: full LM logits over the sequence,
cross-entropy on the answer), AdamW. softprompt: the trainer's step (a plain
prompt's keys/values once per batch or a deep prompt's given directly, input
tokens only, the K label rows of the LM head at the answer position), AdamW.
Both get the same 16-example batches of rotten-tomatoes reviews. Timed steps
alternate between the two so other load on the machine hits both alike; the
median step time is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from softprompt.data import builtin_dataset
from softprompt.forward import pad_batch, prompt_state
from softprompt.models import DEFAULT_MODEL, load_base_model
from softprompt.prompts.methods import prompt_class
from softprompt.prompts.reparam import TrainablePrompt
from softprompt.tasks import ClassifyTask

METHODS = ("prompt", "prefix", "prompt+mlp", "prefix+mlp")


def batches(base, task, examples, batch_size, count, seed=0):
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=gen).tolist()
    rows = [task.encode(base, examples[i].input, examples[i].output) for i in order[: batch_size * count]]
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def peft_config(method: str, t: int):
    """PEFT's config for one of METHODS."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    kind, _, reparam = method.partition("+")
    common = dict(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=t)
    if kind == "prefix":
        return PrefixTuningConfig(**common, prefix_projection=reparam == "mlp")
    return PromptEncoderConfig(**common) if reparam == "mlp" else PromptTuningConfig(**common)


def peft_stepper(model_name, task, t, lr, method="prompt"):
    from peft import get_peft_model

    base = load_base_model(model_name)
    model = get_peft_model(base.model, peft_config(method, t))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    answer = [ids[0] for ids in task.label_token_ids(base)]

    def step(rows):
        # Input + answer token; only the answer token is scored (labels -100 elsewhere).
        seqs = [list(r.ids) + [answer[r.target]] for r in rows]
        batch = pad_batch(seqs, base.pad_token_id, side="right")
        labels = torch.full_like(batch.input_ids, -100)
        for i, seq in enumerate(seqs):
            labels[i, len(seq) - 1] = seq[-1]
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def softprompt_stepper(model_name, task, t, lr, method="prompt"):
    kind, _, reparam = method.partition("+")
    base = load_base_model(model_name)
    prompt = TrainablePrompt(prompt_class(kind).initialize(base, t, "vocab"), reparam or "none")
    optimizer = torch.optim.AdamW(prompt.parameters(), lr=lr)

    def step(rows):
        batch, target = task.collate(base, rows, side="left")
        task.loss(base, prompt_state(base, prompt), batch, target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, rows) -> float:
    start = time.perf_counter()
    step(rows)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["prompt", "prefix"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    dataset = builtin_dataset("rotten-tomatoes")
    task = ClassifyTask(dataset.template, dict(dataset.verbalizer))
    train = dataset.load().train
    tokenizer_base = load_base_model(args.model)
    data = batches(tokenizer_base, task, train, args.batch_size, args.warmup + args.steps)
    tokens = sum(len(r.ids) for b in data for r in b) / sum(len(b) for b in data)
    print(f"model {args.model}, rotten-tomatoes, batch {args.batch_size}, mean input {tokens:.1f} tokens, "
          f"{args.warmup} warmup + {args.steps} timed steps, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'method':>10}  {'T':>4}  {'PEFT ex/s':>10}  {'softprompt ex/s':>16}  {'ratio':>6}")
    for method, t in ((m, t) for m in args.methods for t in args.lengths):
        peft = peft_stepper(args.model, task, t, 1e-2, method)
        ours = softprompt_stepper(args.model, task, t, 1e-2, method)
        for rows in data[: args.warmup]:
            peft(rows)
            ours(rows)
        peft_s, ours_s = [], []
        for rows in data[args.warmup :]:
            peft_s.append(timed(peft, rows))
            ours_s.append(timed(ours, rows))
        peft_rate = args.batch_size / statistics.median(peft_s)
        ours_rate = args.batch_size / statistics.median(ours_s)
        print(
            f"{method:>10}  {t:>4}  {peft_rate:>10.2f}  {ours_rate:>16.2f}  {ours_rate / peft_rate:>5.2f}x", flush=True
        )


if __name__ == "__main__":
    main()
