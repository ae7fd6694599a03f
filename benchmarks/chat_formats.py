"""Chat prompts: zero-shot chat vs a chat-trained prompt vs the same data trained as plain input/target.

    nice -n 10 .venv/bin/python benchmarks/chat_formats.py --threads 1 [--steps 200] [--test 300] \
        [--out benchmarks/results/chat]

On the built-in `trec-chat` task (trec's questions as conversations with a system
message; the answer type's word as the assistant's reply), on one base model
(default smollm2-135m), scored by exact match on the first --test test
conversations (the same questions for every row, with a 95% Wilson interval):

- zero-shot: the bare model through its chat template (the system message says the task);
- chat-trained: a `chat` prompt trained on the conversations, served as trained;
- plain-trained: a `generate` prompt trained on the same questions and answer words as
  input/target (template "Question: {text}\\nAnswer type:"), scored two ways a chat request
  could reach it: through its own template (the serving rule of docs/chat.md) and with the
  chat template rendering the conversation and the prompt in front (the rule before it).

With --classify, a `chat_classify` prompt too (the same data, the replies as labels), scored
by ranking the labels (what /v1/classify answers) and by its generated reply (what
/v1/chat/completions answers: the same rendering and decoding, tests/serve/test_openai_client.py).
--only picks rows (e.g. `--only classify`, or `--only chat --quantize int8` for a chat-trained
prompt on a quantised base); --name is the output files' stem.

Every prompt is scored under the task as it was trained (`Task.for_prompt`): a chat prompt whose
training rows shared the system message sits after it; the bare model and a plain prompt see the
whole rendering.

Every prompt: the same steps, batch, length, learning rate and seed; the best of --evals
dev evaluations on the first --dev dev examples is kept, as `softprompt train` does.
Writes OUT/NAME.json and OUT/NAME.md (and the prompts under OUT/prompts/).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from softprompt.data import Example, builtin_dataset
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.models import load_base_model
from softprompt.recipe import RunData, RunSpec, run_training, set_threads
from softprompt.tasks import GenerateTask
from softprompt.tasks.chat import ChatClassifyTask, ChatTask, parse_conversation

PLAIN_TEMPLATE = "Question: {text}\nAnswer type:"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def as_plain(example: Example) -> Example:
    """A conversation's question and answer as input/target (the answer after a space, as answer words go)."""
    turns = parse_conversation(example.input)
    return Example(turns[1]["content"], " " + turns[2]["content"], example.where)


def score(name: str, base, task, prompt, examples, batch: int) -> dict:
    rows = encode_eval_set(base, task, examples)
    start = time.perf_counter()
    report = evaluate(base, task, prompt, rows.rows, batch_size=batch, keep_predictions=True)
    hits = round(report["exact_match"] * report["n"])
    low, high = wilson(hits, report["n"])
    print(f"{name}: exact match {report['exact_match']:.3f} [{low:.3f}, {high:.3f}] n={report['n']}", file=sys.stderr)
    return {
        "exact_match": report["exact_match"],
        "interval95": [round(low, 4), round(high, 4)],
        "token_f1": report["token_f1"],
        "loss": report.get("loss"),
        "n": report["n"],
        "seconds": round(time.perf_counter() - start, 1),
        "first_predictions": report["predictions"][:8],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16, help="virtual tokens of both prompts")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--test", type=int, default=300, help="first N test conversations scored")
    parser.add_argument("--dev", type=int, default=100, help="first N dev examples scored at each evaluation")
    parser.add_argument("--evals", type=int, default=4, help="dev evaluations along the run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classify", action="store_true", help="also train and score a chat_classify prompt")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=None, help="these rows only (default: all)")
    parser.add_argument("--quantize", default="none", help="the base model's quantisation (int8, int4)")
    parser.add_argument("--out", default="benchmarks/results/chat")
    parser.add_argument("--name", default="formats", help="stem of the output files")
    args = parser.parse_args(argv)
    parts = set(args.only or ("zero", "chat", "plain", *(("classify",) if args.classify else ())))
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_base_model(args.model, quantize=args.quantize)
    chat = builtin_dataset("trec-chat").load()
    test_chat = chat.test[: args.test]
    settings = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "num_virtual_tokens": args.tokens,
        "lr": args.lr,
        "eval_every": max(1, args.steps // args.evals),
        "checkpoint_every": args.steps,
        "seed": args.seed,
    }
    model = args.model if args.quantize == "none" else f"{args.model} ({args.quantize})"
    results: dict = {"model": model, "data": "trec-chat", "settings": settings, "test": len(test_chat)}
    chat_task = ChatTask().with_data(chat.train)
    if "zero" in parts:
        results["zero_shot_chat"] = score("zero-shot chat", base, chat_task.for_prompt(None), None, test_chat, 32)

    chat_spec = RunSpec(data="trec-chat", max_dev_examples=args.dev, settings=settings)
    if "chat" in parts:
        start = time.perf_counter()
        trained = run_training(chat_spec, out / "prompts" / f"{args.name}-chat", base, show_progress=False)
        task = chat_task.for_prompt(trained.prompt.meta)
        results["chat_trained"] = {
            **score("chat-trained, served as trained", base, task, trained.prompt, test_chat, 32),
            "placement": trained.prompt.meta.placement,
            "train_seconds": round(time.perf_counter() - start, 1),
        }
    if "plain" in parts:
        plain_rows(results, base, chat, chat_task, chat_spec, test_chat, out)
    if "classify" in parts:
        classify_rows(results, base, chat_task, chat_spec, test_chat, out / "prompts" / f"{args.name}-chat_classify")
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def plain_rows(results: dict, base, chat, chat_task, chat_spec, test_chat, out: Path) -> None:
    """The same data as plain input/target: through its own template, and through the chat template."""
    test_plain = tuple(map(as_plain, test_chat))

    plain_task = GenerateTask(PLAIN_TEMPLATE)
    plain_data = RunData(
        plain_task,
        tuple(map(as_plain, chat.train)),
        tuple(map(as_plain, chat.dev)),
        test_plain,
        "trec-plain",
        64,
    )
    plain_spec = replace(chat_spec, data="trec", task="generate", template=PLAIN_TEMPLATE)
    start = time.perf_counter()
    plain = run_training(plain_spec, out / "prompts" / "plain", base, data=plain_data, show_progress=False)
    seconds = round(time.perf_counter() - start, 1)
    results["plain_trained_own_template"] = {
        **score("plain-trained, through its own template", base, plain_task, plain.prompt, test_plain, 32),
        "train_seconds": seconds,
    }
    results["plain_trained_chat_template"] = score(
        "plain-trained, chat template with the prompt in front",
        base,
        chat_task.for_prompt(plain.prompt.meta),
        plain.prompt,
        test_chat,
        32,
    )


def classify_rows(results: dict, base, chat_task, chat_spec, test_chat, folder: Path) -> None:
    """A chat_classify prompt: its labels ranked (/v1/classify), and its generated reply (chat completions)."""
    start = time.perf_counter()
    labelled = run_training(replace(chat_spec, task="chat_classify"), folder, base, show_progress=False)
    seconds = round(time.perf_counter() - start, 1)
    task = ChatClassifyTask.from_meta(labelled.prompt.meta)
    rows = encode_eval_set(base, task, test_chat)
    ranked = evaluate(base, task, labelled.prompt, rows.rows, batch_size=32)
    hits = round(ranked["accuracy"] * ranked["n"])
    low, high = wilson(hits, ranked["n"])
    results["chat_classify_ranked"] = {
        "accuracy": ranked["accuracy"],
        "interval95": [round(low, 4), round(high, 4)],
        "n": ranked["n"],
        "placement": labelled.prompt.meta.placement,
        "train_seconds": seconds,
    }
    print(f"chat_classify, labels ranked: accuracy {ranked['accuracy']:.3f} [{low:.3f}, {high:.3f}]", file=sys.stderr)
    results["chat_classify_generated"] = score(
        "chat_classify, generated reply",
        base,
        chat_task.for_prompt(labelled.prompt.meta),
        labelled.prompt,
        test_chat,
        32,
    )


PARTS = ("zero", "chat", "plain", "classify")
ROWS = (
    ("zero_shot_chat", "zero-shot, through the chat template"),
    ("chat_trained", "chat-trained prompt, served as trained (chat)"),
    ("plain_trained_own_template", "plain input/target prompt, through its own template (the serving rule)"),
    ("plain_trained_chat_template", "plain input/target prompt, chat template with the prompt in front"),
    ("chat_classify_generated", "chat_classify prompt, its generated reply (chat completions)"),
)


def markdown(results: dict) -> str:
    lines = [
        f"# Chat formats on {results['data']} ({results['model']})",
        "",
        f"First {results['test']} test conversations; exact match on the generated reply (95% Wilson interval). "
        f"Training: {json.dumps(results['settings'])}.",
        "",
        "| how | exact match | 95% interval | token F1 |",
        "|---|---|---|---|",
    ]
    for key, label in ROWS:
        r = results.get(key)
        if r:
            low, high = r["interval95"]
            lines.append(f"| {label} | {r['exact_match']:.3f} | [{low:.3f}, {high:.3f}] | {r['token_f1']:.3f} |")
    ranked = results.get("chat_classify_ranked")
    if ranked:
        low, high = ranked.get("interval95", (math.nan, math.nan))
        lines += [
            "",
            f"chat_classify prompt, labels ranked (/v1/classify): accuracy {ranked['accuracy']:.3f} "
            f"[{low:.3f}, {high:.3f}]",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
