"""Loading base models: folders, errors, freezing, fingerprints."""

import pytest
import torch

from softprompt.errors import SoftPromptError
from softprompt.models import embedding_fingerprint, load_base_model
from softprompt.testing import save_tiny


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_load_local_folder_frozen(tmp_path, kind):
    save_tiny(kind, tmp_path / kind)
    base = load_base_model(str(tmp_path / kind))
    assert base.is_seq2seq == (kind == "t5")
    assert base.dtype == torch.float32
    assert not any(p.requires_grad for p in base.model.parameters())
    assert not base.model.training
    assert base.pad_token_id is not None


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SoftPromptError, match="not a built-in alias"):
        load_base_model(str(tmp_path / "no-such-model"))
    with pytest.raises(SoftPromptError, match="does not exist"):
        load_base_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(SoftPromptError, match="not a .gguf file"):
        load_base_model(str(tmp_path / "weights.bin"))


def test_fingerprint_ignores_dtype_but_not_values():
    w = torch.randn(50, 8)
    assert embedding_fingerprint(w) == embedding_fingerprint(w.to(torch.bfloat16))
    changed = w.clone()
    changed[7, 3] += 1.0
    assert embedding_fingerprint(changed) != embedding_fingerprint(w)
    assert embedding_fingerprint(w).startswith("50x8:")
