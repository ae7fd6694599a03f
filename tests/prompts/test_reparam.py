"""Reparameterised prompts: PEFT's P-tuning and prefix-projection forwards, folding on save, exact starts."""

import pytest
import torch
from peft import PrefixTuningConfig, PromptEncoderConfig, TaskType, get_peft_model

from softprompt.errors import SoftPromptError
from softprompt.forward import causal_lm_loss, input_logits, next_token_logits, pad_batch, prompt_state
from softprompt.prompts.methods import load_prompt
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.registry import METHODS
from softprompt.prompts.reparam import TrainablePrompt
from softprompt.testing import tiny_base
from softprompt.train_config import TrainConfig

CAUSAL = ("gpt2", "llama", "qwen2", "gemma3")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")


def right_padded(base):
    return pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id, side="right")


def trained_a_little(trainable, base, steps=2):
    """A few optimiser steps, so every part of the network (a zero-started gain too) holds non-trivial values."""
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=0.05)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    for _ in range(steps):
        next_token_logits(base, prompt_state(base, trainable), batch).logsumexp(-1).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return trainable


def our_and_peft_loss(base, trainable, peft_model, batch, t):
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    logits = input_logits(base, prompt_state(base, trainable), batch)
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    peft_labels = labels.clone()
    if isinstance(trainable.artefact(), SoftPrompt):
        peft_labels[:, 0] = -100  # PEFT also scores the first input token from the last virtual token
    theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=peft_labels)
    theirs.loss.backward()
    offset = t if isinstance(trainable.artefact(), SoftPrompt) else 0
    real = batch.attention_mask.bool()
    torch.testing.assert_close(logits[real], theirs.logits[:, offset:][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, theirs.loss, atol=1e-5, rtol=1e-5)


def copy_linears(ours: torch.nn.Sequential, theirs: torch.nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    with torch.no_grad():
        for mine, peft_layer in zip(ours, theirs):
            if isinstance(mine, torch.nn.Linear):
                peft_layer.weight.copy_(mine.weight)
                peft_layer.bias.copy_(mine.bias)
                pairs += [(mine.weight, peft_layer.weight), (mine.bias, peft_layer.bias)]
    return pairs


# Our MLP reparameterisation and PEFT's for each method: (prompt class, PEFT config, PEFT's MLP attribute).
PEFT_MLPS = {
    "p-tuning": (
        SoftPrompt,
        lambda t, h: PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=t, encoder_hidden_size=h),
        "mlp_head",
    ),
    "prefix-projection": (
        PrefixPrompt,
        lambda t, h: PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=t, prefix_projection=True, encoder_hidden_size=h
        ),
        "transform",
    ),
}


@pytest.mark.parametrize("peft_kind", list(PEFT_MLPS))
@pytest.mark.parametrize("kind", CAUSAL)
def test_mlp_reparam_equals_pefts_encoder(kind, peft_kind):
    """P-tuning's MLP (plain prompts) and prefix tuning's projection (deep): PEFT's logits, loss and gradients."""
    method, peft_config, head = PEFT_MLPS[peft_kind]
    base = tiny_base(kind)
    trainable = TrainablePrompt(method.initialize(base, 3, "vocab"), "mlp", hidden=12, seed=1)
    peft_model = get_peft_model(base.model, peft_config(3, 12))
    encoder = peft_model.prompt_encoder.default
    with torch.no_grad():
        encoder.embedding.weight.copy_(trainable.encoder.inputs)
        # Ours adds the MLP's output to the init, and starts that output at zero: PEFT's has no such offset,
        # so drop it, and give the last weight values, so every gradient is non-zero.
        trainable.encoder.start.zero_()
        trainable.encoder.mlp[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    pairs = copy_linears(trainable.encoder.mlp, getattr(encoder, head))
    our_and_peft_loss(base, trainable, peft_model, right_padded(base), 3)
    pairs.append((trainable.encoder.inputs, encoder.embedding.weight))
    for mine, theirs in pairs:
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-5, rtol=1e-4)
        assert mine.grad.abs().sum() > 0


@pytest.mark.parametrize("method", [SoftPrompt, PrefixPrompt])
@pytest.mark.parametrize("reparam", ["mlp", "residual"])
def test_the_folded_file_answers_as_the_network_did(tiny_models, tmp_path, method, reparam):
    base = tiny_models("gemma3")
    trainable = trained_a_little(TrainablePrompt(method.initialize(base, 4, "vocab"), reparam, seed=3), base)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    with torch.no_grad():
        unfolded = next_token_logits(base, prompt_state(base, trainable), batch)
    trainable.artefact().save(tmp_path / "p", base)
    loaded = load_prompt(tmp_path / "p", base)
    assert type(loaded) is method and loaded.num_parameters < trainable.num_parameters
    torch.testing.assert_close(next_token_logits(base, prompt_state(base, loaded), batch), unfolded)


@pytest.mark.parametrize("method", [SoftPrompt, PrefixPrompt])
def test_residual_starts_exactly_at_the_init_and_learns_through_its_network(tiny_models, method):
    base = tiny_models("llama")
    prompt = method.initialize(base, 4, "vocab")
    trainable = TrainablePrompt(prompt, "residual", seed=0)
    assert torch.equal(trainable.fold(), prompt.weights.detach())
    trained_a_little(trainable, base, steps=3)
    assert trainable.encoder.norm.weight.abs().sum() > 0
    before = {n: t.clone() for n, t in trainable.named_tensors().items()}
    trained_a_little(trainable, base, steps=1)
    assert not torch.equal(before["mlp.0.weight"], trainable.named_tensors()["mlp.0.weight"])


def test_fast_path_equals_inline_path_in_loss_and_every_gradient(tiny_models):
    """A plain prompt through P-tuning's MLP: shared prefix cache vs the prompt inline in every row."""
    base = tiny_models("qwen2")
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    grads, losses = [], []
    for share in (True, False):
        trainable = TrainablePrompt(SoftPrompt.initialize(base, 4, "vocab"), "mlp", seed=4)
        loss = next_token_logits(base, trainable.state(base, share_prefix=share), batch).logsumexp(-1).mean()
        loss.backward()
        losses.append(loss)
        grads.append([p.grad for p in trainable.parameters()])
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    for fast, inline in zip(*grads):
        torch.testing.assert_close(fast, inline, atol=1e-6, rtol=1e-4)


def test_the_network_is_a_function_of_the_seed(tiny_models):
    base = tiny_models("llama")
    prompt = PrefixPrompt.initialize(base, 3, "vocab")
    a, b, c = (TrainablePrompt(prompt, "mlp", seed=s) for s in (0, 0, 1))
    assert all(torch.equal(a.named_tensors()[n], b.named_tensors()[n]) for n in a.named_tensors())
    assert not torch.equal(a.named_tensors()["mlp.0.weight"], c.named_tensors()["mlp.0.weight"])
    with pytest.raises(SoftPromptError, match="--reparam must be one of none, mlp, residual"):
        TrainablePrompt(prompt, "lstm")


@pytest.mark.parametrize("method", [SoftPrompt, PrefixPrompt])
def test_mlp_starts_exactly_at_the_init_so_p_tuning_does_not_collapse(tiny_models, method):
    """The P-tuning collapse's regression test (benchmarks/results/recipe/ptuning.md).

    The MLP used to start every slot at the init's mean row: a rank-one prompt that had lost the
    label words, whose slots parted slowly at a tenth of the LR, and after 50 steps on smollm2-135m
    it predicted no example of a whole class. It now starts at the init itself, row by row, so at
    step 0 a P-tuned prompt answers exactly as the plain prompt it starts from.
    """
    base = tiny_models("qwen2")
    prompt = method.initialize(base, 4, "vocab")
    trainable = TrainablePrompt(prompt, "mlp", seed=0)
    assert torch.equal(trainable.fold(), prompt.weights.detach())
    assert not torch.allclose(trainable.fold()[0], trainable.fold()[1])  # not one row repeated
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(
            next_token_logits(base, prompt_state(base, trainable), batch),
            next_token_logits(base, prompt_state(base, prompt), batch),
        )
    start = trainable.fold()
    trained_a_little(trainable, base, steps=2)
    assert not torch.equal(trainable.fold(), start)  # it learns through the network
    # Resuming rebuilds the same start from the seed: only the network's parameters are checkpointed.
    again = TrainablePrompt(prompt, "mlp", seed=0)
    again.load_tensors(trainable.named_tensors())
    torch.testing.assert_close(again.fold(), trainable.fold())


def test_each_reparam_trains_at_its_methods_recipe_lr():
    for name, entry in METHODS.items():
        for reparam, lr in entry.recipe.lr.items():
            assert TrainConfig(method=name, reparam=reparam).learning_rate == lr
    assert TrainConfig(method="prefix", reparam="mlp").learning_rate == pytest.approx(0.001)
    assert TrainConfig(reparam="mlp", optimizer="adafactor").learning_rate == pytest.approx(0.03)
    assert TrainConfig(reparam="mlp", lr=0.5).learning_rate == 0.5
