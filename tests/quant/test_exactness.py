"""The bar of issue 33: through a quantised model, the loss and the prompt's gradient equal those of an fp32
model built from the same dequantised weights (relative error <= 1e-4), plain and deep prompts, every family."""

import pytest
import torch

from softprompt.forward import causal_lm_loss, input_logits, lm_logits, next_token_logits, pad_batch, prompt_state
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.recompute import recompute

KINDS = ("gpt2", "llama", "qwen2", "gemma3")
MODES = ("int8", "int4")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")
BAR = 1e-4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def trainable(base, method: str) -> torch.Tensor:
    """The weights a plain or deep prompt trains, the same numbers for the quantised and reference models."""
    cls = SoftPrompt if method == "plain" else PrefixPrompt
    return cls.initialize(base, 5, "random", seed=0).weights.detach().clone().requires_grad_(True)


def loss_and_grad(base, method: str, weights_from, mode: str = "off"):
    weights = weights_from.detach().clone().requires_grad_(True)
    state = prompt_state(base, weights) if method == "plain" else PrefixPrompt.state_of(base, weights)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id, side="left")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    with recompute(base, mode):
        loss = causal_lm_loss(input_logits(base, state, batch), labels)
        loss.backward()
    return loss.detach(), weights.grad


@pytest.mark.parametrize("method", ["plain", "deep"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_prompt_gradient_equal_the_dequantised_fp32_model(quantized_pair, kind, mode, method):
    quantized, reference = quantized_pair(kind, mode)
    assert quantized.quantization.mode == mode and not reference.quantization.enabled
    weights = trainable(reference, method)
    loss, grad = loss_and_grad(quantized, method, weights)
    ref_loss, ref_grad = loss_and_grad(reference, method, weights)
    assert rel(loss, ref_loss) <= BAR
    assert rel(grad, ref_grad) <= BAR
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_full_and_restricted_head_equal_the_reference(quantized_pair, kind, mode):
    quantized, reference = quantized_pair(kind, mode)
    hidden = torch.randn(4, quantized.hidden_size)
    full = lm_logits(quantized, hidden)
    assert rel(full, lm_logits(reference, hidden)) <= 1e-5
    ids = torch.tensor([7, 3, 250])
    torch.testing.assert_close(lm_logits(quantized, hidden, ids), full[:, ids], atol=1e-5, rtol=1e-5)
    batch = pad_batch([quantized.encode(t) for t in TEXTS], quantized.pad_token_id)
    state = prompt_state(quantized, SoftPrompt.initialize(quantized, 3, "vocab", seed=1))
    ref_state = prompt_state(reference, SoftPrompt.initialize(reference, 3, "vocab", seed=1))
    assert (
        rel(
            next_token_logits(quantized, state, batch, token_ids=ids),
            next_token_logits(reference, ref_state, batch, token_ids=ids),
        )
        <= BAR
    )


def assert_recomputation_keeps_the_gradient(quantized) -> None:
    """A plain prompt's loss and gradient with selective and full recomputation equal those without."""
    weights = trainable(quantized, "plain")
    loss, grad = loss_and_grad(quantized, "plain", weights, "off")
    for how in ("selective", "full"):
        again_loss, again_grad = loss_and_grad(quantized, "plain", weights, how)
        torch.testing.assert_close(again_loss, loss, atol=0, rtol=1e-6)
        torch.testing.assert_close(again_grad, grad, atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_recomputation_gives_the_same_gradient(quantized_pair, mode):
    quantized, _ = quantized_pair("llama", mode)
    assert_recomputation_keeps_the_gradient(quantized)


def test_gemma_keeps_its_embedding_scale(quantized_pair):
    quantized, reference = quantized_pair("gemma3", "int8")
    ids = torch.tensor([[5, 9, 200]])
    assert quantized.input_embeddings.embed_scale is not None
    torch.testing.assert_close(quantized.embed(ids), reference.embed(ids), atol=0, rtol=0)
    torch.testing.assert_close(quantized.embedding_rows(ids[0]), reference.embedding_rows(ids[0]), atol=0, rtol=0)


def test_recomputation_of_many_tile_products_gives_the_same_gradient(quantized_pair, monkeypatch):
    """Products wider than a tile write their tiles into the output in place (mm with out=): selective
    recomputation must redo those, not keep a tensor that the recomputation writes again."""
    from softprompt.quant.matrix import QuantizedMatrix

    monkeypatch.setattr(QuantizedMatrix, "row_tile", 16)
    quantized, _ = quantized_pair("qwen2", "int8")
    assert_recomputation_keeps_the_gradient(quantized)
