"""Single-stream decode, A/B interleaved: fp32, int8, and int8 with its projections unshared (issue 33).

    python benchmarks/decode_ab.py [--model smollm2-135m] [--rounds 8] [--new-tokens 32]

Loads the fp32 and int8 models once, makes a copy of the int8 one whose
q/k/v and gate/up run one kernel call each (quant/fused.py undone), then runs
rounds of one greedy `generate` per model in turn, so drifts of the machine's
load hit all three alike. Prints the median tokens/s of each (wall clock and
this thread's CPU time) and the ratios to fp32. Take published figures on an
idle machine; the thread count is torch's default unless OMP_NUM_THREADS says.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from softprompt.models import BaseModel, load_base_model

PROMPT = "def fibonacci(n):\n"


def unshared(base: BaseModel) -> BaseModel:
    """A copy of `base` whose int8 projections each hold a table of their own and run their own product."""
    plain = copy.deepcopy(base)
    for module in plain.model.modules():
        if getattr(module, "shared", None) is not None:
            module.qweight, module.scales, module.shared = module.qweight.clone(), module.scales.clone(), None
    return plain


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    args = p.parse_args(argv)
    models = {"fp32": load_base_model(args.model), "int8": load_base_model(args.model, quantize="int8")}
    models["int8-unshared"] = unshared(models["int8"])
    ids = torch.tensor([models["fp32"].encode(PROMPT)])
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    n = args.new_tokens
    with torch.no_grad():
        for base in models.values():
            base.model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        for _ in range(args.rounds):
            for name, base in models.items():
                start, start_cpu = time.perf_counter(), time.thread_time()
                base.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
                wall[name].append(n / (time.perf_counter() - start))
                cpu[name].append(n / (time.thread_time() - start_cpu))
    print(f"{args.model}, {args.rounds} rounds of {n} tokens, {torch.get_num_threads()} threads")
    for name in models:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        ratio = w / statistics.median(wall["fp32"])
        print(f"{name:14} {w:7.2f} tok/s ({ratio:.3f}x fp32)   main thread's CPU: {c:7.2f} tok/s")


if __name__ == "__main__":
    main()
