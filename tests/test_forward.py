"""The one prompted forward: equal to PEFT, to unpadded single rows, across padding, prompt layouts and mixed rows.

Every test sequence (prompt + input) is longer than the tiny Gemma3's sliding
window (6 positions), so the sliding-window masks are really exercised, and
its final-logit softcap is on.
"""

import pytest
import torch
from peft import PromptTuningConfig, TaskType, get_peft_model

from softprompt.forward import (
    InlinePrompt,
    PrefixKV,
    causal_lm_loss,
    hidden_states,
    input_logits,
    lm_logits,
    next_token_logits,
    pad_batch,
    prompt_state,
    stack_states,
)

CAUSAL = ("gpt2", "llama", "qwen2", "gemma3")
ALL = (*CAUSAL, "t5")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")
LAYOUTS = ("prefix", "inline")
# Every family with every prompt layout it takes (encoder-decoders take the prompt inline only).
FAMILY_LAYOUTS = [(kind, layout) for kind in ALL for layout in LAYOUTS if (kind, layout) != ("t5", "prefix")]


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


def state_for(base, prompt, layout):
    return None if prompt is None else prompt_state(base, prompt, share_prefix=layout == "prefix")


def longer_than_window(base, seqs, t):
    window = base.family.sliding_window
    return window is None or max(len(s) for s in seqs) + t > window


def peft_wrap(base, prompt):
    task = TaskType.SEQ_2_SEQ_LM if base.is_seq2seq else TaskType.CAUSAL_LM
    config = PromptTuningConfig(task_type=task, num_virtual_tokens=prompt.shape[0])
    model = get_peft_model(base.model, config)
    with torch.no_grad():
        weight = model.prompt_encoder.default.embedding.weight
        weight[: prompt.shape[0]] = prompt.detach()
    return model


def peft_prompt_grad(model, t):
    return model.prompt_encoder.default.embedding.weight.grad[:t]


def unwrap(peft_model):
    # get_peft_model wraps in place; undo so the session-scoped tiny model stays plain.
    peft_model.base_model.__dict__.pop("prepare_inputs_for_generation", None)


def test_the_path_is_chosen_in_one_place(tiny_models):
    llama, t5 = tiny_models("llama"), tiny_models("t5")
    prompt = prompt_for(llama)
    assert isinstance(prompt_state(llama, prompt), PrefixKV)
    assert isinstance(prompt_state(llama, prompt, share_prefix=False), InlinePrompt)
    assert isinstance(prompt_state(t5, prompt_for(t5)), InlinePrompt)
    assert prompt_state(llama, None) is None
    state = prompt_state(llama, prompt)
    assert prompt_state(llama, state) is state  # a state (e.g. a deep prompt's) passes through


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", CAUSAL)
def test_loss_logits_and_prompt_gradient_match_peft(tiny_models, kind, layout):
    """Right padding, where PEFT's positions are exact: same logits, loss and prompt gradient."""
    base = tiny_models(kind)
    prompt = prompt_for(base)
    seqs = encode(base)
    assert longer_than_window(base, seqs, prompt.shape[0])
    batch = pad_batch(seqs, base.pad_token_id, side="right")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    logits = input_logits(base, state_for(base, prompt, layout), batch)
    loss = causal_lm_loss(logits, labels)
    loss.backward()

    peft_model = peft_wrap(base, prompt)
    try:
        # PEFT also scores the first input token from the last prompt position; mask it to compare.
        peft_labels = labels.clone()
        peft_labels[:, 0] = -100
        theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=peft_labels)
        theirs.loss.backward()
        their_grad = peft_prompt_grad(peft_model, prompt.shape[0])
    finally:
        unwrap(peft_model)
    t = prompt.shape[0]
    real = batch.attention_mask.bool()
    torch.testing.assert_close(logits[real], theirs.logits[:, t:][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, theirs.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prompt.grad, their_grad, atol=1e-5, rtol=1e-4)
    assert prompt.grad.abs().sum() > 0


def test_seq2seq_loss_logits_and_gradient_match_peft(tiny_models):
    base = tiny_models("t5")
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="right")
    targets = [base.encode(t) + [base.tokenizer.eos_token_id] for t in ("good", "bad!", "meh")]
    flat = next_token_logits(base, prompt_state(base, prompt), batch, [t[:-1] for t in targets])
    loss = torch.nn.functional.cross_entropy(flat, torch.tensor([tok for t in targets for tok in t]))
    loss.backward()

    padded = pad_batch(targets, base.pad_token_id, side="right")
    labels = padded.input_ids.masked_fill(padded.attention_mask == 0, -100)
    peft_model = peft_wrap(base, prompt)
    try:
        theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
        theirs.loss.backward()
        their_grad = peft_prompt_grad(peft_model, prompt.shape[0])
    finally:
        unwrap(peft_model)
    torch.testing.assert_close(flat, theirs.logits[padded.attention_mask.bool()], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, theirs.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prompt.grad, their_grad, atol=1e-5, rtol=1e-4)


def alone_logits(base, prompt, layout, ids, fed=()):
    """Logits after one unpadded row (and after each fed token), with no other row in the batch."""
    return next_token_logits(base, state_for(base, prompt, layout), pad_batch([ids], base.pad_token_id), [list(fed)])


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind,layout", FAMILY_LAYOUTS)
def test_padded_rows_equal_unpadded_rows(tiny_models, kind, layout, side):
    base = tiny_models(kind)
    prompt = prompt_for(base)
    seqs = encode(base)
    assert longer_than_window(base, seqs, prompt.shape[0])
    fed = [base.encode(t) for t in (" yes", " no way", "")]
    batch = pad_batch(seqs, base.pad_token_id, side=side)
    with torch.no_grad():
        together = next_token_logits(base, state_for(base, prompt, layout), batch, fed)
        alone = torch.cat([alone_logits(base, prompt, layout, ids, f) for ids, f in zip(seqs, fed)])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
        if not base.is_seq2seq:  # every input position, not only the scored ones
            hidden = hidden_states(base, state_for(base, prompt, layout), batch)
            for row, ids in enumerate(seqs):
                cols = batch.attention_mask[row].bool()
                single = hidden_states(base, state_for(base, prompt, layout), pad_batch([ids], base.pad_token_id))
                torch.testing.assert_close(hidden[row, cols], single[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", CAUSAL)
def test_prefix_cache_equals_inline_prompt_loss_and_gradient(tiny_models, kind, side):
    base = tiny_models(kind)
    batch = pad_batch(encode(base), base.pad_token_id, side=side)
    labels = next_token_labels(batch)
    grads, losses = [], []
    for layout in LAYOUTS:
        prompt = prompt_for(base)
        loss = causal_lm_loss(input_logits(base, state_for(base, prompt, layout), batch), labels)
        loss.backward()
        grads.append(prompt.grad)
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind,layout", FAMILY_LAYOUTS)
def test_mixed_prompts_each_row_sees_its_own_prompt(tiny_models, kind, layout, side):
    base = tiny_models(kind)
    prompts = [prompt_for(base, t=2, seed=1), None, prompt_for(base, t=9, seed=2)]
    seqs = encode(base)
    fed = [base.encode(t) for t in ("ab", "", " c")]
    with torch.no_grad():
        mixed = stack_states([state_for(base, p, layout) for p in prompts])
        together = next_token_logits(base, mixed, pad_batch(seqs, base.pad_token_id, side=side), fed)
        alone = torch.cat([alone_logits(base, p, layout, ids, f) for p, ids, f in zip(prompts, seqs, fed)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL)
def test_mixed_prompt_gradients_reach_each_prompt_as_alone(tiny_models, kind):
    """Training with per-row prompts: each prompt's gradient equals the one from its rows alone."""
    base = tiny_models(kind)
    seqs = encode(base)
    fed = [base.encode(t) for t in (" ok", " no", " yes")]
    targets = torch.tensor([tok for f in fed for tok in f])
    mixed_prompts = [prompt_for(base, t=3, seed=1), prompt_for(base, t=8, seed=2)]
    owners = [0, 1, 0]
    state = stack_states([prompt_state(base, mixed_prompts[o]) for o in owners])
    flat = next_token_logits(base, state, pad_batch(seqs, base.pad_token_id), [f[:-1] for f in fed])
    torch.nn.functional.cross_entropy(flat, targets, reduction="sum").backward()
    for which, prompt in enumerate(mixed_prompts):
        alone = prompt_for(base, t=prompt.shape[0], seed=which + 1)
        rows = [r for r, o in enumerate(owners) if o == which]
        logits = next_token_logits(
            base,
            prompt_state(base, alone),
            pad_batch([seqs[r] for r in rows], base.pad_token_id),
            [fed[r][:-1] for r in rows],
        )
        want = torch.tensor([tok for r in rows for tok in fed[r]])
        torch.nn.functional.cross_entropy(logits, want, reduction="sum").backward()
        torch.testing.assert_close(prompt.grad, alone.grad, atol=1e-5, rtol=1e-4)


def test_a_deep_prompt_plugs_in_as_per_layer_keys_and_values(tiny_models):
    """Per-layer keys/values given directly (what a deep prompt trains) run through the same forward."""
    base = tiny_models("gemma3")
    prompt = prompt_for(base, t=4)
    computed = prompt_state(base, prompt)
    deep = PrefixKV.of_layers([k.detach().clone().requires_grad_(True) for k in computed.keys], computed.values)
    heads, dim = base.family.kv_shape(0)
    assert deep.keys[0].shape == (1, heads, 4, dim) and len(deep.keys) == base.family.num_layers
    batch = pad_batch(encode(base), base.pad_token_id)
    out = next_token_logits(base, deep, batch)
    torch.testing.assert_close(out, next_token_logits(base, computed, batch), atol=1e-6, rtol=1e-6)
    out.sum().backward()
    assert deep.keys[0].grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ALL)
def test_restricted_head_equals_full_logits_columns_and_the_models_own_head(tiny_models, kind):
    base = tiny_models(kind)
    hidden = torch.randn(4, base.hidden_size)
    ids = torch.tensor([5, 17, 3])
    torch.testing.assert_close(lm_logits(base, hidden, ids), lm_logits(base, hidden)[:, ids])
    head = base.model.get_output_embeddings()
    scale = base.family.output_scale or 1.0
    raw = head(hidden * scale)
    cap = base.family.logit_softcap
    if kind == "gemma3":
        assert cap, "the tiny Gemma3 must have its final-logit softcap on"
        assert not torch.allclose(lm_logits(base, hidden), raw, atol=1e-4)  # the softcap really changes them
        raw = torch.tanh(raw / cap) * cap
    torch.testing.assert_close(lm_logits(base, hidden), raw)


def test_softcap_matches_the_models_own_forward(tiny_models):
    base = tiny_models("gemma3")
    batch = pad_batch(encode(base)[:1], base.pad_token_id)
    with torch.no_grad():
        ours = input_logits(base, None, batch)
        theirs = base.model(input_ids=batch.input_ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ALL)
def test_base_model_is_frozen_and_unchanged(tiny_models, kind):
    base = tiny_models(kind)
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    assert not any(p.requires_grad for p in base.model.parameters())
    prompt = prompt_for(base)
    batch = pad_batch(encode(base), base.pad_token_id, side="right")
    fed = [ids[:3] for ids in encode(base)]
    optimizer = torch.optim.AdamW([prompt], lr=0.1)
    for _ in range(2):
        next_token_logits(base, prompt_state(base, prompt), batch, fed).logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in base.model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.grad is None, name
