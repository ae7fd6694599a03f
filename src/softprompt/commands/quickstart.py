"""`softprompt quickstart`: the main job on the built-in default model.

For now: load the default model, make a class-label-initialised prompt, and
show a prompted forward pass (label probabilities for two reviews).
"""

from __future__ import annotations

import argparse
import time

NAME = "quickstart"
HELP = "run the main job on the built-in default model and data"

TEMPLATE = "Review: {text}\nSentiment:"
VERBALIZER = {"positive": " positive", "negative": " negative"}
EXAMPLES = (
    "A gorgeous, witty, seductive movie.",
    "The plot is nothing but boilerplate clichés from start to finish.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="base model (default: %(default)s)")
    parser.add_argument("--num-virtual-tokens", type=int, default=20)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..forward import last_token_index, lm_logits, pad_batch, prefixed_forward, prompt_prefix
    from ..models import load_base_model
    from ..prompt import PromptMeta, SoftPrompt

    start = time.perf_counter()
    base = load_base_model(args.model)
    print(
        f"loaded {args.model} in {time.perf_counter() - start:.1f}s: {base.model.__class__.__name__}, "
        f"d={base.hidden_size}, {sum(p.numel() for p in base.model.parameters()):,} frozen parameters"
    )
    meta = PromptMeta(task="classify", template=TEMPLATE, verbalizer=VERBALIZER)
    prompt = SoftPrompt.initialize(
        base, args.num_virtual_tokens, "labels", label_words=list(VERBALIZER.values()), meta=meta
    )
    label_ids = torch.tensor([base.encode(w)[0] for w in VERBALIZER.values()])
    batch = pad_batch([base.encode(TEMPLATE.format(text=t)) for t in EXAMPLES], base.pad_token_id)
    with torch.no_grad():
        hidden, _ = prefixed_forward(base, prompt_prefix(base, prompt.embeddings), batch)
        answer = hidden[torch.arange(len(EXAMPLES)), last_token_index(batch.attention_mask)]
        probs = lm_logits(base, answer, label_ids).softmax(-1)
    print(f"prompted forward pass (T={prompt.num_virtual_tokens}, init=labels, untrained):")
    for text, row in zip(EXAMPLES, probs):
        shown = ", ".join(f"{label} {p:.2f}" for label, p in zip(VERBALIZER, row.tolist()))
        print(f"  {text!r}: {shown}")
    return 0
