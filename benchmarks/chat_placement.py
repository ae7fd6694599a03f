"""Where a chat prompt's virtual tokens sit: in front of everything, or after the system turn.

    nice -n 10 .venv/bin/python benchmarks/chat_placement.py --threads 1 [--steps 60] [--test 200] \
        [--seed 0] [--out benchmarks/results/chat/placement-seed0.json]
    .venv/bin/python benchmarks/chat_placement.py --summary benchmarks/results/chat/placement-seed*.json \
        [--out benchmarks/results/chat/placement.md]

On `trec-chat` (every conversation starts with the same system message), two soft prompts
are trained by one small loop, alike in everything (init, steps, batches, learning rate,
seed) but where the virtual tokens sit:

- first: [prompt][system turn][user turn][assistant reply], what softprompt does;
- after the system turn: [system turn][prompt][user turn][assistant reply]. With a fixed
  system message this is exactly a prefix computed over the system turn's tokens then the
  prompt's vectors, the rows holding the rest, so the same one forward runs both.

Both are scored by exact match on the first --test test conversations (greedy replies).
--summary tabulates several seeds' files: per seed, the mean and the sample standard deviation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from softprompt.data import builtin_dataset
from softprompt.decode import GenerationConfig, generate_texts
from softprompt.forward import pad_batch, prompt_prefix
from softprompt.metrics import generation_report
from softprompt.models import load_base_model
from softprompt.prompts.plain import SoftPrompt
from softprompt.recipe import set_threads
from softprompt.tasks.chat import ChatRow, ChatTask


def system_length(base, task: ChatTask) -> int:
    """Tokens of the system turn, which every rendering of the task's conversations starts with."""
    turn = [{"role": "system", "content": task.system}]
    ids = base.encode(base.tokenizer.apply_chat_template(turn, tokenize=False))
    if list(task.encode(base, "a").ids[: len(ids)]) != ids:
        raise SystemExit("the system turn does not start the rendering as one piece; cannot move the prompt after it")
    return len(ids)


def run(base, task: ChatTask, train, test, *, after_system: bool, args) -> dict:
    torch.manual_seed(args.seed)
    init = SoftPrompt.initialize(base, args.tokens, "vocab", seed=args.seed).weights.detach()
    weights = torch.nn.Parameter(init.clone().float())
    optimizer = torch.optim.AdamW([weights], lr=args.lr, weight_decay=0.0)
    cut = system_length(base, task) if after_system else 0
    system_ids = torch.tensor([task.encode(base, "a").ids[:cut]], dtype=torch.long, device=base.device)
    system = base.embed(system_ids)[0].detach()

    def state():
        vectors = torch.cat([system.float(), weights]) if cut else weights
        return prompt_prefix(base, vectors)

    def strip(row: ChatRow) -> ChatRow:
        return ChatRow(row.ids[cut:], row.target, row.truncated, row.where, tuple(p - cut for p in row.trained))

    rows = [strip(task.encode(base, ex.input, ex.output)) for ex in train]
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(args.steps):
        index = torch.randint(len(rows), (args.batch_size,), generator=gen).tolist()
        batch, target = task.collate(base, [rows[i] for i in index])
        loss = task.loss(base, state(), batch, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay, as the trainer's default schedule
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / args.steps))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        prefix = state().detach()
        inputs = [task.encode(base, ex.input).ids[cut:] for ex in test]
        answers: list[str] = []
        for i in range(0, len(inputs), 32):
            batch = pad_batch(inputs[i : i + 32], base.pad_token_id, device=base.device)
            texts = generate_texts(base, prefix, batch, GenerationConfig(max_new_tokens=6))
            answers += [t.strip() for t in texts]
    report = generation_report(answers, [ex.output for ex in test])
    where = "after the system turn" if after_system else "first"
    print(f"{where}: exact match {report['exact_match']:.3f} (loss at the end {loss.item():.3f})", file=sys.stderr)
    return {**report, "final_train_loss": round(loss.item(), 4), "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/chat/placement-seed<seed>.json")
    parser.add_argument("--summary", nargs="+", default=None, help="seed files to tabulate (no training)")
    args = parser.parse_args(argv)
    if args.summary:
        text = summary([json.loads(Path(p).read_text()) for p in args.summary])
        Path(args.out or "benchmarks/results/chat/placement.md").write_text(text)
        print(text)
        return 0
    args.out = args.out or f"benchmarks/results/chat/placement-seed{args.seed}.json"
    set_threads(args.threads)
    base = load_base_model(args.model)
    splits = builtin_dataset("trec-chat").load()
    task = ChatTask().with_data(splits.train)
    test = splits.test[: args.test]
    results = {
        "model": args.model,
        "data": "trec-chat",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "threads")},
        "system_tokens": system_length(base, task),
        "first": run(base, task, splits.train, test, after_system=False, args=args),
        "after_system": run(base, task, splits.train, test, after_system=True, args=args),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


def summary(runs: list[dict]) -> str:
    """Markdown: each seed's exact match for both placements, their difference, and mean ± sd over seeds."""
    runs = sorted(runs, key=lambda r: r["settings"]["seed"])
    settings = {k: v for k, v in runs[0]["settings"].items() if k != "seed"}
    lines = [
        f"# Where the soft prompt sits ({runs[0]['model']}, {runs[0]['data']})",
        "",
        f"Exact match of the greedy reply on the first {runs[0]['first']['n']} test conversations; "
        f"settings {json.dumps(settings)}; the system turn is {runs[0]['system_tokens']} tokens.",
        "",
        "| seed | first | after the system turn | difference |",
        "|---|---|---|---|",
    ]
    firsts = [r["first"]["exact_match"] for r in runs]
    afters = [r["after_system"]["exact_match"] for r in runs]
    gaps = [a - f for f, a in zip(firsts, afters)]
    for r, f, a, g in zip(runs, firsts, afters, gaps):
        lines.append(f"| {r['settings']['seed']} | {f:.2f} | {a:.2f} | {g:+.2f} |")

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"

    lines.append(f"| mean ± sd | {spread(firsts)} | {spread(afters)} | {spread(gaps)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
