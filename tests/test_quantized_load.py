"""Quantised loading: GGUF and safetensors read tensor by tensor, equal to fp32-then-quantise, cached once."""

import weakref

import pytest
import torch

pytest.importorskip("softprompt.quant")

from softprompt import quantized_load, weight_stream  # noqa: E402
from softprompt.errors import SoftPromptError  # noqa: E402
from softprompt.models import BaseModel, load_base_model  # noqa: E402
from softprompt.quant import Quantization, quantization_of, quantize_model  # noqa: E402
from softprompt.testing import save_tiny, save_tiny_gguf  # noqa: E402

IDS = torch.tensor([[5, 6, 7, 100, 200, 31, 2]])


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))


def logits(model_or_base):
    """Under no_grad, both sides: inference may run other kernels than training (quant: bf16 packed)."""
    model = model_or_base.model if isinstance(model_or_base, BaseModel) else model_or_base
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_gguf_quantised_equals_fp32_load_then_quantise(tmp_path, monkeypatch, kind, mode):
    monkeypatch.setattr(weight_stream, "DEQUANTIZE_ROWS", 7)  # big tables are dequantised by row chunks
    path = save_tiny_gguf(kind, tmp_path / f"{kind}.gguf")
    fp32 = load_base_model(str(path))
    reference = quantize_model(load_base_model(str(path)).model, Quantization.parse(mode))
    base = load_base_model(str(path), quantize=mode)
    assert torch.equal(logits(base), logits(reference))
    # The fingerprint is the source's float embedding, so a prompt trained in fp32 fits.
    assert base.fingerprint == fp32.fingerprint
    assert not any(p.requires_grad for p in base.model.parameters())


@pytest.mark.parametrize("kind", ["qwen2", "gpt2", "gemma3", "t5"])
def test_hf_folder_quantised_equals_fp32_load_then_quantise(tmp_path, kind):
    """Sharded safetensors, GPT-2's transposed Conv1D, Gemma's tied head and scaled embedding, T5's two stacks."""
    from softprompt.testing import tiny_model

    model, tokenizer = tiny_model(kind)
    model.save_pretrained(tmp_path / kind, max_shard_size="40KB")
    tokenizer.save_pretrained(tmp_path / kind)
    folder = str(tmp_path / kind)
    assert len(list((tmp_path / kind).glob("*.safetensors"))) > 1
    reference = quantize_model(load_base_model(folder).model, Quantization.parse("int8"))
    base = load_base_model(folder, quantize="int8")
    with torch.no_grad():
        extra = {"decoder_input_ids": IDS[:, :3]} if kind == "t5" else {}
        assert torch.equal(base.model(IDS, **extra).logits, reference(IDS, **extra).logits)
    assert base.fingerprint == load_base_model(folder).fingerprint


def test_an_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SoftPromptError, match="could not load model 'nobody/no-such-model'.*Hugging Face Hub"):
        load_base_model("nobody/no-such-model", quantize="int8")


def test_the_cache_is_built_once_and_read_after(tmp_path, monkeypatch):
    path = save_tiny_gguf("qwen2", tmp_path / "q.gguf")
    first = load_base_model(str(path), quantize="int4")
    (folder,) = (tmp_path / "cache" / "models").glob("*-int4-g32")
    assert (folder / "quantized.safetensors").is_file() and (folder / "source.json").is_file()
    assert not list((tmp_path / "cache" / "models").glob("*fp32*"))

    def no_streaming(*args, **kwargs):
        raise AssertionError("the GGUF file was read again instead of the cache")

    monkeypatch.setattr(weight_stream, "gguf_stream", no_streaming)
    again = load_base_model(str(path), quantize="int4")
    assert torch.equal(logits(again), logits(first)) and again.fingerprint == first.fingerprint
    # Another precision is another cache entry, beside the first.
    monkeypatch.undo()
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    load_base_model(str(path), quantize="int8")
    (int8,) = (tmp_path / "cache" / "models").glob("*-int8")
    # A damaged (or other-version) cached copy is built again, not an error.
    (int8 / "quantized.safetensors").write_bytes(b"not safetensors")
    rebuilt = load_base_model(str(path), quantize="int8")
    assert torch.equal(logits(rebuilt), logits(quantize_model(load_base_model(str(path)).model, Quantization("int8"))))


@pytest.mark.parametrize("source", ["gguf", "folder"])
def test_only_one_float_tensor_is_alive_at_a_time(tmp_path, monkeypatch, source):
    """The loader frees each float tensor before the next is made: never the whole model in fp32."""
    path = save_tiny_gguf("llama", tmp_path / "l.gguf") if source == "gguf" else save_tiny("llama", tmp_path / "f")
    stream_name = "gguf_stream" if source == "gguf" else "safetensors_stream"
    real = getattr(weight_stream, stream_name)
    alive_counts, sizes = [], []

    def watched(*args):
        earlier = []
        for name, tensor in real(*args):
            alive_counts.append(sum(ref() is not None for ref in earlier))
            sizes.append(tensor.numel())
            earlier.append(weakref.ref(tensor))
            yield name, tensor
            del tensor

    monkeypatch.setattr(weight_stream, stream_name, watched)
    load_base_model(str(path), quantize="int8")
    assert len(alive_counts) > 10 and max(alive_counts) == 0
    assert sizes == sorted(sizes, reverse=True)  # the embedding and head first, while the model is empty


def test_a_checkpoint_missing_a_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_tiny("qwen2", tmp_path / "q")
    weights = load_file(folder / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(SoftPromptError, match=r"lack 1 tensor.*model.layers.1.mlp.up_proj"):
        load_base_model(str(folder), quantize="int8")
    assert not list((tmp_path / "cache" / "models").glob("*")) or all(
        not (p / "source.json").exists() for p in (tmp_path / "cache" / "models").iterdir()
    )


def test_a_folder_without_safetensors_is_refused_with_what_to_do(tmp_path):
    folder = save_tiny("qwen2", tmp_path / "q")
    (folder / "model.safetensors").unlink()
    with pytest.raises(SoftPromptError, match="holds no .safetensors weights.*--quantize none"):
        load_base_model(str(folder), quantize="int8")


def test_synthetic_models_are_built_quantised_from_seeded_tensors(monkeypatch):
    from softprompt import synthetic
    from softprompt.testing import tiny_tokenizer

    shape = synthetic.SyntheticShape(
        model_type="qwen2",
        config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=300,
            tie_word_embeddings=False,
        ),  # fmt: skip
        tokenizer=tiny_tokenizer,
    )
    monkeypatch.setitem(synthetic.SYNTHETIC_MODELS, "tiny-test", shape)
    with pytest.raises(SoftPromptError, match="built quantised only"):
        load_base_model("synthetic:tiny-test")
    base = load_base_model("synthetic:tiny-test", quantize="int8")
    assert quantization_of(base.model).mode == "int8"
    # Seeded per tensor: the same weights whatever order they are drawn in, and again from the cache.
    config = synthetic.synthetic_config("synthetic:tiny-test")
    first = dict(synthetic.synthetic_stream(config))
    reference = quantized_load.build_quantized(config, iter(reversed(list(first.items()))), Quantization.parse("int8"))
    assert torch.equal(logits(base), logits(reference[0]))
    assert torch.isfinite(logits(base)).all()
    with pytest.raises(SoftPromptError, match="unknown synthetic model 'synthetic:nope'; known: synthetic:qwen2-7b"):
        load_base_model("synthetic:nope", quantize="int8")


def test_the_7b_shape_is_qwen2_7b():
    from softprompt.synthetic import synthetic_config

    config = synthetic_config("synthetic:qwen2-7b")
    with torch.device("meta"):
        model = weight_stream.meta_model(config)
    params = sum(p.numel() for p in model.parameters())
    assert 7.6e9 < params < 7.7e9
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (28, 3584, 18944)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (28, 4, 152064)
    assert not config.tie_word_embeddings


def test_a_copy_made_by_other_quantisation_code_is_not_read(tmp_path, monkeypatch):
    """Another layout may load without error and compute garbage: the cache key holds the code's digest."""
    path = save_tiny_gguf("qwen2", tmp_path / "q.gguf")
    load_base_model(str(path), quantize="int4")
    monkeypatch.setattr(quantized_load, "quant_format", lambda: "0ther000")
    load_base_model(str(path), quantize="int4")
    folders = sorted(p.name.split("-")[1] for p in (tmp_path / "cache" / "models").iterdir())
    assert len(folders) == 2 and "0ther000" in folders
