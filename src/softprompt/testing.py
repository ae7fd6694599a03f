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
