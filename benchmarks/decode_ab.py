"""Single-stream decode, A/B interleaved: fp32, int8, and int8 with its projections unshared (issue 33).

    python benchmarks/decode_ab.py [--model smollm2-135m] [--rounds 8] [--new-tokens 32] [--loop ours|hf|both]

Loads the fp32 and int8 models once, makes a copy of the int8 one whose
q/k/v and gate/up run one kernel call each (quant/fused.py undone), then runs
rounds of one greedy stream per model in turn, so drifts of the machine's
load hit all three alike. Two decoding loops: `ours` is softprompt's own
(`decode.generate_rows`, what `generate`, `serve` and the studio run), after a
20-vector soft prompt; `hf` is transformers' `generate` on the bare model.
Prints the median tokens/s of each (wall clock and this thread's CPU time) and
the ratios to fp32. Take published figures on an idle machine; the thread
count is torch's default unless OMP_NUM_THREADS says.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from softprompt.decode import GenerationConfig, generate_rows
from softprompt.forward import PromptState, TokenBatch, prompt_state
from softprompt.models import BaseModel, load_base_model
from softprompt.prompts.plain import SoftPrompt

PROMPT = "def fibonacci(n):\n"


def unshared(base: BaseModel) -> BaseModel:
    """A copy of `base` whose int8 projections each hold a table of their own and run their own product."""
    plain = copy.deepcopy(base)
    for module in plain.model.modules():
        if getattr(module, "shared", None) is not None:
            module.qweight, module.scales, module.shared = module.qweight.clone(), module.scales.clone(), None
    return plain


def hf_stream(base: BaseModel, prompt: PromptState, n: int) -> int:
    """transformers' generate on the bare model (no soft prompt): n greedy tokens after PROMPT; their count."""
    ids = torch.tensor([base.encode(PROMPT)])
    base.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return n


def our_stream(base: BaseModel, prompt: PromptState, n: int) -> int:
    """softprompt's decoding loop after `prompt`; the tokens it made (EOS may end it early)."""
    ids = torch.tensor([base.encode(PROMPT)])
    rows = generate_rows(base, prompt, TokenBatch(ids, torch.ones_like(ids)), GenerationConfig(max_new_tokens=n))
    return len(rows[0].ids)


LOOPS = {"ours": our_stream, "hf": hf_stream}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--loop", choices=[*LOOPS, "both"], default="both")
    args = p.parse_args(argv)
    models = {"fp32": load_base_model(args.model), "int8": load_base_model(args.model, quantize="int8")}
    models["int8-unshared"] = unshared(models["int8"])
    # A 20-vector prompt's keys/values, made once per model as a server holds them.
    prompts = {
        name: prompt_state(base, SoftPrompt.initialize(base, 20, "vocab", seed=0).embeddings.detach())
        for name, base in models.items()
    }
    loops = list(LOOPS) if args.loop == "both" else [args.loop]
    runs = [(loop, name) for loop in loops for name in models]
    wall: dict[tuple, list[float]] = {run: [] for run in runs}
    cpu: dict[tuple, list[float]] = {run: [] for run in runs}
    n = args.new_tokens
    with torch.no_grad():
        for loop, name in runs:
            LOOPS[loop](models[name], prompts[name], 4)  # warm-up
        for _ in range(args.rounds):
            for loop, name in runs:
                start, start_cpu = time.perf_counter(), time.thread_time()
                made = LOOPS[loop](models[name], prompts[name], n)
                wall[loop, name].append(made / (time.perf_counter() - start))
                cpu[loop, name].append(made / (time.thread_time() - start_cpu))
    print(f"{args.model}, {args.rounds} rounds of {n} tokens, {torch.get_num_threads()} threads")
    for loop, name in runs:
        w, c = statistics.median(wall[loop, name]), statistics.median(cpu[loop, name])
        ratio = w / statistics.median(wall[loop, "fp32"])
        print(f"{loop:5} {name:14} {w:7.2f} tok/s ({ratio:.3f}x fp32)   main thread's CPU: {c:7.2f} tok/s")


if __name__ == "__main__":
    main()
