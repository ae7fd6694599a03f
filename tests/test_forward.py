"""The prompted forward pass: plain path vs PEFT, shared-prefix path vs plain path."""

import pytest
import torch
from peft import PromptTuningConfig, TaskType, get_peft_model

from softprompt.forward import (
    causal_lm_loss,
    concat_forward,
    lm_logits,
    pad_batch,
    prefixed_forward,
    prompt_prefix,
    stack_prefixes,
)

CAUSAL = ("gpt2", "llama", "qwen2", "gemma3")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")


def encode(base, texts=TEXTS):
    return [base.encode(t) for t in texts]


def next_token_labels(batch):
    """Targets for every real token that follows a real token (a pad slot's output is never scored)."""
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    previous_real = torch.nn.functional.pad(batch.attention_mask[:, :-1], (1, 0))
    return labels.masked_fill(previous_real == 0, -100)


def prompt_for(base, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, base.hidden_size, generator=g) - 0.5).requires_grad_(True)


def peft_wrap(base, prompt):
    task = TaskType.SEQ_2_SEQ_LM if base.is_seq2seq else TaskType.CAUSAL_LM
    config = PromptTuningConfig(task_type=task, num_virtual_tokens=prompt.shape[0])
    model = get_peft_model(base.model, config)
    with torch.no_grad():
        weight = model.prompt_encoder.default.embedding.weight
        weight[: prompt.shape[0]] = prompt.detach()
    return model


def unwrap(peft_model):
    # get_peft_model wraps in place; undo so the session-scoped tiny model stays plain.
    peft_model.base_model.__dict__.pop("prepare_inputs_for_generation", None)


@pytest.mark.parametrize("kind", CAUSAL)
def test_concat_forward_matches_peft_loss_and_logits(tiny_models, kind):
    base = tiny_models(kind)
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="right")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    ours = concat_forward(base, prompt, batch, labels=labels)

    peft_model = peft_wrap(base, prompt)
    try:
        # PEFT also scores the first input token from the last prompt position; mask it to compare.
        peft_labels = labels.clone()
        peft_labels[:, 0] = -100
        theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=peft_labels)
    finally:
        unwrap(peft_model)
    t = prompt.shape[0]
    real = batch.attention_mask.bool()
    torch.testing.assert_close(ours.logits[real], theirs.logits[:, t:][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)


def test_concat_forward_matches_peft_seq2seq(tiny_models):
    base = tiny_models("t5")
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="right")
    targets = pad_batch(encode(base, ("good", "bad", "meh")), base.pad_token_id, side="right")
    labels = targets.input_ids.masked_fill(targets.attention_mask == 0, -100)
    ours = concat_forward(base, prompt, batch, labels=labels)
    peft_model = peft_wrap(base, prompt)
    theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL)
def test_left_padding_equals_unpadded_rows(tiny_models, kind):
    base = tiny_models(kind)
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="left")
    with torch.no_grad():
        padded = concat_forward(base, prompt, batch).logits
        for row, ids in enumerate(encode(base)):
            single = concat_forward(base, prompt, pad_batch([ids], base.pad_token_id)).logits[0]
            torch.testing.assert_close(padded[row, -len(ids) :], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", CAUSAL)
def test_prefix_path_equals_concat_path_loss_and_gradient(tiny_models, kind, side):
    base = tiny_models(kind)
    batch = pad_batch(encode(base), base.pad_token_id, side=side)
    labels = next_token_labels(batch)

    plain_prompt = prompt_for(base)
    plain = concat_forward(base, plain_prompt, batch, labels=labels)
    plain.loss.backward()

    fast_prompt = prompt_for(base)
    hidden, _ = prefixed_forward(base, prompt_prefix(base, fast_prompt), batch)
    fast_loss = causal_lm_loss(lm_logits(base, hidden), labels)
    fast_loss.backward()

    torch.testing.assert_close(fast_loss, plain.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_prompt.grad, plain_prompt.grad, atol=1e-5, rtol=1e-4)
    assert fast_prompt.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CAUSAL)
def test_mixed_prefixes_each_row_sees_its_own_prompt(tiny_models, kind):
    base = tiny_models(kind)
    prompts = [prompt_for(base, t=2, seed=1), None, prompt_for(base, t=7, seed=2)]
    rows = encode(base)
    with torch.no_grad():
        mixed = stack_prefixes([None if p is None else prompt_prefix(base, p) for p in prompts])
        batch = pad_batch(rows, base.pad_token_id, side="left")
        hidden, _ = prefixed_forward(base, mixed, batch)
        for row, (prompt, ids) in enumerate(zip(prompts, rows)):
            alone = concat_forward(base, prompt, pad_batch([ids], base.pad_token_id)).logits[0]
            torch.testing.assert_close(lm_logits(base, hidden[row, -len(ids) :]), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL)
def test_restricted_head_equals_full_logits_columns(tiny_models, kind):
    base = tiny_models(kind)
    hidden = torch.randn(4, base.hidden_size)
    ids = torch.tensor([5, 17, 3])
    torch.testing.assert_close(lm_logits(base, hidden, ids), lm_logits(base, hidden)[:, ids])
    full = base.model.lm_head(hidden) if hasattr(base.model, "lm_head") else None
    if full is not None and not getattr(base.config, "final_logit_softcapping", None):
        torch.testing.assert_close(lm_logits(base, hidden), full)


@pytest.mark.parametrize("kind", (*CAUSAL, "t5"))
def test_base_model_is_frozen_and_unchanged(tiny_models, kind):
    base = tiny_models(kind)
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    assert not any(p.requires_grad for p in base.model.parameters())
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="right")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW([prompt], lr=0.1)
    for _ in range(2):
        concat_forward(base, prompt, batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in base.model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.grad is None, name
