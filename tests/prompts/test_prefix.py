"""Deep prompts (prefix tuning): equal to PEFT's PREFIX_TUNING, files both ways, grouped-query shapes, init, guards.

The tiny Llama, Qwen2 and Gemma3 models have 4 query heads and 2 key/value heads,
so every test here runs on grouped-query attention; Gemma3's sequences are longer
than its sliding window and its softcap is on.
"""

import json

import pytest
import torch
from peft import PeftModel, PrefixTuningConfig, TaskType, get_peft_model

from softprompt.errors import PromptFileError, SoftPromptError
from softprompt.forward import PrefixKV, causal_lm_loss, input_logits, next_token_logits, pad_batch, prompt_state
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.methods import PROMPT_CLASSES, load_prompt, prompt_class
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.prefix_layout import PrefixShape, prefix_of_embeddings
from softprompt.prompts.registry import METHODS, method_names
from softprompt.testing import tiny_base

CAUSAL = ("gpt2", "llama", "qwen2", "gemma3")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")


def right_padded(base, texts=TEXTS):
    return pad_batch([base.encode(t) for t in texts], base.pad_token_id, side="right")


def random_prefix(base, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = PrefixShape.of(base)
    return PrefixPrompt(torch.randn(t, shape.width, generator=g) * 0.5, shape)


def peft_prefix_model(base, t, **config):
    """A PEFT prefix-tuning model over a private copy of `base`'s weights (PEFT wraps in place)."""
    peft_config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=t, **config)
    return get_peft_model(base.model, peft_config)


def labels_of(batch):
    return batch.input_ids.masked_fill(batch.attention_mask == 0, -100)


def test_the_registry_names_every_method():
    assert tuple(PROMPT_CLASSES) == method_names()
    assert all(METHODS[m].peft_type == PROMPT_CLASSES[m].PEFT_TYPE for m in method_names())
    assert prompt_class("prefix") is PrefixPrompt and prompt_class("prompt") is SoftPrompt
    with pytest.raises(SoftPromptError, match="--method must be one of prompt, prefix"):
        prompt_class("lora")


@pytest.mark.parametrize("kind", CAUSAL)
def test_shape_follows_pefts_grouped_query_layout(kind):
    base = tiny_base(kind)
    shape = PrefixShape.of(base)
    family = base.family
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (family.num_layers, family.num_kv_heads, family.head_dim)
    peft_model = peft_prefix_model(base, 3)
    config = peft_model.peft_config["default"]
    assert (config.num_layers, config.num_attention_heads, config.token_dim) == (
        shape.layers,
        shape.kv_heads,
        shape.token_dim,
    )
    assert peft_model.prompt_encoder.default.embedding.weight.shape == (3, shape.width)


@pytest.mark.parametrize("kind", CAUSAL)
def test_logits_loss_and_gradient_equal_pefts_prefix_tuning(kind):
    """Right padding (where PEFT's positions are exact): same logits, loss and gradient of the keys/values."""
    base = tiny_base(kind)
    prompt = random_prefix(base)
    batch = right_padded(base)
    labels = labels_of(batch)
    logits = input_logits(base, prompt_state(base, prompt), batch)
    loss = causal_lm_loss(logits, labels)
    loss.backward()

    peft_model = peft_prefix_model(base, 5)
    weight = peft_model.prompt_encoder.default.embedding.weight
    with torch.no_grad():
        weight.copy_(prompt.prefix)
    theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    theirs.loss.backward()
    real = batch.attention_mask.bool()
    torch.testing.assert_close(logits[real], theirs.logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, theirs.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prompt.prefix.grad, weight.grad, atol=1e-5, rtol=1e-4)
    assert prompt.prefix.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CAUSAL)
def test_peft_loads_our_folder_with_equal_logits(tmp_path, kind):
    base = tiny_base(kind)
    prompt = random_prefix(base, t=4, seed=3)
    prompt.meta = PromptMeta(base_model=base.name, base_fingerprint=base.fingerprint)
    prompt.save(tmp_path / "p", base)
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PREFIX_TUNING" and config["prefix_projection"] is False
    batch = right_padded(base)
    ours = input_logits(base, prompt_state(base, prompt), batch)
    theirs = PeftModel.from_pretrained(base.model, tmp_path / "p")(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask
    )
    real = batch.attention_mask.bool()
    torch.testing.assert_close(ours[real], theirs.logits[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("projection", [False, True], ids=["plain", "prefix_projection"])
@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_we_load_pefts_folder_with_equal_logits(tmp_path, kind, projection):
    """PEFT saves the keys/values themselves, even when it trained them through its projection MLP."""
    base = tiny_base(kind)
    extra = {"prefix_projection": True, "encoder_hidden_size": 12} if projection else {}
    peft_model = peft_prefix_model(base, 3, **extra)
    peft_model.save_pretrained(tmp_path / "peft")
    batch = right_padded(base)
    with torch.no_grad():
        theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    loaded = load_prompt(tmp_path / "peft", base)
    assert isinstance(loaded, PrefixPrompt) and loaded.num_virtual_tokens == 3
    assert loaded.meta.base_fingerprint is None  # PEFT files carry none: not checked
    ours = input_logits(base, prompt_state(base, loaded), batch)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_keeps_weights_metadata_and_initial(tiny_models, tmp_path):
    base = tiny_models("qwen2")
    meta = PromptMeta(task="classify", template="Q: {text}\nA:", verbalizer={"pos": " yes", "neg": " no"})
    prompt = PrefixPrompt.initialize(base, 4, "labels", label_words=[" yes", " no"], meta=meta)
    with torch.no_grad():
        prompt.prefix.add_(1.0)
    prompt.save(tmp_path / "p", base)
    loaded = load_prompt(tmp_path / "p", base)
    assert isinstance(loaded, PrefixPrompt) and loaded.shape == prompt.shape
    assert torch.equal(loaded.prefix, prompt.prefix) and torch.equal(loaded.initial, prompt.initial)
    assert loaded.meta == prompt.meta and loaded.meta.init == "labels"
    assert isinstance(load_prompt(tmp_path / "p"), PrefixPrompt)  # no model needed to read it


def test_init_answers_exactly_as_the_plain_prompt_it_starts_from(tiny_models):
    base = tiny_models("gemma3")
    plain = SoftPrompt.initialize(base, 4, "vocab", seed=5)
    deep = PrefixPrompt.initialize(base, 4, "vocab", seed=5)
    assert torch.equal(deep.initial, deep.prefix)
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    torch.testing.assert_close(
        next_token_logits(base, prompt_state(base, deep), batch),
        next_token_logits(base, prompt_state(base, plain), batch),
        atol=1e-6,
        rtol=1e-6,
    )


def test_file_init_from_a_plain_or_a_deep_folder(tiny_models, tmp_path):
    base = tiny_models("llama")
    plain = SoftPrompt.initialize(base, 3, "random", seed=1)
    plain.save(tmp_path / "plain", base)
    from_plain = PrefixPrompt.initialize(base, 3, f"file:{tmp_path / 'plain'}")
    torch.testing.assert_close(from_plain.prefix, prefix_of_embeddings(base, plain.embeddings))
    from_plain.save(tmp_path / "deep", base)
    longer = PrefixPrompt.initialize(base, 5, f"file:{tmp_path / 'deep'}")
    assert torch.equal(longer.prefix[:3], from_plain.prefix) and torch.equal(longer.prefix[3:], from_plain.prefix[:2])


def test_split_and_join_are_inverse_and_follow_pefts_slots(tiny_models):
    base = tiny_models("llama")
    prompt = random_prefix(base, t=3)
    shape = prompt.shape
    keys, values = shape.split(prompt.prefix)
    assert torch.equal(shape.join(keys, values), prompt.prefix)
    # Row t, slot 2i (+1 for values), head h: PEFT's view [T, 2L, heads, head_dim].
    slots = prompt.prefix.view(3, 2 * shape.layers, shape.kv_heads, shape.head_dim)
    assert torch.equal(keys[1][0, :, 2], slots[2, 2]) and torch.equal(values[1][0, :, 2], slots[2, 3])
    state = prompt_state(base, prompt)
    assert isinstance(state, PrefixKV) and state.keys[0].shape == (1, shape.kv_heads, 3, shape.head_dim)


def test_other_models_and_encoder_decoders_are_refused(tiny_models, tmp_path):
    llama, gpt2 = tiny_models("llama"), tiny_models("gpt2")
    prompt = PrefixPrompt.initialize(llama, 2, "random")
    prompt.save(tmp_path / "p", llama)
    with pytest.raises(PromptFileError, match="2 layers of 2 key/value heads x 8.*2 of 4 x 8"):
        load_prompt(tmp_path / "p", gpt2, allow_mismatch=True)
    other = tiny_base("llama", seed=1)
    with pytest.raises(PromptFileError, match="fingerprint.*--allow-model-mismatch"):
        load_prompt(tmp_path / "p", other)
    assert load_prompt(tmp_path / "p", other, allow_mismatch=True).num_virtual_tokens == 2
    with pytest.raises(SoftPromptError, match="encoder-decoder.*--method prompt"):
        PrefixPrompt.initialize(tiny_models("t5"), 2, "random")
    with pytest.raises(PromptFileError, match="only prompt-tuning adapters"):
        SoftPrompt.load(tmp_path / "p")


def test_a_corrupt_prefix_config_is_explained(tiny_models, tmp_path):
    base = tiny_models("llama")
    PrefixPrompt.initialize(base, 2, "random").save(tmp_path / "p", base)
    path = tmp_path / "p" / "adapter_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(PromptFileError, match="3 layers x key and value"):
        load_prompt(tmp_path / "p")
    path.write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(PromptFileError, match="only prompt-tuning or prefix-tuning adapters"):
        load_prompt(tmp_path / "p")
