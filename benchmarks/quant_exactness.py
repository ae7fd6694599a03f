"""Exactness and size of quantised frozen models (softprompt.quant): deterministic, so fine to run anywhere.

For each model and precision it reports
- the relative error (L2) of the loss and of the prompt's gradient (plain and deep prompts) against an fp32
  model built from the same dequantised weights: the bar of issue 33 is 1e-4;
- what quantising itself costs: the relative error of the logits against the original fp32 model, and how
  often the top-1 next token agrees;
- what the inference path adds (no_grad: PyTorch's packed kernels with bf16 activations): the relative
  error of its logits against the exact ones;
- the bytes per weight of the quantised matrices (linears, embedding, head: scales and padding included).

    python benchmarks/quant_exactness.py                          # the tiny test models
    python benchmarks/quant_exactness.py --model smollm2-135m     # a real model (~1.5 GB of RAM)
"""

from __future__ import annotations

import argparse
import json

import torch

from softprompt.forward import causal_lm_loss, input_logits, pad_batch, prompt_state
from softprompt.models import BaseModel, load_base_model, quantize_base
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.quant import dequantized_model
from softprompt.quant.model import quantized_modules
from softprompt.testing import tiny_base

TEXTS = (
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "The movie was a complete waste of time; the acting was wooden and the plot made no sense.",
    "dull",
)
PRECISIONS = ("int8", "int4", "int4/64", "int4/128")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def loss_and_grad(base: BaseModel, method: str, weights: torch.Tensor):
    weights = weights.detach().clone().requires_grad_(True)
    state = prompt_state(base, weights) if method == "plain" else PrefixPrompt.state_of(base, weights)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id, side="left")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    logits = input_logits(base, state, batch)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    return loss.detach(), weights.grad, logits.detach()[batch.attention_mask.bool()]


def bytes_per_weight(base: BaseModel) -> float:
    """Of the transformer blocks' matrices (the embedding and head are int8 in both modes)."""
    embedding, head = base.model.get_input_embeddings(), base.model.get_output_embeddings()
    tables = {id(embedding.matrix), id(head.matrix)}
    matrices = [m for _, m in quantized_modules(base.model) if id(m) not in tables]
    return sum(m.nbytes() for m in matrices) / sum(m.out_features * m.in_features for m in matrices)


def measure(load, name: str, precision: str) -> dict:
    original = load()
    quantized = quantize_base(load(), precision)
    reference = BaseModel(dequantized_model(quantized.model), quantized.tokenizer, name)
    row = {"model": name, "precision": precision, "bytes_per_weight": round(bytes_per_weight(quantized), 4)}
    for method in ("plain", "deep"):
        cls = SoftPrompt if method == "plain" else PrefixPrompt
        weights = cls.initialize(original, 5, "vocab", seed=0).weights  # a prompt as training starts it
        loss, grad, logits = loss_and_grad(quantized, method, weights)
        ref_loss, ref_grad, _ = loss_and_grad(reference, method, weights)
        _, _, fp32_logits = loss_and_grad(original, method, weights)
        row[f"{method}_loss_rel"] = rel(loss, ref_loss)
        row[f"{method}_grad_rel"] = rel(grad, ref_grad)
        row[f"{method}_logits_vs_fp32"] = rel(logits, fp32_logits)
        row[f"{method}_top1_agree"] = (logits.argmax(-1) == fp32_logits.argmax(-1)).float().mean().item()
    with torch.no_grad():
        batch = pad_batch([quantized.encode(t) for t in TEXTS], quantized.pad_token_id, side="left")
        fast = input_logits(quantized, None, batch)[batch.attention_mask.bool()]
    with torch.enable_grad():
        exact = input_logits(quantized, None, batch).detach()[batch.attention_mask.bool()]
    row["inference_vs_exact"] = rel(fast, exact)
    row["positions"] = len(logits)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model name (default: the tiny gpt2, llama, qwen2, gemma3)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    loaders = {f"tiny-{k}": (lambda k=k: tiny_base(k)) for k in ("gpt2", "llama", "qwen2", "gemma3")}
    if args.model:
        loaders = {m: (lambda m=m: load_base_model(m)) for m in args.model}
    rows = []
    print(
        "| model | precision | bytes/weight (blocks) | loss rel (plain, deep) | grad rel (plain, deep) "
        "| logits vs fp32 | top-1 agree | inference vs exact |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, load in loaders.items():
        for precision in PRECISIONS:
            torch.manual_seed(0)
            r = measure(load, name, precision)
            rows.append(r)
            print(
                f"| {name} | {precision} | {r['bytes_per_weight']:.3f} | {r['plain_loss_rel']:.1e}, {r['deep_loss_rel']:.1e} "
                f"| {r['plain_grad_rel']:.1e}, {r['deep_grad_rel']:.1e} | {r['plain_logits_vs_fp32']:.3f} "
                f"| {r['plain_top1_agree']:.1%} of {r['positions']} | {r['inference_vs_exact']:.1e} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
