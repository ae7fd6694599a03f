"""Tiny randomly initialised models for tests and examples: no download, built in milliseconds.

`tiny_base("llama")` returns a frozen BaseModel; `save_tiny("gpt2", folder)`
writes one to a folder so CLI and server tests can pass it as `--model FOLDER`.
The tokenizer is byte-level (every byte is a token) so any text encodes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .models import BaseModel, freeze

TINY_KINDS = ("gpt2", "llama", "qwen2", "gemma3", "t5")
SPECIALS = ("<pad>", "<eos>", "<unk>")


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *sorted(alphabet)])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_config(kind: str, vocab_size: int):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig, Qwen2Config, T5Config

    common = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    if kind == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **common)
    if kind == "llama":
        return LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, **common,
        )  # fmt: skip
    if kind == "qwen2":
        return Qwen2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, **common,
        )  # fmt: skip
    if kind == "gemma3":
        return Gemma3TextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, max_position_embeddings=256, **common,
            # A window shorter than the test sequences and one layer of each type, so tests reach the
            # sliding-window masks; a softcap small enough to change the logits measurably.
            sliding_window=6, layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=0.5,
        )  # fmt: skip
    if kind == "t5":
        return T5Config(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, decoder_start_token_id=0, **common)
    raise ValueError(f"unknown tiny model kind {kind!r}; choose from {TINY_KINDS}")


def tiny_model(kind: str, seed: int = 0):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    tokenizer = tiny_tokenizer()
    config = tiny_config(kind, vocab_size=len(tokenizer))
    auto = AutoModelForSeq2SeqLM if kind == "t5" else AutoModelForCausalLM
    torch.manual_seed(seed)
    model = auto.from_config(config, dtype=torch.float32)
    return model, tokenizer


def tiny_base(kind: str = "llama", seed: int = 0) -> BaseModel:
    model, tokenizer = tiny_model(kind, seed)
    return BaseModel(model=freeze(model), tokenizer=tokenizer, name=f"tiny-{kind}")


def save_tiny(kind: str, folder: str | Path, seed: int = 0) -> Path:
    model, tokenizer = tiny_model(kind, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_tiny_gguf(kind: str, path: str | Path, seed: int = 0, qtype: str = "Q8_0") -> Path:
    """Write a tiny llama or qwen2 model and its tokenizer to a GGUF file, as llama.cpp's converter would.

    Matrices whose rows split into 32-value blocks are stored as `qtype` (Q8_0,
    Q4_0, ...), the rest as F32; llama's q/k rows are permuted as llama.cpp does,
    so a loader must undo it to get the model back.
    """
    import gguf
    import numpy as np

    if kind not in ("llama", "qwen2"):
        raise ValueError(f"save_tiny_gguf writes llama or qwen2, not {kind!r}")
    model, tokenizer = tiny_model(kind, seed)
    config = model.config
    writer = gguf.GGUFWriter(str(path), kind)
    writer.add_name(f"tiny-{kind}")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_tokenizer_model("gpt2")
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t, _ in vocab])
    writer.add_token_merges([])
    writer.add_token_scores([0.0] * len(vocab))  # llama's converter reads them (sentencepiece-style files)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_pad_token_id(config.pad_token_id)
    arch = next(a for a, arch_name in gguf.MODEL_ARCH_NAMES.items() if arch_name == kind)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    quant = gguf.GGMLQuantizationType[qtype]
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        base, _, suffix = name.rpartition(".")
        data = tensor.numpy().astype(np.float32)
        if kind == "llama" and base.endswith(("q_proj", "k_proj")):
            data = _llama_permute(data, heads if base.endswith("q_proj") else kv_heads)
        target = names.get_name(base) + "." + suffix
        if data.ndim == 2 and data.shape[1] % 32 == 0:
            writer.add_tensor(target, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(target, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def _llama_permute(weights, n_head: int):
    """llama.cpp's row order for q/k (its convert_hf_to_gguf.py `permute`)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


# Chat templates in the style of real models', written for the byte-level tiny tokenizer: its one special
# end token `<eos>` ends each turn, as <|eot_id|> does for Llama-3 and <|im_end|> for Qwen2 and SmolLM2;
# markers are shortened (every byte is a token and the tiny context is 256).
CHAT_TEMPLATES = {
    "llama3": (
        "{{ '<s>' }}{% for m in messages %}{{ '<h>' + m['role'] + '</h>\n\n' + m['content'] | trim + eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<h>assistant</h>\n\n' }}{% endif %}"
    ),
    "qwen2": (
        "{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>system\n' + messages[0]['content'] + eos_token + '\n' }}"
        "{% else %}{{ '<|im_start|>system\nBe helpful.' + eos_token + '\n' }}{% endif %}"
        "{% for m in messages %}{% if not (m['role'] == 'system' and loop.first) %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + eos_token + '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "smollm2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are SmolLM' + eos_token + '\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}


# A multi-turn conversation (a system turn, two questions, two answers) for the chat tests.
MULTI_TURN = (
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome"},
)


def tiny_chat_base(kind: str = "llama", template: str = "qwen2", seed: int = 0) -> BaseModel:
    """A tiny base model whose tokenizer has one of CHAT_TEMPLATES (its own tokenizer: nothing leaks)."""
    base = tiny_base(kind, seed)
    base.tokenizer.chat_template = CHAT_TEMPLATES[template]
    return base
