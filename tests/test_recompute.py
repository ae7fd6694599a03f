"""Recomputing activations in backward: the same loss and prompt gradient, through the prefix cache too."""

import pytest
import torch

from softprompt.families import transformer_blocks
from softprompt.forward import PrefixKV, next_token_logits, pad_batch, prompt_state
from softprompt.recompute import MODES, recompute
from softprompt.tasks import ClassifyTask

CAUSAL = ("gpt2", "llama", "gemma3")
TASK = ClassifyTask("Review: {text}\nSentiment:", {"pos": " good", "neg": " bad"})
TEXTS = ("the movie was great fun and then some", "dull", "an utterly forgettable film, sadly")


def prompt_for(base, t=5):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(t, base.hidden_size, generator=g) - 0.5).requires_grad_(True)


def loss_of(base, state):
    """A text-to-text loss (logits at several positions per row) plus a classification loss."""
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    fed = [base.encode(t) for t in (" ok yes", " no", "")]
    logits = next_token_logits(base, state, batch, fed)
    rows, _ = TASK.collate(base, [TASK.encode(base, t, "pos") for t in TEXTS])
    scores = TASK.label_scores(base, state, rows)
    return logits.float().logsumexp(-1).mean() + scores.logsumexp(-1).mean()


def prompt_gradient(base, mode, layout="prefix"):
    prompt = prompt_for(base)
    with recompute(base, mode):
        loss = loss_of(base, prompt_state(base, prompt, share_prefix=layout == "prefix"))
    loss.backward()
    return loss.detach(), prompt.grad


@pytest.mark.parametrize("layout", ["prefix", "inline"])
@pytest.mark.parametrize("kind", CAUSAL)
def test_every_mode_gives_the_same_loss_and_prompt_gradient(tiny_models, kind, layout):
    base = tiny_models(kind)
    loss, grad = prompt_gradient(base, "off", layout)
    assert grad.abs().sum() > 0
    for mode in ("selective", "full"):
        again, regrad = prompt_gradient(base, mode, layout)
        torch.testing.assert_close(again, loss, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(regrad, grad, atol=1e-5, rtol=1e-5)


def test_encoder_decoder_gradient_is_the_same(tiny_models):
    base = tiny_models("t5")
    loss, grad = prompt_gradient(base, "off", "inline")
    for mode in ("selective", "full"):
        again, regrad = prompt_gradient(base, mode, "inline")
        torch.testing.assert_close(again, loss, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(regrad, grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_blocks_rerun_in_backward_over_the_prefix_cache(tiny_models, mode):
    """Each block runs again in the backward pass, after its own forward hook (accelerate's) and with the
    cache as it first saw it: the prompt's keys/values in front, so their gradient still flows."""
    base = tiny_models("llama")
    block = transformer_blocks(base.model)[0]
    seen = []
    inner = block.forward

    def counting(*args, **kwargs):  # stands for a forward a library put on the instance
        keys = kwargs["past_key_values"].layers[0].keys
        seen.append(0 if keys is None else keys.shape[2])  # keys cached before this block adds its own
        return inner(*args, **kwargs)

    block.forward = counting
    try:
        prompt = prompt_for(base, t=5)
        state = prompt_state(base, prompt)
        seen.clear()  # count the input's forwards only
        with recompute(base, mode):
            loss = loss_of(base, state)
        calls = len(seen)
        loss.backward()
        assert block.forward is counting  # the instance's own forward is put back
    finally:
        del block.forward
    assert len(seen) == 2 * calls  # every run of the block ran once more in backward
    assert set(seen) == {5}  # ... each time behind the 5 prompt keys, never behind its own
    assert prompt.grad.abs().sum() > 0


def test_a_deep_prompts_keys_and_values_get_the_same_gradient(tiny_models):
    base = tiny_models("gemma3")
    computed = prompt_state(base, prompt_for(base))
    grads = []
    for mode in MODES:
        deep = PrefixKV.of_layers([k.detach().clone().requires_grad_(True) for k in computed.keys], computed.values)
        with recompute(base, mode):
            loss = loss_of(base, PrefixKV(deep.keys, [v.detach() for v in deep.values], deep.mask, deep.lengths))
        loss.backward()
        grads.append([k.grad for k in deep.keys])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_forwards_without_gradients_and_after_the_block_are_untouched(tiny_models):
    base = tiny_models("gpt2")
    blocks = transformer_blocks(base.model)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    with torch.no_grad():
        plain = next_token_logits(base, None, batch)
        with recompute(base, "full"):
            assert all("forward" in vars(b) for b in blocks)
            inside = next_token_logits(base, None, batch)
    assert torch.equal(inside, plain)
    assert not any("forward" in vars(b) for b in blocks)
    with pytest.raises(ValueError, match="mode must be one of"), recompute(base, "sometimes"):
        pass
