"""Swapping modules in place, the empty skeleton filled tensor by tensor, files, sizes and the fingerprint."""

import pytest
import torch
from torch import nn

from softprompt.errors import SoftPromptError
from softprompt.models import BaseModel, quantize_base
from softprompt.quant import (
    Quantization,
    load_quantized,
    load_tensor_,
    quantization_of,
    quantize_model,
    quantized_skeleton,
    save_quantized,
)
from softprompt.quant.embedding import QuantizedEmbedding
from softprompt.quant.linear import QuantizedLinear
from softprompt.quant.model import quantized_modules
from softprompt.testing import tiny_base, tiny_model

KINDS = ("gpt2", "llama", "qwen2", "gemma3", "t5")
Q = {"int8": Quantization("int8"), "int4": Quantization("int4")}


def logits(model, ids):
    kwargs = {"decoder_input_ids": ids} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        return model(input_ids=ids, **kwargs).logits


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_linear_the_embedding_and_the_tied_head_are_quantised(kind, mode):
    model, _ = tiny_model(kind)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    quantize_model(model.eval(), Q[mode])
    assert quantization_of(model) == Q[mode]
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    vocab = model.config.vocab_size  # no module keeps the fp32 table (T5 holds it in three places)
    assert not any(isinstance(m, nn.Embedding) and m.num_embeddings == vocab for m in model.modules())
    assert isinstance(model.get_input_embeddings(), QuantizedEmbedding)
    head = model.get_output_embeddings()
    assert isinstance(head, QuantizedLinear)
    assert (head.matrix is model.get_input_embeddings().matrix) == tied
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(SoftPromptError, match="already quantised"):
        quantize_model(model, Q[mode])


def test_a_plain_model_says_none():
    model, _ = tiny_model("llama")
    assert quantization_of(model) == Quantization()
    assert quantize_model(model, Quantization()) is model


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", KINDS)
def test_skeleton_filled_by_load_tensor_equals_quantize_model(kind, mode):
    source, _ = tiny_model(kind)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    expected = quantize_model(source.eval(), Q[mode])
    skeleton = quantized_skeleton(source.config, Q[mode])
    assert all(b.is_meta for _, m in quantized_modules(skeleton) for b in m.buffers())
    tied = source.get_output_embeddings().matrix is source.get_input_embeddings().matrix
    assert (skeleton.get_output_embeddings().matrix is skeleton.get_input_embeddings().matrix) == tied
    for name, tensor in state.items():
        load_tensor_(skeleton, name, tensor, Q[mode])
    assert not any(t.is_meta for t in (*skeleton.parameters(), *skeleton.buffers()))
    ids = torch.randint(3, 250, (2, 7))
    assert torch.equal(logits(skeleton, ids), logits(expected, ids))
    with pytest.raises(SoftPromptError, match="names no module"):
        load_tensor_(skeleton, "model.nowhere.weight", torch.zeros(1), Q[mode])


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma3", "t5"])
def test_save_and_load_round_trip_keeps_ties_and_logits(tmp_path, kind, mode):
    model, _ = tiny_model(kind)
    quantize_model(model.eval(), Q[mode])
    save_quantized(model, tmp_path)
    again = load_quantized(tmp_path, model.config, Q[mode])
    ids = torch.randint(3, 250, (2, 7))
    assert torch.equal(logits(again, ids), logits(model, ids))
    tied = model.get_output_embeddings().matrix is model.get_input_embeddings().matrix
    assert (again.get_output_embeddings().matrix is again.get_input_embeddings().matrix) == tied
    if tied:  # the shared table is in the file once
        from safetensors import safe_open

        with safe_open(str(tmp_path / "quantized.safetensors"), "pt") as f:
            assert not any(k.startswith("lm_head.") for k in f.keys())
    other = Q["int4"] if mode == "int8" else Q["int8"]
    with pytest.raises(SoftPromptError, match="quantised as"):
        load_quantized(tmp_path, model.config, other)


def linear_bytes(model) -> tuple[int, int]:
    """(bytes of the transformer blocks' quantised matrices, fp32 bytes of the same weights)."""
    matrices = [m for _, m in quantized_modules(model.model.layers)]
    return sum(m.nbytes() for m in matrices), sum(4 * m.out_features * m.in_features for m in matrices)


def wide_llama():
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize(
    ("q", "low", "high"),
    [
        (Quantization("int8"), 0.25, 0.253),
        (Quantization("int4", 32), 0.156, 0.158),
        (Quantization("int4", 128), 0.132, 0.134),
    ],
)
def test_quantised_weights_take_a_quarter_or_less_of_fp32(q, low, high):
    """int8: 1 byte + 2 per row; int4: 0.5 byte + 4 bytes per group (32: 0.625 byte, 128: 0.53125 byte).
    The embedding and the head are int8 in both modes."""
    model = quantize_model(wide_llama(), q)
    quantized, fp32 = linear_bytes(model)
    assert low <= quantized / fp32 <= high, quantized / fp32
    for table in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert table.matrix.mode == "int8"


def test_fingerprint_is_the_unquantised_embeddings():
    base = tiny_base("qwen2")
    fingerprint = base.fingerprint
    quantized = quantize_base(tiny_base("qwen2"), "int4")
    assert quantized.fingerprint == fingerprint
    assert quantized.quantization == Quantization("int4")
    assert quantize_base(base, "none") is base
    # a quantised model without a given fingerprint hashes its dequantised table (not the source's)
    bare = BaseModel(quantized.model, quantized.tokenizer, "bare")
    assert bare.fingerprint != fingerprint
    assert (bare.vocab_size, bare.hidden_size, bare.dtype) == (base.vocab_size, base.hidden_size, torch.float32)


def test_load_base_model_quantises_and_keeps_the_fp32_fingerprint(tmp_path, monkeypatch):
    from softprompt.models import load_base_model

    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))  # the quantised copy is cached
    from softprompt.testing import save_tiny

    folder = save_tiny("llama", tmp_path / "tiny")
    plain = load_base_model(str(folder))
    for text in ("int8", "int4"):
        base = load_base_model(str(folder), quantize=text)
        assert base.quantization == Quantization.parse(text)
        assert base.fingerprint == plain.fingerprint
    with pytest.raises(SoftPromptError, match="quantize"):
        load_base_model(str(folder), quantize="int2")


def test_fingerprint_by_chunks_equals_the_whole_tables():
    from softprompt.models import embedding_fingerprint

    table = torch.randn(100, 16)
    assert embedding_fingerprint(table, chunk_rows=7) == embedding_fingerprint(table)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_weight_count_is_unchanged_and_bytes_shrink(mode):
    from softprompt.quant import weight_bytes, weight_count

    model = wide_llama()
    count, size = weight_count(model), weight_bytes(model)
    quantize_model(model, Q[mode])
    assert weight_count(model) == count
    assert weight_bytes(model) < size * 0.26


def test_what_stays_unquantised_is_copied_off_the_loaders_memory():
    """transformers maps safetensors files: a kept norm viewing the map would hold the whole file resident."""
    model, _ = tiny_model("llama")
    norm = model.model.norm.weight
    quantize_model(model.eval(), Q["int8"])
    kept = model.model.norm.weight
    assert torch.equal(kept, norm) and kept.untyped_storage().data_ptr() != norm.untyped_storage().data_ptr()
    assert not kept.requires_grad


def test_a_file_cut_short_is_refused_by_name(tmp_path):
    model, _ = tiny_model("llama")
    quantize_model(model.eval(), Q["int8"])
    save_quantized(model, tmp_path)
    path = tmp_path / "quantized.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SoftPromptError, match="cut short"):
        load_quantized(tmp_path, model.config, Q["int8"])


def test_loading_maps_no_file(tmp_path, monkeypatch):
    """The load reads each tensor into its own memory: safetensors' safe_open maps the whole file, whose
    pages then stay resident beside the copies (the 7.6 GB int8 7B-shaped model peaked at 15.1 GB)."""
    import safetensors

    model, _ = tiny_model("qwen2")
    quantize_model(model.eval(), Q["int4"])
    save_quantized(model, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("load_quantized mapped the file")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    again = load_quantized(tmp_path, model.config, Q["int4"])
    ids = torch.randint(3, 250, (2, 7))
    assert torch.equal(logits(again, ids), logits(model, ids))
